"""Summarise a pytest-benchmark JSON as tables of medians and ratios.

    python benchmarks/report.py gemm.json

Quantized matmul: each format's median, GB/s of weights read against the read bandwidth measured
in the same run, and the speed-up over PyTorch's int8 Linear, Ember's fp32 GEMM and NumPy.
GEMM: for every shape and thread count, ember's median time and GFLOP/s, the references'
medians, the speed-up over each (reference time / ember time, > 1 means ember is faster) and
ember's fraction of the FMA peak measured in the same run. Every other benchmark group
(convolution, pooling, cross-entropy): ember's median, its rate where the benchmark records one
(GFLOP/s against the FMA peak, GB/s against the read bandwidth, when the run measured them),
and each reference's median and speed-up.
"""

import json
import sys
from collections import defaultdict


def main(path: str) -> None:
    with open(path) as fh:
        data = json.load(fh)
    peak, bandwidth = {}, {}
    table = defaultdict(dict)
    groups = defaultdict(dict)  # group -> impl -> (median, extra_info)
    for bench in data["benchmarks"]:
        info = bench["extra_info"]
        if info.get("impl") == "peak":
            peak[info["threads"]] = info["gflops"]
            continue
        if info.get("impl") == "bandwidth":
            bandwidth[info["threads"]] = info["gb_per_s"]
            continue
        if "shape" in info:
            table[(info["threads"], info["shape"])][info["impl"]] = bench["stats"]["median"]
        elif "impl" in info:
            groups[bench["group"]][info["impl"]] = (bench["stats"]["median"], info)
    if table:
        gemm_table(table, peak)
    quantized = {g: impls for g, impls in groups.items() if "int8" in impls or "int4" in impls}
    if quantized:
        quant_table(quantized)
    groups = {g: impls for g, impls in groups.items() if g not in quantized}
    if groups:
        group_table(groups, peak, bandwidth)
    for threads, g in sorted(peak.items()):
        print(f"\nFMA peak, {threads} thread(s): {g:.1f} GFLOP/s")
    for threads, g in sorted(bandwidth.items()):
        print(f"\nRead bandwidth, {threads} thread(s): {g:.1f} GB/s")


def group_table(groups, peak, bandwidth):
    refs = sorted({impl for impls in groups.values() for impl in impls} - {"ember"})
    header = ["benchmark", "ember ms", "rate", "% of ceiling"]
    for r in refs:
        header += [f"{r} ms", f"vs {r}"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for group, impls in groups.items():
        if "ember" not in impls:
            continue
        ember, info = impls["ember"]
        threads = info.get("threads")
        rate, pct = "-", "-"
        if info.get("gflops"):  # against the (fp32) FMA peak
            rate = f"{info['gflops']:.1f} GFLOP/s"
            if threads in peak and info.get("precision", "fp32") == "fp32":
                pct = f"{100 * info['gflops'] / peak[threads]:.0f}%"
        elif info.get("gb_per_s"):  # against the read bandwidth
            rate = f"{info['gb_per_s']:.1f} GB/s"
            if threads in bandwidth:
                pct = f"{100 * info['gb_per_s'] / bandwidth[threads]:.0f}%"
        row = [group, f"{ember * 1e3:.3f}", rate, pct]
        for r in refs:
            t = impls.get(r, (None,))[0]
            row += [f"{t * 1e3:.3f}", f"{t / ember:.2f}x"] if t else ["-", "-"]
        print("| " + " | ".join(row) + " |")
    for group, impls in groups.items():  # ops that save memory record their peak
        if "peak_mib" in impls.get("ember", (0, {}))[1]:
            mine = impls["ember"][1]["peak_mib"]
            others = ", ".join(f"{r} {i['peak_mib']:.0f} MiB ({mine / i['peak_mib']:.2f}x)"
                               for r, (_, i) in impls.items() if r != "ember" and "peak_mib" in i)
            print(f"\nPeak memory, {group}: ember {mine:.0f} MiB; {others}")


def quant_table(groups):
    """Quantized matmul: each format's median, the GB/s of weights it reads against the read
    bandwidth measured in the same group, and the speed-up over every reference."""
    refs = ["torch int8", "ember fp32", "numpy fp32"]
    header = ["benchmark", "format", "ms", "GB/s", "% of bandwidth"]
    for r in refs:
        header += [f"{r} ms", f"vs {r}"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for group, impls in groups.items():
        bw = impls.get("read bandwidth", (None, {}))[1].get("gb_per_s")
        for fmt in ("int8", "int4"):
            if fmt not in impls:
                continue
            t, info = impls[fmt]
            rate = info.get("gb_per_s")
            row = [group, fmt, f"{t * 1e3:.3f}", f"{rate:.1f}" if rate else "-",
                   f"{100 * rate / bw:.0f}%" if rate and bw else "-"]
            for r in refs:
                ref = impls.get(r, (None,))[0]
                row += [f"{ref * 1e3:.3f}", f"{ref / t:.2f}x"] if ref else ["-", "-"]
            print("| " + " | ".join(row) + " |")
        if bw:
            print(f"| {group} | read bandwidth | - | {bw:.1f} | 100% |" + " - | - |" * len(refs))
    print()


def gemm_table(table, peak):
    refs = ["numpy", "torch"]
    header = ["threads", "shape (MxKxN)", "ember ms", "GFLOP/s", "% peak"]
    for r in refs:
        header += [f"{r} ms", f"vs {r}"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for (threads, shape), times in table.items():
        m, k, n = (int(x) for x in shape.split("x"))
        ember = times.get("ember")
        if ember is None:
            continue
        gflops = 2.0 * m * k * n / ember * 1e-9
        pct = f"{100 * gflops / peak[threads]:.0f}%" if threads in peak else "-"
        row = [str(threads), shape, f"{ember * 1e3:.3f}", f"{gflops:.1f}", pct]
        for r in refs:
            t = times.get(r)
            row += [f"{t * 1e3:.3f}", f"{t / ember:.2f}x"] if t else ["-", "-"]
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "gemm.json")

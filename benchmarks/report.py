"""Summarise a pytest-benchmark JSON as tables of medians and ratios.

    python benchmarks/report.py gemm.json

GEMM: for every shape and thread count, ember's median time and GFLOP/s, the references'
medians, the speed-up over each (reference time / ember time, > 1 means ember is faster) and
ember's fraction of the FMA peak measured in the same run. Every other benchmark group
(convolution, pooling): ember's median, its GFLOP/s where the benchmark records them (and
the fraction of peak, when the run measured it), and each reference's median and speed-up.
"""

import json
import sys
from collections import defaultdict


def main(path: str) -> None:
    with open(path) as fh:
        data = json.load(fh)
    peak = {}
    table = defaultdict(dict)
    groups = defaultdict(dict)  # group -> impl -> (median, extra_info)
    for bench in data["benchmarks"]:
        info = bench["extra_info"]
        if info.get("impl") == "peak":
            peak[info["threads"]] = info["gflops"]
            continue
        if "shape" in info:
            table[(info["threads"], info["shape"])][info["impl"]] = bench["stats"]["median"]
        elif "impl" in info:
            groups[bench["group"]][info["impl"]] = (bench["stats"]["median"], info)
    if table:
        gemm_table(table, peak)
    if groups:
        group_table(groups, peak)
    for threads, g in sorted(peak.items()):
        print(f"\nFMA peak, {threads} thread(s): {g:.1f} GFLOP/s")


def group_table(groups, peak):
    refs = sorted({impl for impls in groups.values() for impl in impls} - {"ember"})
    header = ["benchmark", "ember ms", "GFLOP/s", "% peak"]
    for r in refs:
        header += [f"{r} ms", f"vs {r}"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for group, impls in groups.items():
        if "ember" not in impls:
            continue
        ember, info = impls["ember"]
        gflops = info.get("gflops")
        pct = f"{100 * gflops / peak[info['threads']]:.0f}%" if gflops and info.get("threads") in peak else "-"
        row = [group, f"{ember * 1e3:.3f}", f"{gflops:.1f}" if gflops else "-", pct]
        for r in refs:
            t = impls.get(r, (None,))[0]
            row += [f"{t * 1e3:.3f}", f"{t / ember:.2f}x"] if t else ["-", "-"]
        print("| " + " | ".join(row) + " |")


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

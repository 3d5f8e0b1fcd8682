"""Summarise a pytest-benchmark JSON of bench_gemm.py as a table of medians and ratios.

    python benchmarks/report.py gemm.json

For every shape and thread count: ember's median time and GFLOP/s, the references' medians,
the speed-up over each (reference time / ember time, > 1 means ember is faster) and ember's
fraction of the FMA peak measured in the same run.
"""

import json
import sys
from collections import defaultdict


def main(path: str) -> None:
    with open(path) as fh:
        data = json.load(fh)
    peak = {}
    table = defaultdict(dict)
    for bench in data["benchmarks"]:
        info = bench["extra_info"]
        if info.get("impl") == "peak":
            peak[info["threads"]] = info["gflops"]
            continue
        if "shape" in info:
            table[(info["threads"], info["shape"])][info["impl"]] = bench["stats"]["median"]
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
    for threads, g in sorted(peak.items()):
        print(f"\nFMA peak, {threads} thread(s): {g:.1f} GFLOP/s")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "gemm.json")

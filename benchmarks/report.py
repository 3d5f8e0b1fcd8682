"""Summarise a pytest-benchmark JSON with ``ember bench``'s tables.

    python benchmarks/report.py gemm.json [--json records.json]

The catalogue's cases (GEMM, bf16 GEMM, convolution, cross-entropy, quantized matmul, pooling)
become ``ember bench`` records -- the FMA peak and read bandwidth measured in the same run as
their limits -- and print as ``ember bench`` prints them (``--json`` writes those records, which
``ember bench --compare`` reads). Speed-ups here are ratios of medians: pytest-benchmark times
each implementation in its own test, not in alternating rounds. Every other group (training
steps, fit, fused linear + cross-entropy) prints its median and each reference's speed-up.
"""

import argparse
import json
import sys
from collections import defaultdict

from ember.bench import runner


def records(data: dict) -> dict:
    """The catalogue's benchmarks of a pytest-benchmark run as an ``ember bench`` run."""
    info = data.get("machine_info", {})
    options = [b.get("options", {}) for b in data["benchmarks"]]
    run = runner.BenchRun(preset="full", machine={}, versions={"ember": data.get("ember", ""),
                                                                  "python": info.get("python_version", ""),
                                                                  "numpy": ""},
                          settings={"rounds": min((o.get("min_rounds", 1) for o in options), default=1),
                                    "min_time_s": min((o.get("min_time", 0.0) for o in options), default=0.0),
                                    "settle_s": 0.25}, precision="fp32")
    cases = defaultdict(dict)
    for bench in data["benchmarks"]:
        extra = bench["extra_info"]
        if extra.get("impl") == "peak":
            run.limits.append({"name": "fma_peak", "threads": extra["threads"], "value": extra["gflops"],
                               "unit": "GFLOP/s"})
        elif extra.get("impl") == "bandwidth":
            run.limits.append({"name": "read_bandwidth", "threads": extra["threads"], "value": extra["gb_per_s"],
                               "unit": "GB/s"})
        elif "kernel" in extra:
            cases[(extra["kernel"], extra["shape"], extra["threads"])][extra["impl"]] = (bench["stats"], extra)
    threads = sorted({key[2] for key in cases})
    run.machine = {"cpu_model": info.get("cpu", {}).get("brand_raw", "unknown"), "cpu_flags": [],
                   "isa": next((e.get("isa") for c in cases.values() for _, e in c.values() if e.get("isa")), "unknown"),
                   "threads": threads, "cpu_count": info.get("cpu", {}).get("count", 1), "cache_bytes": None,
                   "os": info.get("system", ""), "gpu": None}
    for (kernel, shape, t), impls in cases.items():
        if "ember" not in impls:
            continue
        ember_stats, ember_info = impls["ember"]
        limit = runner.limit_for(run.limits, ember_info["unit"], t)
        for impl, (stats, extra) in impls.items():
            median = stats["median"]
            record = {"kernel": kernel, "shape": shape, "threads": t, "precision": extra.get("precision", "fp32"),
                      "impl": impl, "median_s": median, "q25_s": stats["q1"], "q75_s": stats["q3"],
                      "spread": stats["iqr"] / median if median else 0.0, "calls": stats["rounds"],
                      "rounds_s": [median], "work": extra["work"], "unit": extra["unit"], "rate": None,
                      "rate_unit": "GFLOP/s" if extra["unit"] == "flop" else "GB/s", "limit": None,
                      "fraction_of_limit": None, "in_cache": False, "speedup": None}
            if impl == "ember":
                record["rate"] = extra["work"] / median * 1e-9
                if limit is not None and (extra["unit"] == "byte" or record["precision"] == "fp32"):
                    record["limit"], record["fraction_of_limit"] = limit["name"], record["rate"] / limit["value"]
            else:
                ratio = median / ember_stats["median"]
                record["speedup"] = {"median": ratio, "q25": ratio, "q75": ratio}
            run.results.append(record)
    return run.to_dict()


def other_groups(data: dict) -> str:
    """The groups outside the catalogue: ember's median and each reference's speed-up."""
    groups = defaultdict(dict)
    for bench in data["benchmarks"]:
        extra = bench["extra_info"]
        if "kernel" not in extra and extra.get("impl") not in (None, "peak", "bandwidth"):
            groups[bench["group"]][extra["impl"]] = bench["stats"]["median"]
    lines = []
    for group, impls in groups.items():
        mine = impls.get("ember")
        if mine is None:
            continue
        others = ", ".join(f"{r} {t * 1e3:.4g} ms ({t / mine:.2f}x)" for r, t in impls.items() if r != "ember")
        lines.append(f"{group}: ember {mine * 1e3:.4g} ms" + (f"; {others}" if others else ""))
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", default="gemm.json", help="a pytest-benchmark JSON file")
    parser.add_argument("--json", help="write the catalogue's cases as ember bench records")
    args = parser.parse_args(argv)
    with open(args.path) as fh:
        data = json.load(fh)
    converted = records(data)
    if converted["results"]:
        print(runner.table(converted))
    rest = other_groups(data)
    if rest:
        print(("\n" if converted["results"] else "") + rest)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(converted, fh, indent=1)


if __name__ == "__main__":
    main(sys.argv[1:])

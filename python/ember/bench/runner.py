"""``ember.bench.run``: the kernel benchmarks measured on this machine, with the hardware limits
beside them, as records (``BenchRun.to_dict``: the documented JSON, see ``schema.json``) and as
a table."""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path


from . import catalogue as C
from . import machine
from .harness import measure, speedup
from .progress import Progress

FORMAT = "ember-bench-1"
# Timing settings per preset: rounds, seconds timed per visit, pause before each visit, the
# seconds of warm-up calls per implementation (a library's allocator and threads take a few dozen
# calls to reach the steady state a training loop sees), the length of a call timed once per
# visit and the rounds such a call is timed in (see ``measure``'s long_call and long_rounds: a
# reference ten or a hundred times slower than Ember need not be timed as often to say so).
SETTINGS = {"test": (1, 0.0, 0.0, 0.0, None, None), "quick": (3, 0.08, 0.1, 0.1, 0.1, 1),
            "full": (7, 0.2, 0.25, 0.3, 2.0, 3)}


@contextlib.contextmanager
def thread_limit(n: int):
    """Ember, NumPy's BLAS (through threadpoolctl, when installed) and PyTorch (when imported)
    on ``n`` threads."""
    import sys

    import ember

    torch = sys.modules.get("torch")
    previous = ember.get_num_threads(), torch.get_num_threads() if torch is not None else None
    ember.set_num_threads(n)
    if torch is not None:
        torch.set_num_threads(n)
    try:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # NumPy's BLAS then uses its own default
            yield
        else:
            with threadpool_limits(limits=n):
                yield
    finally:
        ember.set_num_threads(previous[0])
        if torch is not None:
            torch.set_num_threads(previous[1])


@dataclass
class BenchRun:
    """One run's records (see ``to_dict`` and ``schema.json``)."""

    preset: str
    machine: dict
    versions: dict
    settings: dict
    precision: str
    created: str = field(default_factory=lambda: datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds"))
    limits: list = field(default_factory=list)
    results: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    failures: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"format": FORMAT, "created": self.created, "preset": self.preset, "precision": self.precision,
                "machine": self.machine, "versions": self.versions, "settings": self.settings, "limits": self.limits,
                "results": self.results, "skipped": self.skipped, "failures": self.failures}

    def save(self, path) -> Path:
        """Write the records as JSON, atomically."""
        return write_json(path, self.to_dict())

    def table(self) -> str:
        return table(self.to_dict())


def write_json(path, data: dict) -> Path:
    """``data`` as indented JSON at ``path``, written atomically (a crash leaves the old file)."""
    from ..checkpoint import atomic_write

    path = Path(path)
    atomic_write(path, (json.dumps(data, indent=1) + "\n").encode())
    return path


def load(path) -> dict:
    """The records of a run saved with ``--json``, checked to be one: every field the table,
    the comparison and the plot read is there, of its type (a ValueError naming the file and what
    is wrong, not a KeyError later)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"no benchmark records at {path}") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} is not a JSON file of benchmark records ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("results"), list):
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{path} is not an Ember benchmark record (format {found!r}, expected {FORMAT!r})")
    problem = _problem(data)
    if problem is not None:
        raise ValueError(f"{path} is not an Ember benchmark record ({problem})")
    return data


def _number(v, low=None, above=None) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            and (low is None or v >= low) and (above is None or v > above))


def _count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _text(v) -> bool:
    return isinstance(v, str)


def _optional(check):
    return lambda v: v is None or check(v)


# Per part of a run: each field, with its check and what the check wants (as bench.schema.json says).
_STR, _COUNT = (_text, "a string"), (_count, "a positive integer")
_OBJECT, _LIST = (lambda v: isinstance(v, dict), "an object"), (lambda v: isinstance(v, list), "a list")
_AT_LEAST_0 = (lambda v: _number(v, low=0), "a number >= 0")
_FIELDS = {
    "": {"created": _STR, "preset": _STR, "precision": _STR, "machine": _OBJECT, "versions": _OBJECT,
         "settings": _OBJECT, "limits": _LIST, "skipped": _LIST, "failures": _LIST},
    "machine": {"cpu_model": _STR, "isa": _STR, "cpu_count": _COUNT,
                "threads": (lambda v: isinstance(v, list) and all(_count(t) for t in v), "a list of positive integers"),
                "cache_bytes": (_optional(_count), "null or a positive integer"),
                "gpu": (lambda v: v is None or (isinstance(v, dict) and _text(v.get("name"))), "null or {name, ...}")},
    "limits": {"name": (lambda v: v in ("fma_peak", "read_bandwidth"), "fma_peak or read_bandwidth"),
               "threads": _COUNT, "value": (lambda v: _number(v, above=0), "a positive number"), "unit": _STR},
    "results": {"kernel": _STR, "shape": _STR, "threads": _COUNT, "precision": _STR, "impl": _STR,
                "median_s": (lambda v: _number(v, above=0), "a positive number of seconds"),
                "q25_s": _AT_LEAST_0, "q75_s": _AT_LEAST_0, "spread": _AT_LEAST_0, "calls": _COUNT,
                "rounds_s": (lambda v: isinstance(v, list) and len(v) > 0 and all(_number(t, low=0) for t in v),
                             "a list of times"),
                "work": _AT_LEAST_0, "unit": (lambda v: v in ("flop", "byte"), "flop or byte"),
                "rate": (_optional(_number), "null or a number"), "rate_unit": _STR,
                "limit": (_optional(_text), "null or a string"),
                "fraction_of_limit": (_optional(_number), "null or a number"),
                "in_cache": (lambda v: isinstance(v, bool), "true or false"),
                "speedup": (lambda v: v is None or (isinstance(v, dict)
                                                    and all(_number(v.get(q)) for q in ("median", "q25", "q75"))),
                            "null or {median, q25, q75} numbers")},
    "skipped": {"kernel": _STR, "shape": _STR, "threads": _COUNT, "impl": _STR, "reason": _STR},
    "failures": {"kernel": _STR, "shape": _STR, "threads": _COUNT, "impl": _STR, "error": _STR},
}


def _fields_problem(item, part, where) -> str | None:
    if not isinstance(item, dict):
        return f"{where} must be an object, got {type(item).__name__}"
    for name, (check, wanted) in _FIELDS[part].items():
        if name not in item:
            return f"{where} has no {name!r}" if where else f"no {name!r}"
        if not check(item[name]):
            return f"{where + ' ' if where else ''}{name} must be {wanted}, got {item[name]!r}"
    return None


def _problem(data) -> str | None:
    """What makes ``data`` no run's records, or None."""
    problem = _fields_problem(data, "", "") or _fields_problem(data["machine"], "machine", "machine")
    if problem:
        return problem
    for part in ("limits", "results", "skipped", "failures"):
        for i, item in enumerate(data[part]):
            problem = _fields_problem(item, part, f"{part}[{i}]")
            if problem:
                return problem
    for i, r in enumerate(data["results"]):
        if r["impl"] != "ember" and r["speedup"] is None:  # the table shows each reference's speed-up
            return f"results[{i}] ({r['impl']}) has no speedup"
        if r["in_cache"] and data["machine"]["cache_bytes"] is None:
            return f"results[{i}] is in_cache, but the machine's cache_bytes is null"
    return None


def select(data: dict, kernels=None, shapes=None, threads=None) -> dict:
    """The part of a run's records (``load``'s) that ``run(kernels, shapes=shapes, threads=threads)``
    would measure: the records of the kernels named (default all, or the GEMM with ``shapes``),
    at those sizes and thread counts (default any), and the limits of their kinds of work."""
    if isinstance(kernels, str):
        kernels = [kernels]
    names = labels = units = None
    if kernels or shapes:
        chosen = C.cases(kernels, "test", shapes)  # checks the names (and that --shape sizes them) as run does
        names = {case.kernel for case in chosen}
        units = {machine.LIMITS[case.unit][0] for case in chosen}
        labels = {case.shape for case in chosen} if shapes else None
    wanted = None if threads is None else {int(t) for t in threads}

    def keep(r):
        return ((names is None or r["kernel"] in names) and (labels is None or r["shape"] in labels)
                and (wanted is None or r["threads"] in wanted))

    out = dict(data)
    for part in ("results", "skipped", "failures"):
        out[part] = [r for r in data[part] if keep(r)]
    out["limits"] = [item for item in data["limits"] if (units is None or item["name"] in units)
                     and (wanted is None or item["threads"] in wanted)]
    if wanted is not None:
        out["machine"] = {**data["machine"], "threads": [t for t in data["machine"]["threads"] if t in wanted]}
    return out


def limit_for(limits, unit, threads):
    name = machine.LIMITS[unit][0]
    return next((item for item in limits if item["name"] == name and item["threads"] == threads), None)


def _records(case, threads, timings, limit, cache_bytes) -> list:
    out = []
    for impl, timing in timings.items():
        record = {"kernel": case.kernel, "shape": case.shape, "threads": threads,
                  "precision": case.precision if impl == "ember" else _reference_precision(case, impl),
                  "impl": impl, "median_s": timing.median, "q25_s": timing.q25, "q75_s": timing.q75,
                  "spread": timing.spread, "calls": timing.calls, "rounds_s": timing.rounds, "work": case.work,
                  "unit": case.unit, "rate": None, "rate_unit": machine.LIMITS[case.unit][1], "limit": None,
                  "fraction_of_limit": None, "in_cache": bool(case.unit == "byte" and cache_bytes
                                                              and case.work <= cache_bytes), "speedup": None}
        if impl == "ember":
            record["rate"] = case.work / timing.median * 1e-9 if timing.median > 0 else None
            # An fp32 FMA peak says nothing about bf16 or integer products: a fraction only for fp32.
            if limit is not None and record["rate"] is not None and (case.unit == "byte" or case.precision == "fp32"):
                record["limit"], record["fraction_of_limit"] = limit["name"], record["rate"] / limit["value"]
        else:
            mid, q25, q75 = speedup(timings, "ember", impl)
            record["speedup"] = {"median": mid, "q25": q25, "q75": q75}
        out.append(record)
    return out


def _reference_precision(case, impl) -> str:
    for tag in ("bf16", "int8", "int4", "fp32"):
        if tag in impl:
            return tag
    return case.precision if case.precision in ("fp32", "bf16") else "fp32"


def run(kernels=None, preset: str = "quick", *, shapes=None, threads=None, rounds=None, progress=None,
        measure_limits: bool = True, **timing) -> BenchRun:
    """Measure Ember's kernels against the references installed here.

    ``kernels``: a name or names from ``ember.bench.KERNELS`` (default all); ``preset``: 'test',
    'quick' or 'full' sizes, or ``shapes`` (MxKxN triples) for the GEMM-like kernels;
    ``threads``: the thread counts to run at (default Ember's current one); ``rounds``: timing
    rounds, >= 1 (default per preset). Each timed result is checked (a wrong one is recorded under ``failures``); a
    reference that is not installed is recorded under ``skipped`` with the reason. ``timing``
    goes to ``ember.bench.measure`` (min_time, settle, clock, sleep)."""
    import ember

    if rounds is not None and (isinstance(rounds, bool) or not isinstance(rounds, numbers.Integral) or rounds < 1):
        raise ValueError(f"rounds must be an integer >= 1 (or None: the preset's), got {rounds!r}")
    selected = C.cases(kernels, preset, shapes)
    threads = [ember.get_num_threads()] if threads is None else [int(t) for t in threads]
    if not threads or min(threads) < 1:
        raise ValueError(f"threads must be positive integers, got {threads}")
    n_rounds, min_time, settle, warmup_time, long_call, long_rounds = SETTINGS[preset]
    timing = {"rounds": n_rounds if rounds is None else int(rounds), "min_time": min_time, "settle": settle,
              "warmup_time": warmup_time, "long_call": long_call, "long_rounds": long_rounds, **timing}
    result = BenchRun(preset="custom" if shapes else preset, machine=machine.describe(threads),
                      versions={}, precision=ember.precision.current().name,
                      settings={"rounds": timing["rounds"], "min_time_s": timing["min_time"],
                                "settle_s": timing["settle"], "long_call_s": timing["long_call"],
                                "long_rounds": timing["long_rounds"]})
    units = sorted({case.unit for case in selected})
    bar = Progress(len(selected) * len(threads) + (len(units) * len(threads) if measure_limits else 0), "ember bench",
                   enabled=progress if progress is not None else True)
    try:
        if measure_limits:
            for unit in units:
                name, rate_unit, how = machine.LIMITS[unit]
                for t in threads:
                    bar.step(f"{name} {t}t")
                    result.limits.append({"name": name, "threads": t, "value": how(t), "unit": rate_unit})
        for case in selected:
            prepared = case.setup()
            for t in threads:
                bar.step(f"{case.kernel} {case.shape} {t}t")
                for impl, reason in prepared.skipped.items():
                    result.skipped.append({"kernel": case.kernel, "shape": case.shape, "threads": t, "impl": impl,
                                           "reason": reason})
                with thread_limit(t):
                    timings = measure(prepared.impls, **timing)
                wrong = []
                for impl in list(timings):
                    try:
                        prepared.check(impl)
                    except AssertionError as exc:
                        wrong.append(impl)
                        result.failures.append({"kernel": case.kernel, "shape": case.shape, "threads": t,
                                                "impl": impl, "error": str(exc).strip().splitlines()[0]})
                if "ember" in wrong:
                    continue  # a wrong result's time means nothing
                for impl in wrong:
                    del timings[impl]
                result.results.extend(_records(case, t, timings, limit_for(result.limits, case.unit, t),
                                              result.machine["cache_bytes"]))
            del prepared  # the next case's operands replace these
    finally:
        bar.close()
    result.versions = machine.versions()  # after the cases: the references they imported
    return result


def _ms(seconds) -> str:
    return f"{seconds * 1e3:.4g}"


def table(data: dict) -> str:
    """The run as a table: per case Ember's median (and spread), its rate and fraction of the
    measured limit, then one line per reference with its median and Ember's speed-up over it
    (above 1: Ember is faster)."""
    head = ["kernel", "shape", "thr", "ember ms", "±", "rate", "of limit", "reference", "ref ms", "speed-up"]
    rows = []
    by_case = {}
    for r in data["results"]:
        by_case.setdefault((r["kernel"], r["shape"], r["threads"]), []).append(r)
    for (kernel, shape, threads), records in by_case.items():
        ember = next((r for r in records if r["impl"] == "ember"), None)
        if ember is None:
            continue
        rate = f"{ember['rate']:.4g} {ember['rate_unit']}" if ember["rate"] is not None else "-"
        limit = f"{100 * ember['fraction_of_limit']:.0f}%" if ember["fraction_of_limit"] is not None else "-"
        if ember.get("in_cache") and limit != "-":
            limit += " (cache)"  # read from the last-level cache, which is faster than memory
        first = [kernel, shape, str(threads), _ms(ember["median_s"]), f"{100 * ember['spread']:.0f}%", rate, limit]
        refs = [r for r in records if r["impl"] != "ember"]
        if not refs:
            rows.append(first + ["-", "-", "-"])
        for i, r in enumerate(refs):
            lead = first if i == 0 else [""] * len(first)
            rows.append(lead + [r["impl"], _ms(r["median_s"]), f"{r['speedup']['median']:.2f}x"])
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    m = data["machine"]
    lines.append("")
    lines.append(f"CPU: {m['cpu_model']}; ISA {m['isa']}; {m['cpu_count']} CPUs usable" +
                 (f"; GPU: {m['gpu']['name']}" if m.get("gpu") else ""))
    if any(r.get("in_cache") for r in data["results"]):
        lines.append(f"(cache): the data fits in the {m['cache_bytes'] >> 20} MiB last-level cache, so it is read from "
                     "there, faster than from memory")
    for item in data["limits"]:
        lines.append(f"measured {item['name'].replace('_', ' ')} ({item['threads']}t): {item['value']:.4g} {item['unit']}")
    for s in data["skipped"]:
        lines.append(f"skipped: {s['kernel']} {s['shape']} {s['impl']}: {s['reason']}")
    for f in data["failures"]:
        lines.append(f"WRONG RESULT: {f['kernel']} {f['shape']} {f['threads']}t {f['impl']}: {f['error']}")
    return "\n".join(_dedupe(lines))


def _dedupe(lines):
    seen = set()
    for line in lines:
        if line.startswith("skipped: ") and line in seen:
            continue
        seen.add(line)
        yield line


def compare(old: dict, new: dict) -> list:
    """What changed between two runs, case by case, implementation by implementation: each
    entry holds both medians, the relative change of the time, and a verdict -- 'faster' or
    'slower' when the change is beyond both runs' spread (and 5%), else 'same'. Entries present
    in only one run say so."""
    def key(r):
        return r["kernel"], r["shape"], r["threads"], r["precision"], r["impl"]

    before = {key(r): r for r in old["results"]}
    after = {key(r): r for r in new["results"]}
    out = []
    for k in list(before) + [k for k in after if k not in before]:
        a, b = before.get(k), after.get(k)
        entry = dict(zip(("kernel", "shape", "threads", "precision", "impl"), k))
        if a is None or b is None:
            entry.update(old_s=a and a["median_s"], new_s=b and b["median_s"], change=None,
                         verdict="only in the old run" if b is None else "only in the new run")
        else:
            change = b["median_s"] / a["median_s"] - 1.0
            noise = max(0.05, a.get("spread", 0.0), b.get("spread", 0.0))
            verdict = "same" if abs(change) <= noise else ("slower" if change > 0 else "faster")
            entry.update(old_s=a["median_s"], new_s=b["median_s"], change=change, verdict=verdict)
        out.append(entry)
    return out


def compare_table(entries) -> str:
    head = ["kernel", "shape", "thr", "impl", "old ms", "new ms", "time", "verdict"]
    rows = [[e["kernel"], e["shape"], str(e["threads"]), e["impl"],
             _ms(e["old_s"]) if e["old_s"] else "-", _ms(e["new_s"]) if e["new_s"] else "-",
             f"{100 * e['change']:+.1f}%" if e["change"] is not None else "-", e["verdict"]] for e in entries]
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)

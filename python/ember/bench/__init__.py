"""Ember's performance story as a library (the ``ember bench`` and ``ember profile`` commands
use it, and so do the pytest-benchmark files under ``benchmarks/``):

- ``run(kernels, preset)``: Ember's kernels timed against the references installed here, with
  the FMA peak and read bandwidth measured beside them; ``BenchRun.to_dict()`` gives the
  records that ``bench.schema.json`` (in this package) documents, ``table`` prints them,
  ``compare(old, new)`` says what changed;
- ``profile(model, example_input)``: a model's time and memory per layer, its latency and
  throughput, in its fp32, bf16, int8 and int4 forms (``profile.schema.json``);
- ``measure(impls)``: the one timing harness under both (alternating rounds with pauses);
- ``KERNELS`` and ``cases(kernels, preset)``: the catalogue of kernel benchmarks.
"""

from .catalogue import KERNELS, PRESETS, Case, Prepared, cases
from .harness import Timing, measure, sample_calls, speedup
from .profiling import ProfileReport, peak_rss, profile
from .runner import BenchRun, compare, load, run, table, thread_limit

__all__ = ["KERNELS", "PRESETS", "BenchRun", "Case", "Prepared", "ProfileReport", "Timing", "cases", "compare",
           "load", "measure", "peak_rss", "profile", "run", "sample_calls", "speedup", "table", "thread_limit"]

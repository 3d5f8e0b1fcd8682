"""Data-parallel training on this machine: the seed CNN at global batch 128, Adam, 2 ranks x 1
thread (``mpiexec -n 2``) against 1 rank x 2 threads, alternated, in one run. Each case runs
distributed_step.py in a fresh job; ``extra_info`` holds its samples/s, the share of the step the
ranks spent on communication the backward did not hide, and one all-reduce of every gradient
alone. As a test (``--benchmark-disable``) each configuration runs a few steps and must finish
with every rank's weights identical.

    python -m pytest benchmarks/bench_distributed.py --benchmark-only -s
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mpi4py", reason="data-parallel training needs mpi4py (pip install 'ember[distributed]')")

STEP = Path(__file__).with_name("distributed_step.py")
BESIDE = Path(sys.executable).parent / "mpiexec"
MPIEXEC = str(BESIDE) if BESIDE.exists() else shutil.which("mpiexec")
CONFIGS = {"1 rank x 2 threads": (1, 2), "2 ranks x 1 thread": (2, 1)}
REPEATS = 3


def run_config(ranks, threads, steps, warmup):
    env = dict(os.environ, EMBER_NUM_THREADS=str(threads))
    for name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"):
        env.pop(name, None)
    cmd = [sys.executable, str(STEP), "--steps", str(steps), "--warmup", str(warmup)]
    if ranks > 1:
        cmd = [MPIEXEC, "-n", str(ranks), *cmd]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(MPIEXEC is None, reason="MPI cannot start here: no mpiexec (pip install 'ember[distributed]')")
def bench_data_parallel_seed_cnn(benchmark):
    if getattr(benchmark, "disabled", False):
        steps, warmup, repeats = 2, 1, 1
    else:
        steps, warmup, repeats = 40, 5, REPEATS
    results = {name: [] for name in CONFIGS}

    def run():
        for _ in range(repeats):  # alternate, so drifts of the machine hit both alike
            for name, (ranks, threads) in CONFIGS.items():
                time.sleep(0.2)
                results[name].append(run_config(ranks, threads, steps, warmup))

    benchmark.group = "data-parallel seed CNN, global batch 128"
    benchmark.pedantic(run, rounds=1, iterations=1)
    alone, ranks = results["1 rank x 2 threads"], results["2 ranks x 1 thread"]
    for r in ranks:
        assert r["ranks"] == 2 and r["threads"] == 1 and r["batch"] == 128
        assert r["gradient_bytes"] == 4 * (32 * 3 * 3 * 3 + 32 + 7200 * 128 + 128 + 128 * 10 + 10)
        assert 0 <= r["comm_share"] < 1
    ratios = [b["samples_per_s"] / a["samples_per_s"] for a, b in zip(alone, ranks)]
    benchmark.extra_info.update(
        samples_per_s_1x2=float(np.median([a["samples_per_s"] for a in alone])),
        samples_per_s_2x1=float(np.median([r["samples_per_s"] for r in ranks])),
        ratio_2x1_over_1x2=float(np.median(ratios)), ratios=ratios,
        comm_share_2x1=float(np.median([r["comm_share"] for r in ranks])),
        allreduce_ms=float(np.median([r["allreduce_ms"] for r in ranks])))
    print(json.dumps(benchmark.extra_info))

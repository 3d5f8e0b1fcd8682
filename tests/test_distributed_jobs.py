"""Distributed fit's smaller promises under ``mpiexec -n 2``: a loss that sums its samples gets
the whole batch's gradient, only rank 0 prints, and ``ember train`` failing on one rank ends the
job at once instead of leaving the other waiting for its collectives to time out."""

import sys
import time

import numpy as np
from test_distributed import needs_mpi, run_job

SUM_LOSS = """
import sys
import numpy as np
import ember
from ember import callbacks, distributed as dist, nn
from ember.optim import lr_scheduler

ember.manual_seed(0)
model = nn.Sequential(nn.Linear(4, 3))
before = model[0].weight.detach().numpy().copy()
rng = np.random.default_rng(0)
x, y = rng.normal(size=(8, 4)).astype(np.float32), rng.integers(0, 3, 8)
model.compile(optimizer="sgd", loss=nn.CrossEntropyLoss(reduction="sum"), lr=0.01)
schedule = callbacks.LearningRateScheduler(lambda epoch, lr: 0.01, verbose=1)
model.fit(x, y, batch_size=8, epochs=1, verbose=0, seed=1, callbacks=[schedule])  # one step, the whole batch
if dist.rank() == 0:
    np.save(sys.argv[1], model[0].weight.detach().numpy() - before)
"""

DISK_FULL = """
import sys
import ember.checkpoint

def disk_full(*args, **kwargs):
    raise OSError(28, "No space left on device")  # what a full disk raises on the one rank that saves

ember.checkpoint.save = disk_full
from ember.cli import main

sys.argv = ["ember", "train", "--dataset", "digits", "--model", "mlp", "--epochs", "2", "--verbose", "0",
            "--out", sys.argv[1]]
sys.exit(main())
"""


@needs_mpi
def test_a_summed_loss_and_printing_on_two_ranks(tmp_path):
    script = tmp_path / "sum_loss.py"
    script.write_text(SUM_LOSS)
    one, two = tmp_path / "one.npy", tmp_path / "two.npy"
    run_job(1, sys.executable, str(script), str(one))
    done = run_job(2, sys.executable, str(script), str(two))
    step_one, step_two = np.load(one), np.load(two)
    assert np.abs(step_one).max() > 1e-3
    np.testing.assert_allclose(step_two, step_one, rtol=1e-5, atol=1e-7)  # it was half: weighed as a mean
    assert done.stdout.count("epoch 1: learning rate 0.01") == 1  # rank 0 only


@needs_mpi
def test_a_cli_failure_on_one_rank_ends_the_job(tmp_path):
    script = tmp_path / "disk_full.py"
    script.write_text(DISK_FULL)
    start = time.perf_counter()
    done = run_job(2, sys.executable, str(script), str(tmp_path / "m.safetensors"), check=False, timeout=240)
    assert done.returncode != 0 and "No space left on device" in done.stderr
    assert time.perf_counter() - start < 100  # the other rank would wait 300 s for its collective

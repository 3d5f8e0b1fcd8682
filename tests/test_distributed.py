"""ember.distributed: the world of one in this process, then real jobs of 2 and 3 ranks under
mpiexec (distributed_worker.py): equal to one process, bitwise identical across ranks after
every step, a failing or stuck rank ending the job with its error, ``ember train`` resumed."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import ember
from ember import distributed as dist
from ember import metrics, nn
from ember.autograd import engine
from ember.data import DataLoader, TensorDataset
from ember.data import transforms as T
from ember.distributed import comm

WORKER = Path(__file__).with_name("distributed_worker.py")


# ---------------------------------------------------------------- in this process: a world of one
def test_a_process_without_a_launcher_is_a_world_of_one():
    w = dist.init()
    assert (w.rank, w.size, w.local_rank, w.local_size, w.comm) == (0, 1, 0, 1, None)
    assert dist.is_main() and dist.rank() == 0 and dist.world_size() == 1 and dist.is_initialized()
    dist.barrier()
    t = ember.tensor(np.arange(4, dtype=np.float32))
    assert dist.all_reduce(t) is t and np.array_equal(t.numpy(), np.arange(4))
    assert np.array_equal(dist.all_reduce(t, op="mean").numpy(), np.arange(4))
    assert dist.all_gather(t).shape == (1, 4)
    assert dist.broadcast(t).numpy().tolist() == [0, 1, 2, 3]
    assert dist.all_gather_object({"a": 1}) == [{"a": 1}] and dist.broadcast_object(3) == 3


def test_collectives_reject_bad_arguments():
    t = ember.tensor(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="op must be one of"):
        dist.all_reduce(t, op="avg")
    with pytest.raises(TypeError, match="needs a floating-point tensor"):
        dist.all_reduce(ember.tensor(np.zeros(3, np.int64)), op="mean")
    with pytest.raises(TypeError, match="expected an ember Tensor, got ndarray"):
        dist.all_reduce(np.zeros(3))
    with pytest.raises(ValueError, match="src must be a rank from 0 to 0, got 1"):
        dist.broadcast(t, src=1)
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        dist.init(timeout=0)


def test_the_environment_is_checked(monkeypatch):
    monkeypatch.setenv("EMBER_DIST_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="EMBER_DIST_TIMEOUT must be a positive number of seconds, got 'soon'"):
        comm._timeout_from_env()
    monkeypatch.setenv("EMBER_DIST_TIMEOUT", "2.5")
    assert comm._timeout_from_env() == 2.5
    monkeypatch.setenv("PMI_SIZE", "many")
    with pytest.raises(dist.DistributedError, match="PMI_SIZE='many'"):
        dist.launched_world_size()
    monkeypatch.setenv("PMI_SIZE", "4")
    assert dist.launched_world_size() == 4


def test_sampler_shards_exactly_the_single_process_batches():
    n, batch = 103, 16
    loader = DataLoader(TensorDataset(np.arange(n)), batch_size=batch, shuffle=True, seed=9)
    loader.set_epoch(2)
    single = [b[0].numpy() for b in loader]
    for ranks in (2, 3, 5):
        shards = [dist.DistributedSampler(n, batch, seed=9, num_replicas=ranks, rank=r) for r in range(ranks)]
        for s in shards:
            s.set_epoch(2)
        per_rank = [list(s) for s in shards]
        assert {len(p) for p in per_rank} == {len(single)} == {len(shards[0])}
        for step, whole in enumerate(single):
            parts = [p[step] for p in per_rank]
            assert sorted(np.concatenate(parts).tolist()) == sorted(whole.tolist())
            assert max(map(len, parts)) - min(map(len, parts)) <= 1
        assert shards[0].global_batch_sizes() == [len(b) for b in single]
    a = dist.DistributedSampler(n, batch, seed=9, num_replicas=2, rank=0)
    first = [b.tolist() for b in a]
    a.set_epoch(1)
    assert [b.tolist() for b in a] != first
    assert [b.tolist() for b in dist.DistributedSampler(n, batch, shuffle=False, num_replicas=2, rank=1)][0] == \
        list(range(1, 16, 2))


def test_sampler_gives_an_empty_share_of_a_batch_shorter_than_the_ranks():
    s = dist.DistributedSampler(33, 16, shuffle=False, num_replicas=3, rank=2)
    assert [len(b) for b in s] == [5, 5, 0]
    loader = DataLoader(TensorDataset(np.ones((33, 2, 3), np.float32), np.arange(33)), batch_sampler=s)
    last = list(loader)[-1]
    assert last[0].shape == (0, 2, 3) and last[1].shape == (0,)
    assert len(dist.DistributedSampler(33, 16, drop_last=True, num_replicas=3, rank=0)) == 2
    # The empty share has the shape and dtype the transform gives the others.
    images = TensorDataset(np.zeros((10, 3, 8, 8), np.uint8), np.arange(10))
    crop = T.Compose([T.RandomCrop(6), T.ToFloat()])
    sampler = dist.DistributedSampler(10, 4, shuffle=False, num_replicas=4, rank=3)
    shares = [b[0] for b in DataLoader(images, batch_sampler=sampler, transform=crop)]
    assert [x.shape for x in shares] == [(1, 3, 6, 6), (1, 3, 6, 6), (0, 3, 6, 6)]
    assert {x.dtype for x in shares} == {np.dtype(np.float32)}


@pytest.mark.parametrize("kwargs, error, match", [
    ({"batch_size": 0}, ValueError, "batch_size must be an int >= 1, got 0"),
    ({"batch_size": 4, "rank": 2, "num_replicas": 2}, ValueError, "rank must be below num_replicas"),
    ({"batch_size": 4, "shuffle": 1}, TypeError, "shuffle must be a bool"),
    ({"batch_size": 4, "seed": -1}, ValueError, "seed must be an integer >= 0"),
])
def test_sampler_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        dist.DistributedSampler(10, **kwargs)


def test_loader_batch_sampler_excludes_batch_size_and_shuffle():
    s = dist.DistributedSampler(10, 4, num_replicas=1, rank=0)
    with pytest.raises(ValueError, match="leave batch_size, shuffle and drop_last at their defaults"):
        DataLoader(TensorDataset(np.arange(10)), batch_size=4, batch_sampler=s)
    with pytest.raises(TypeError, match="batch_sampler must be iterable and have a length"):
        DataLoader(TensorDataset(np.arange(10)), batch_sampler=5)


def test_post_accumulate_hook_runs_once_the_gradient_is_complete():
    w = ember.tensor(np.ones((3, 3), np.float32), requires_grad=True)
    b = ember.tensor(np.ones(3, np.float32), requires_grad=True)
    x = ember.tensor(np.ones((2, 3), np.float32))
    seen = []
    handle = w.register_post_accumulate_grad_hook(lambda t: seen.append(("w", float(t.grad.numpy().sum()))))
    b.register_post_accumulate_grad_hook(
        lambda t: (seen.append("b"), engine.queue_callback(lambda: seen.append("end"))))
    ((x @ w + b) @ w).sum().backward()  # w gets two gradients: its hook sees their sum
    w_grad = float(w.grad.numpy().sum())
    assert seen == ["b", ("w", w_grad), "end"]
    handle.remove()
    handle.remove()
    seen.clear()
    (x @ w + b).sum().backward()
    assert seen == ["b", "end"]
    with pytest.raises(RuntimeError, match="no backward is running"):
        engine.queue_callback(lambda: None)
    with pytest.raises(RuntimeError, match="only a leaf tensor that requires grad"):
        (w * 2).register_post_accumulate_grad_hook(print)
    with pytest.raises(TypeError, match="hook must be callable"):
        w.register_post_accumulate_grad_hook(3)


@pytest.mark.parametrize("name", ["accuracy", "top2", "precision", "recall_weighted", "f1_micro"])
def test_metric_states_merge_to_the_whole_data_value(name, rng):
    y = rng.integers(0, 4, 90)
    scores = rng.standard_normal((90, 4)).astype(np.float32)
    whole = metrics.get(name)
    whole.update(y, scores)
    parts = []
    for lo in (0, 30, 60):
        m = metrics.get(name)
        m.update(y[lo:lo + 30][:2 + lo // 30], scores[lo:lo + 30][:2 + lo // 30])  # few classes: matrices differ
        m.update(y[lo + 2 + lo // 30:lo + 30], scores[lo + 2 + lo // 30:lo + 30])
        parts.append(m.state())
    merged = metrics.get(name)
    for st in parts:
        merged.merge_state(st)
    assert merged.result() == pytest.approx(whole.result(), abs=1e-12)


def test_a_metric_without_state_says_so():
    class Mine(metrics.Metric):
        name = "mine"

        def update(self, y_true, y_pred): ...

        def result(self): return 0.0

        def reset(self): ...

    with pytest.raises(NotImplementedError, match="metric 'mine' .*defines no state"):
        Mine().state()


def test_wrapper_in_a_world_of_one_changes_nothing(rng):
    x = rng.standard_normal((8, 6)).astype(np.float32)
    y = rng.integers(0, 3, 8)
    results = []
    for wrap in (False, True):
        ember.manual_seed(1)
        model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
        net = dist.DistributedDataParallel(model) if wrap else model
        opt = ember.optim.SGD(net.parameters(), lr=0.1)
        for _ in range(2):
            opt.zero_grad()
            nn.CrossEntropyLoss()(net(ember.tensor(x)), ember.tensor(y)).backward()
            opt.step()
        results.append(net.state_dict())
    assert list(results[1]) == ["0.weight", "0.bias", "2.weight", "2.bias"]  # no "module." prefix
    for k in results[0]:
        assert np.array_equal(results[0][k].numpy(), results[1][k].numpy())
    with pytest.raises(TypeError, match="module must be an ember.nn.Module"):
        dist.DistributedDataParallel(lambda t: t)
    with pytest.raises(ValueError, match="bucket_cap_mb must be a positive number"):
        dist.DistributedDataParallel(nn.Linear(2, 2), bucket_cap_mb=0)


def test_checkpoints_load_with_or_without_the_wrapper(tmp_path):
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    wrapped = dist.DistributedDataParallel(model)
    other = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    other.save(tmp_path / "plain.safetensors")
    wrapped.load(tmp_path / "plain.safetensors")  # was: missing keys module.0.weight, ...
    for (k, a), b in zip(model.state_dict().items(), other.state_dict().values()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=k)
    wrapped.save(tmp_path / "half.safetensors", dtype="bf16")  # the parameters as bf16, as for the bare model
    with open(tmp_path / "half.safetensors", "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    assert {v["dtype"] for k, v in header.items() if k != "__metadata__"} == {"BF16"}
    rebuilt = ember.load_model(tmp_path / "half.safetensors")  # the architecture is the wrapped model's
    assert [type(m).__name__ for m in rebuilt] == ["Linear", "ReLU", "Linear"]


def test_fit_distributed_in_a_world_of_one_is_plain_fit(rng):
    x = rng.standard_normal((40, 6)).astype(np.float32)
    y = rng.integers(0, 3, 40)
    out = []
    for flag in (False, True):
        ember.manual_seed(2)
        model = nn.Sequential(nn.Linear(6, 3))
        model.compile(optimizer="sgd", metrics=["accuracy"])
        out.append(model.fit(x, y, batch_size=8, epochs=2, seed=1, verbose=0, distributed=flag).history["loss"])
    assert out[0] == out[1]
    with pytest.raises(TypeError, match="distributed must be True, False or None"):
        model.fit(x, y, distributed="yes", verbose=0)


# ---------------------------------------------------------------- jobs of several ranks
def _mpiexec():
    beside = Path(sys.executable).parent / "mpiexec"  # the mpich wheel's, in this environment
    found = str(beside) if beside.exists() else shutil.which("mpiexec")
    return found if importlib.util.find_spec("mpi4py") is not None else None


MPIEXEC = _mpiexec()
needs_mpi = pytest.mark.skipif(MPIEXEC is None, reason="MPI cannot start here: mpi4py or mpiexec is missing "
                                                       "(pip install 'ember[distributed]')")


def _env(**extra):
    env = dict(os.environ, EMBER_NUM_THREADS="1", **extra)
    for name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"):
        env.pop(name, None)  # this process's own launcher (if any) is not the job's
    return env


def run_job(ranks, *args, timeout=120, check=True, cwd=None):
    """``mpiexec -n ranks ARGS`` (plain ``ARGS`` for one rank: the single-process reference)."""
    cmd = [MPIEXEC, "-n", str(ranks), *args] if ranks > 1 else list(args)
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env(), cwd=cwd)
    if check and result.returncode != 0:
        raise AssertionError(f"{cmd} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def worker(ranks, scenario, out, *options, **kwargs):
    return run_job(ranks, sys.executable, str(WORKER), scenario, str(out), *options, **kwargs)


def load(out, ranks):
    return ([dict(np.load(out / f"rank{r}.npz")) for r in range(ranks)],
            [json.loads((out / f"rank{r}.json").read_text()) for r in range(ranks)])


@needs_mpi
def test_fit_on_ranks_equals_one_process_and_ranks_stay_identical(tmp_path):
    """SGD, global batch 32 over 129 training samples (the last batch has one sample, so with 2
    and 3 ranks some ranks have an empty share): the weights agree with one process's within
    float32 rounding of the differently ordered sums (1e-5 of the weights' scale after 10
    steps), bitwise across ranks after every step, and the logs agree."""
    runs = {}
    for ranks in (1, 2, 3):
        out = tmp_path / f"n{ranks}"
        out.mkdir()
        worker(ranks, "fit", out, "--samples", "172")
        runs[ranks] = load(out, ranks)
    (reference,), (ref_logs,) = runs[1]
    val_samples = 43
    for ranks in (2, 3):
        weights, logs = runs[ranks]
        for r in range(1, ranks):
            for k in weights[0]:
                assert np.array_equal(weights[r][k], weights[0][k]), (ranks, r, k)
            assert logs[r]["history"] == logs[0]["history"]
        assert logs[0]["checks"] == 10 and logs[0]["size"] == ranks
        for k, v in reference.items():
            np.testing.assert_allclose(weights[0][k], v, rtol=0, atol=1e-5 * np.abs(v).max(), err_msg=k)
        for k, v in ref_logs["history"].items():
            got = logs[0]["history"][k]
            if "loss" in k:
                np.testing.assert_allclose(got, v, rtol=1e-5, err_msg=k)
            else:  # a near tie may flip one prediction
                np.testing.assert_allclose(got, v, rtol=0, atol=1.0 / val_samples + 1e-12, err_msg=k)


@needs_mpi
def test_fit_on_ranks_with_a_device_that_is_not_the_host(tmp_path):
    """The model on device 'strict' (arrays that refuse NumPy, as CUDA's do): the gradients are
    summed through the host, and the result is still one process's."""
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    worker(1, "fit", one, "--device", "strict", "--samples", "120", "--epochs", "1")
    worker(2, "fit", two, "--device", "strict", "--samples", "120", "--epochs", "1")
    (reference,), _ = load(one, 1)
    weights, logs = load(two, 2)
    assert logs[0]["checks"] == logs[1]["checks"] == 3
    for k, v in reference.items():
        assert np.array_equal(weights[0][k], weights[1][k]), k
        np.testing.assert_allclose(weights[0][k], v, rtol=0, atol=1e-5 * np.abs(v).max(), err_msg=k)


@needs_mpi
def test_adam_with_batchnorm_keeps_ranks_identical(tmp_path):
    worker(2, "fit", tmp_path, "--optimizer", "adam", "--batchnorm", "--samples", "150", "--batch", "24")
    weights, logs = load(tmp_path, 2)
    assert logs[0]["checks"] == logs[1]["checks"] == 10  # every step compared weights and buffers
    assert any("running_mean" in k for k in weights[0])
    for k in weights[0]:
        assert np.array_equal(weights[0][k], weights[1][k]), k


@needs_mpi
def test_hand_written_loop_with_accumulation_and_collectives(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    worker(1, "loop", one)
    worker(2, "loop", two)
    (reference,), _ = load(one, 1)
    weights, results = load(two, 2)
    for r, res in enumerate(results):
        assert res["sum"] == [1.0, 3.0, 5.0, 7.0]
        assert res["mean"] == [0.5, 1.5, 2.5, 3.5]
        assert res["max"] == [1, 0]
        assert res["any"] == [True, True, True, False] and res["all"] == [False, False, True, False]  # bool: or, and
        assert res["gather"] == [[0.0, 0.0], [1.0, 1.0]]
        assert res["broadcast"] == [1.0, 1.0, 1.0]
        assert res["objects"] == [{"rank": 0}, {"rank": 1}] and res["broadcast_object"] == "from 0"
        assert "the ranks passed different tensors -- rank 0 has shape (3,) float32, rank 1 has shape (4,)" \
            in res["mismatch"]
        assert res["buckets"] > 1
        assert res["released"] is True  # after release() the ranks' gradients differ again
    for k, v in reference.items():
        assert np.array_equal(weights[0][k], weights[1][k]), k
        np.testing.assert_allclose(weights[0][k], v, rtol=0, atol=1e-5 * np.abs(v).max(), err_msg=k)


@needs_mpi
def test_parameters_without_gradients_and_unfrozen_layers_train_as_in_one_process(tmp_path):
    """An unused layer keeps .grad None on every rank (AdamW's decay then leaves it alone), and a
    layer unfrozen after the first step gets its gradients summed: the weights agree with one
    process's, bitwise across ranks, with buckets of several parameters and of one."""
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    worker(1, "partial", one)
    worker(2, "partial", two)
    (reference,), (ref_none,) = load(one, 1)
    weights, nones = load(two, 2)
    unused = ["unused.bias", "unused.weight"]
    for name in ("unused-many", "unused-one"):
        assert ref_none[name] == [unused] * 4
    for name in ("unfreeze-many", "unfreeze-one"):
        assert ref_none[name] == [["a.bias", "a.weight"] + unused] + [unused] * 3
    assert nones[0] == nones[1] == ref_none
    for k, v in reference.items():
        assert np.array_equal(weights[0][k], weights[1][k]), k
        np.testing.assert_allclose(weights[0][k], v, rtol=0, atol=1e-5 * np.abs(v).max(), err_msg=k)
    frozen = reference["unused-many.unused.weight"]
    assert np.array_equal(reference["unfreeze-many.unused.weight"], frozen)  # neither Adam nor AdamW moved it


@needs_mpi
@pytest.mark.parametrize("scenario", ["raise", "stall"])
def test_a_failing_or_stuck_rank_ends_every_rank(tmp_path, scenario):
    start = time.monotonic()
    result = worker(2, scenario, tmp_path, "--timeout", "4", check=False, timeout=60)
    took = time.monotonic() - start
    assert result.returncode != 0
    if scenario == "raise":
        assert "ValueError: rank 1 failed on purpose" in result.stderr
        assert "rank 1 of 2 failed with ValueError; aborting every rank" in result.stderr
        assert took < 30
    else:  # rank 0 gives up waiting for rank 1 after the timeout, and the job ends
        assert "rank 0 got no answer from the other ranks within 4 s" in result.stderr
        assert took < 40


@needs_mpi
def test_a_rank_failing_before_init_ends_the_others_after_the_timeout(tmp_path):
    # MPI's start waits for every rank, out of Python's reach: a deadline in native code ends it.
    start = time.monotonic()
    result = worker(2, "raise-before-init", tmp_path, "--timeout", "4", check=False, timeout=60)
    took = time.monotonic() - start
    assert result.returncode != 0
    assert "ValueError: rank 1 failed before init on purpose" in result.stderr
    assert "rank 0 could not join the job within 4 s" in result.stderr, result.stderr
    assert took < 40


def test_the_watchdog_ends_the_process_unless_disarmed():
    code = ("import time\nfrom ember import _C\n_C.watchdog_arm(30, 'never\\n')\n_C.watchdog_disarm()\n"
            "_C.watchdog_arm(0.2, 'gave up\\n')\ntime.sleep(30)\nprint('not reached')\n")
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and result.stderr.endswith("gave up\n") and "never" not in result.stderr
    assert "not reached" not in result.stdout
    assert time.monotonic() - start < 20
    from ember import _C

    with pytest.raises(ValueError, match="seconds must be a positive number"):
        _C.watchdog_arm(float("nan"), "x")
    with pytest.raises(ValueError, match="seconds must be a positive number"):
        _C.watchdog_arm(0, "x")
    _C.watchdog_disarm()  # none armed: nothing


@needs_mpi
def test_a_resumed_distributed_fit_continues_every_ranks_random_stream(tmp_path):
    """Dropout, and 101 samples in batches of 8: the last batch's 5 samples split 3 and 2, so
    the ranks draw different amounts of random numbers and their streams part. A checkpoint
    holds each rank's stream, and the resumed run ends with the uninterrupted run's weights."""
    whole, part = tmp_path / "whole", tmp_path / "part"
    whole.mkdir()
    part.mkdir()
    options = ("--samples", "101", "--batch", "8")
    worker(2, "resume", whole, *options, "--epochs", "3")
    worker(2, "resume", part, *options, "--epochs", "1")
    worker(2, "resume", part, *options, "--epochs", "3", "--resume")
    for r in range(2):
        a, b = np.load(whole / f"rank{r}.npz"), np.load(part / f"rank{r}.npz")
        for k in a.files:
            assert np.array_equal(a[k], b[k]), (r, k)


@needs_mpi
def test_ember_train_on_two_ranks_resumes_like_an_uninterrupted_run(tmp_path):
    script = Path(sys.executable).parent / "ember"  # the console script, as a user types it
    assert script.exists(), f"the ember console script is not installed beside {sys.executable}"
    ember_cmd = [str(script), "train", "--batch-size", "128", "--verbose", "0"]
    whole, part = tmp_path / "whole.safetensors", tmp_path / "part.safetensors"
    result = run_job(2, *ember_cmd, "--epochs", "2", "--out", str(whole))
    assert result.stdout.count("test accuracy") == 1  # rank 0 alone reports
    run_job(2, *ember_cmd, "--epochs", "1", "--out", str(part))
    run_job(2, *ember_cmd, "--epochs", "2", "--out", str(part), "--resume", str(part))
    a, b = ember.load(whole, restore_rng=False), ember.load(part, restore_rng=False)
    assert a.epoch == b.epoch == 2
    assert set(a.model_state) == set(b.model_state)
    for k, v in a.model_state.items():
        assert np.array_equal(np.asarray(v), np.asarray(b.model_state[k])), k
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part.safetensors", "whole.safetensors"]

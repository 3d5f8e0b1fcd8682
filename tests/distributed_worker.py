"""What each rank runs in test_distributed.py's multi-process tests (``mpiexec -n N python
distributed_worker.py SCENARIO OUT_DIR [options]``); without mpiexec it is a world of one, the
single-process reference. Each rank writes what the test checks to OUT_DIR/rank{r}.npz/.json."""

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

import ember
from ember import distributed as dist
from ember import nn
from ember.callbacks import Callback, ModelCheckpoint


def digest_of(tensors) -> str:
    h = hashlib.blake2b(digest_size=16)
    for t in tensors:
        h.update(np.ascontiguousarray(t.detach()._host()).tobytes())
    return h.hexdigest()


def digest(model) -> str:
    return digest_of(t for _, t in [*model.named_parameters(), *model.named_buffers()])


class InSync(Callback):
    """After every step: the weights of all ranks, compared bit for bit."""

    def __init__(self):
        self.checks = 0

    def on_train_batch_end(self, batch, logs=None):
        seen = dist.all_gather_object(digest(self.model))
        if len(set(seen)) != 1:
            raise AssertionError(f"step {batch}: the ranks' weights differ: {seen}")
        self.checks += 1


def small_cnn(batchnorm: bool):
    layers = [nn.Conv2d(3, 8, 3)]
    if batchnorm:
        layers.append(nn.BatchNorm2d(8))
    layers += [nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 7 * 7, 32), nn.ReLU(), nn.Linear(32, 5)]
    return nn.Sequential(*layers)


def data(n):
    rng = np.random.default_rng(7)
    return rng.standard_normal((n, 3, 16, 16)).astype(np.float32), rng.integers(0, 5, n)


def scenario_fit(args, out: Path, w) -> None:
    ember.manual_seed(100 + w.rank)  # each rank builds different weights: the wrapper must send rank 0's
    if w.rank == 0:
        ember.manual_seed(100)
    model = small_cnn(args.batchnorm)
    if args.device != "cpu":
        if args.device == "strict":
            import strict_device  # a device whose arrays are not NumPy's: its gradients go through the host

            strict_device.register()
        model.to(args.device)
        t = dist.all_reduce(ember.tensor(np.full(2, w.rank + 1.0, np.float32), device=args.device))
        assert t.device == args.device and t._host().tolist() == [w.size * (w.size + 1) / 2] * 2
    x, y = data(args.samples)
    optimizer = ember.optim.SGD(model.parameters(), lr=0.05) if args.optimizer == "sgd" else \
        ember.optim.Adam(model.parameters(), lr=1e-3)
    model.compile(optimizer=optimizer, loss="cross_entropy", metrics=["accuracy", "precision", "recall", "f1"])
    check = InSync()
    history = model.fit(x, y, batch_size=args.batch, epochs=args.epochs, seed=3, validation_split=0.25, verbose=0,
                        callbacks=[check])
    np.savez(out / f"rank{w.rank}.npz", **{k: v._host() for k, v in model.state_dict().items()})
    logs = {k: v for k, v in history.history.items() if k != "samples_per_s"}
    (out / f"rank{w.rank}.json").write_text(json.dumps({"history": logs, "checks": check.checks, "size": w.size}))


def scenario_loop(args, out: Path, w) -> None:
    """A hand-written loop: DistributedDataParallel with gradient accumulation, the collectives."""
    results = {}
    t = ember.tensor(np.arange(4, dtype=np.float32) + w.rank)
    dist.all_reduce(t)
    results["sum"] = t.numpy().tolist()
    t = ember.tensor(np.arange(4, dtype=np.float32) + w.rank)
    results["mean"] = dist.all_reduce(t, op="mean").numpy().tolist()
    results["max"] = dist.all_reduce(ember.tensor(np.array([w.rank, -w.rank], np.int64)), op="max").numpy().tolist()
    flags = [w.rank == 0, w.rank == 1, True, False]  # rank 0: T F T F; rank 1: F T T F
    results["any"] = dist.all_reduce(ember.tensor(np.array(flags))).numpy().tolist()
    results["all"] = dist.all_reduce(ember.tensor(np.array(flags)), op="min").numpy().tolist()
    results["gather"] = dist.all_gather(ember.tensor(np.full((2,), w.rank, np.float64))).numpy().tolist()
    b = ember.tensor(np.full(3, float(w.rank), np.float32))
    results["broadcast"] = dist.broadcast(b, src=w.size - 1).numpy().tolist()
    results["objects"] = dist.all_gather_object({"rank": w.rank})
    results["broadcast_object"] = dist.broadcast_object(f"from {w.rank}", src=0)
    try:  # the ranks disagree on the shape: every rank must raise, none may hang
        dist.all_reduce(ember.tensor(np.zeros(3 + w.rank, np.float32)))
        results["mismatch"] = "no error"
    except dist.DistributedError as exc:
        results["mismatch"] = str(exc)
    dist.barrier()

    ember.manual_seed(5)
    model = small_cnn(batchnorm=False)  # (BatchNorm's batch statistics would differ from one process's)
    ddp = dist.DistributedDataParallel(model, bucket_cap_mb=0.01)
    optimizer = ember.optim.SGD(ddp.parameters(), lr=0.1)
    loss_fn = nn.CrossEntropyLoss()
    x, y = data(64)
    for step in range(3):  # global batch 32 = 2 micro-batches of 16, split over the ranks
        optimizer.zero_grad()
        for micro in range(2):
            lo = step * 32 % 64 + micro * 16
            xs, ys = x[lo:lo + 16][w.rank::w.size], y[lo:lo + 16][w.rank::w.size]
            scale = len(ys) / 16 / 2 * w.size  # the default weight averages over ranks
            if micro == 0:
                with ddp.no_sync():
                    (loss_fn(ddp(ember.tensor(xs)), ember.tensor(ys)) * scale).backward()
            else:
                (loss_fn(ddp(ember.tensor(xs)), ember.tensor(ys)) * scale).backward()
        optimizer.step()
        ddp.check_in_sync()
    results["buckets"] = len(ddp._buckets)
    ddp.release()  # from here on each rank's gradients are its own
    optimizer.zero_grad()
    loss_fn(model(ember.tensor(x[w.rank::w.size])), ember.tensor(y[w.rank::w.size])).backward()
    grads = dist.all_gather_object(digest_of(p.grad for p in model.parameters()))
    results["released"] = len(set(grads)) == w.size
    np.savez(out / f"rank{w.rank}.npz", **{k: v.numpy() for k, v in ddp.state_dict().items()})
    (out / f"rank{w.rank}.json").write_text(json.dumps(results))


def scenario_partial(args, out: Path, w) -> None:
    """Parameters without gradients: an unused layer trained with AdamW (its .grad must stay
    None, so AdamW's decay leaves it alone, as in one process), and a layer frozen for the first
    step, then unfrozen (its gradients must be summed from then on). Each with the default
    buckets and with buckets of one parameter each (whose flags take the separate all-reduce)."""

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(6, 5)
            self.b = nn.Linear(5, 3)
            self.unused = nn.Linear(6, 4)

        def forward(self, x):
            return self.b(nn.functional.relu(self.a(x)))

    rng = np.random.default_rng(11)
    x, y = rng.standard_normal((64, 6)).astype(np.float32), rng.integers(0, 3, 64)
    weights, results = {}, {}
    for case in ("unused", "unfreeze"):
        for cap in (25.0, 1e-6):
            name = f"{case}-{'one' if cap < 1 else 'many'}"
            ember.manual_seed(21)
            model = Net()
            if case == "unfreeze":
                for p in model.a.parameters():
                    p.requires_grad_(False)
            ddp = dist.DistributedDataParallel(model, bucket_cap_mb=cap)
            optimizer = ember.optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.1) if case == "unused" else \
                ember.optim.Adam(model.parameters(), lr=0.05)
            none = []
            for step in range(4):
                if case == "unfreeze" and step == 1:
                    for p in model.a.parameters():
                        p.requires_grad_(True)
                optimizer.zero_grad()
                lo = step * 16
                xs, ys = x[lo:lo + 16][w.rank::w.size], y[lo:lo + 16][w.rank::w.size]
                nn.CrossEntropyLoss()(ddp(ember.tensor(xs)), ember.tensor(ys)).backward()
                none.append(sorted(k for k, p in model.named_parameters() if p.grad is None))
                optimizer.step()
                ddp.check_in_sync()
            results[name] = none
            weights.update({f"{name}.{k}": v._host() for k, v in model.state_dict().items()})
    np.savez(out / f"rank{w.rank}.npz", **weights)
    (out / f"rank{w.rank}.json").write_text(json.dumps(results))


def scenario_resume(args, out: Path, w) -> None:
    """fit with dropout, checkpointed each epoch to OUT/run.safetensors (continued from it with
    --resume); the weights each rank ends with go to OUT/rank{r}.npz."""
    ember.manual_seed(5)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 5))
    x, y = data(args.samples)
    model.compile(optimizer=ember.optim.SGD(model.parameters(), lr=0.05))
    path = out / "run.safetensors"
    model.fit(x, y, batch_size=args.batch, epochs=args.epochs, seed=3, verbose=0, callbacks=[ModelCheckpoint(path)],
              resume_from=path if args.resume else None)
    np.savez(out / f"rank{w.rank}.npz", **{k: v._host() for k, v in model.state_dict().items()})


def scenario_fail(args, out: Path, w) -> None:
    """Rank 1 raises (``raise``) or stops answering (``stall``) in the middle of fit."""

    class Fail(Callback):
        def on_train_batch_end(self, batch, logs=None):
            if w.rank == 1 and batch == 2:
                if args.scenario == "raise":
                    raise ValueError("rank 1 failed on purpose")
                time.sleep(60)

    model = small_cnn(False)
    x, y = data(64)
    model.compile()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[Fail()])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=("fit", "loop", "partial", "resume", "raise", "stall", "raise-before-init"))
    parser.add_argument("out")
    parser.add_argument("--optimizer", default="sgd")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batchnorm", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--timeout", type=float, default=60)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    launched_rank = os.environ.get("PMI_RANK", os.environ.get("OMPI_COMM_WORLD_RANK"))
    if args.scenario == "raise-before-init" and launched_rank == "1":
        raise ValueError("rank 1 failed before init on purpose")
    w = dist.init(timeout=args.timeout)
    out = Path(args.out)
    scenarios = {"fit": scenario_fit, "loop": scenario_loop, "partial": scenario_partial, "resume": scenario_resume,
                 "raise": scenario_fail, "stall": scenario_fail}
    scenarios[args.scenario](args, out, w)


if __name__ == "__main__":
    sys.exit(main())

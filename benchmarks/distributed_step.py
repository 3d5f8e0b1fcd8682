"""Training steps of the seed CNN, data-parallel over the ranks of the job it runs in
(``mpiexec -n N python benchmarks/distributed_step.py``) or alone: prints one JSON line from
rank 0 with the samples/s over all ranks, the share of the step time the ranks spent on
communication that the backward did not hide, and the time of one all-reduce of all the
gradients on its own. bench_distributed.py runs it in both configurations and compares.
"""

import argparse
import json
import time

import numpy as np

import ember
from ember import distributed as dist


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=128, help="global batch (split over the ranks)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--bucket-mb", type=float, default=25.0)
    args = parser.parse_args()
    w = dist.init()
    ember.manual_seed(0)
    model = ember.models.cnn((3, 32, 32), 10)
    ddp = dist.DistributedDataParallel(model, bucket_cap_mb=args.bucket_mb)
    ddp.gradient_weight = 1.0  # as fit does: each rank's loss is weighted by its share of the batch
    optimizer = ember.optim.Adam(ddp.parameters(), lr=1e-3)
    loss_fn = ember.nn.CrossEntropyLoss()
    x, y = ember.datasets.synthetic(args.batch * 4, shape=(3, 32, 32), classes=10, seed=0)
    x = x.astype(np.float32)
    sampler = dist.DistributedSampler(len(x), args.batch, seed=0)
    shards = [(ember.tensor(x[i]), ember.tensor(y[i])) for i in sampler]

    def step(i):
        xb, yb = shards[i % len(shards)]
        optimizer.zero_grad()
        (loss_fn(ddp(xb), yb) * (len(yb) / args.batch)).backward()
        optimizer.step()

    for i in range(args.warmup):
        step(i)
    dist.barrier()
    ddp.comm_seconds = 0.0
    start = time.perf_counter()
    for i in range(args.steps):
        step(i)
    dist.barrier()
    elapsed = time.perf_counter() - start
    exposed = max(dist.all_gather_object(ddp.comm_seconds))

    grads = ember.tensor(np.zeros(sum(p.numel() for p in model.parameters()), np.float32))
    times = []
    for _ in range(10):
        dist.barrier()
        t0 = time.perf_counter()
        dist.all_reduce(grads)
        times.append(time.perf_counter() - t0)
    ddp.check_in_sync()
    if w.rank == 0:
        print(json.dumps({"ranks": w.size, "threads": ember.get_num_threads(), "batch": args.batch,
                          "samples_per_s": args.batch * args.steps / elapsed, "step_ms": 1e3 * elapsed / args.steps,
                          "comm_share": exposed / elapsed, "allreduce_ms": 1e3 * float(np.median(times)),
                          "gradient_bytes": int(grads.numel()) * 4}))


if __name__ == "__main__":
    main()

"""The seed CNN on the GPU: an Adam training step at batch 64 and 1024 and inference at batch
1024, Ember against PyTorch eager on the same GPU, timed with CUDA events in one run.

    python benchmarks/bench_cuda_training.py --json training.json

The seed CNN: Conv2d(3,32,3) -> ReLU -> MaxPool2d(2) -> Flatten -> Linear(7200,128) -> ReLU ->
Linear(128,10) on 3x32x32 inputs, cross-entropy, Adam. PyTorch runs fp32 with TF32 off and
cuDNN's default algorithm choice (benchmark mode on, as a tuned PyTorch script would). The
ratio is PyTorch's time over Ember's (above 1: Ember is faster).

Under pytest (benchmarks are collected as tests) nothing runs unless a GPU is usable.
"""

from __future__ import annotations

import argparse
import json
import statistics

import numpy as np

RESULTS: list[dict] = []


def _gpu():
    try:
        import cupy as cp

        import ember

        ember.backend.get("cuda")
        return cp
    except Exception:
        return None


def time_ms(cp, fn, warmup=5, reps=30):
    for _ in range(warmup):
        fn()
    cp.cuda.get_current_stream().synchronize()
    start, end = cp.cuda.Event(), cp.cuda.Event()
    times = []
    for _ in range(reps):
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, end))
    return statistics.median(times)


def torch_time_ms(torch, fn, warmup=5, reps=30):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(reps):
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def run(batches=(64, 1024)):
    import cupy as cp
    import torch

    import ember
    from ember import nn

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    rng = np.random.default_rng(0)
    for batch in batches:
        x = rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)
        y = rng.integers(0, 10, batch)
        ember.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(7200, 128),
                              nn.ReLU(), nn.Linear(128, 10)).to("cuda")
        opt = ember.optim.Adam(model.parameters(), lr=1e-3)
        xb, yb = ember.tensor(x, device="cuda"), ember.tensor(y, device="cuda")

        def ember_step():
            opt.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()

        tmodel = torch.nn.Sequential(torch.nn.Conv2d(3, 32, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                     torch.nn.Flatten(), torch.nn.Linear(7200, 128), torch.nn.ReLU(),
                                     torch.nn.Linear(128, 10)).cuda()
        topt = torch.optim.Adam(tmodel.parameters(), lr=1e-3)
        tx, ty = torch.from_numpy(x).cuda(), torch.from_numpy(y).cuda()

        def torch_step():
            topt.zero_grad()
            torch.nn.functional.cross_entropy(tmodel(tx), ty).backward()
            topt.step()

        # Correctness first: the same weights give the same loss.
        with torch.no_grad():
            for (name, p), tp in zip(model.state_dict().items(), tmodel.state_dict().values()):
                tp.copy_(torch.from_numpy(p.cpu().numpy()))
        with ember.no_grad():
            ours = float(nn.functional.cross_entropy(model(xb), yb).item())
        with torch.no_grad():
            theirs = float(torch.nn.functional.cross_entropy(tmodel(tx), ty).item())
        ok = abs(ours - theirs) <= 1e-4 * max(1.0, abs(theirs))
        t_e, t_t = time_ms(cp, ember_step), torch_time_ms(torch, torch_step)
        RESULTS.append({"case": "seed CNN Adam step", "batch": batch, "ember_ms": t_e, "torch_ms": t_t,
                        "ratio": t_t / t_e, "loss_matches": ok, "ember_loss": ours, "torch_loss": theirs})
        if batch == max(batches):
            model.eval()
            tmodel.eval()

            def ember_infer():
                with ember.no_grad():
                    model(xb)

            def torch_infer():
                with torch.no_grad():
                    tmodel(tx)

            # Correctness first: the same weights give the same logits.
            with ember.no_grad():
                ours_z = model(xb).cpu().numpy()
            with torch.no_grad():
                theirs_z = tmodel(tx).cpu().numpy()
            same = bool(np.allclose(ours_z, theirs_z, rtol=1e-4, atol=1e-4 * max(1.0, float(abs(theirs_z).max()))))
            t_e, t_t = time_ms(cp, ember_infer), torch_time_ms(torch, torch_infer)
            RESULTS.append({"case": "seed CNN inference", "batch": batch, "ember_ms": t_e, "torch_ms": t_t,
                            "ratio": t_t / t_e, "loss_matches": same})


def print_table():
    print("=" * 78)
    print(f"{'case':<24}{'batch':>7}{'ember ms':>11}{'torch ms':>11}{'ratio':>8}  check")
    for r in RESULTS:
        print(f"{r['case']:<24}{r['batch']:>7}{r['ember_ms']:>11.3f}{r['torch_ms']:>11.3f}{r['ratio']:>8.2f}  "
              f"{'ok' if r['loss_matches'] else 'LOSS DIFFERS'}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    if _gpu() is None:
        print("no usable GPU (CuPy, ember._cuda and a device are needed)")
        return 1
    run()
    print_table()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(RESULTS, f, indent=1)
    return 0 if all(r["loss_matches"] for r in RESULTS) else 2


def bench_cuda_training_smoke():
    import pytest

    if _gpu() is None:
        pytest.skip("no GPU, CuPy or ember._cuda")
    run(batches=(64,))
    assert all(r["loss_matches"] for r in RESULTS)


if __name__ == "__main__":
    raise SystemExit(main())

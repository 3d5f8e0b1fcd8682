"""GPU benchmarks of ember._cuda against cuBLAS (through CuPy and PyTorch), PyTorch's own
kernels and the device-to-device copy bandwidth, measured in the same run.

    python benchmarks/bench_cuda.py --json bench.json [--quick] [--only gemm,xent]

Each case first checks its result against a reference; a variant that fails is reported as
FAILED and not timed. Timing: CUDA events around each call on the default stream, warm-up
first, the median of the repeats, input sets rotated where one set would fit in the 60 MB L2.
fp32 references run with TF32 off (CUPY_TF32 unset, torch allow_tf32 = False). The table's
"ratio" is reference time / ember time (above 1: ember is faster); "limit" is the fraction of
the measured copy bandwidth (memory-bound cases) or of the datasheet peak (GEMM: 67 TFLOP/s
fp32, 989 TFLOP/s bf16 dense).

Under pytest (benchmarks are collected as tests) the file only runs a quick smoke pass, and
only where a GPU, CuPy and ember._cuda are present.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
import traceback

os.environ.pop("CUPY_TF32", None)  # cuBLAS fp32 without TF32

import numpy as np

try:
    import cupy as cp
except Exception:  # pragma: no cover - no CuPy here
    cp = None
try:
    from ember import _cuda as K
except ImportError:  # pragma: no cover
    K = None
try:
    import torch
    import torch.nn.functional as F
except ImportError:  # pragma: no cover
    torch = None
    F = None

PEAK_TFLOPS = {"fp32": 67.0, "bf16": 989.0}
RESULTS: list[dict] = []
STATE = {"copy_gbs": None, "quick": False}


def have_gpu():
    return cp is not None and K is not None and K.device_count() > 0


def time_ms(fn, sets=1, warmup=3, reps=15):
    """Median milliseconds of fn(i) over `reps` calls (i cycles over `sets` input sets)."""
    if STATE["quick"]:
        warmup, reps = 1, 3
    for i in range(warmup):
        fn(i % sets)
    cp.cuda.get_current_stream().synchronize()
    start, end = cp.cuda.Event(), cp.cuda.Event()
    times = []
    for i in range(reps):
        start.record()
        fn(i % sets)
        end.record()
        end.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, end))
    return statistics.median(times)


def record(case, shape, ember_ms, ref_ms=None, ref_name="", work=None, unit="", limit=None, status="ok", note=""):
    rate = None
    if work is not None and ember_ms:
        rate = work / (ember_ms * 1e-3) / (1e12 if unit == "TFLOP/s" else 1e9)
    row = dict(case=case, shape=shape, ember_ms=ember_ms, ref_ms=ref_ms, ref=ref_name,
               ratio=(ref_ms / ember_ms) if (ref_ms and ember_ms) else None, rate=rate, unit=unit,
               limit=(rate / limit) if (rate is not None and limit) else None, status=status, note=note)
    RESULTS.append(row)
    fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
    print(f"  {case:<28} {shape:<24} ember {fmt(ember_ms, '.3f')} ms  {ref_name or 'ref'} {fmt(ref_ms, '.3f')} ms"
          f"  ratio {fmt(row['ratio'], '.2f')}  {fmt(rate, '.1f')} {unit}  limit {fmt(row['limit'], '.2f')}  {status}"
          f" {note}", flush=True)
    return row


def failed(case, shape, why):
    print(f"  {case}: FAILED: {why}", flush=True)
    return record(case, shape, None, status="FAILED", note=why[:300])


def rel_err(got, want):
    got = cp.asarray(got, dtype=cp.float64)
    want = cp.asarray(want, dtype=cp.float64)
    num = float(cp.linalg.norm((got - want).ravel()))
    den = float(cp.linalg.norm(want.ravel())) or 1.0
    return num / den


# ----------------------------------------------------------------------------- cases

def case_copy():
    n = (256 << 20) if STATE["quick"] else (1 << 30)  # floats: 1 GiB or 4 GiB each way
    a = cp.random.standard_normal(n, dtype=cp.float32)
    b = cp.empty_like(a)
    ms = time_ms(lambda i: cp.copyto(b, a))
    gbs = 2 * 4 * n / (ms * 1e-3) / 1e9
    STATE["copy_gbs"] = gbs
    record("copy (bandwidth ceiling)", f"{4 * n >> 20} MiB", ms, work=2 * 4 * n, unit="GB/s", limit=gbs)
    del a, b


def gemm_case(case, dtype, m, n, k, variant, sets=2):
    shape = f"{m}x{n}x{k}"
    rng = cp.random.default_rng(1)
    if dtype == "fp32":
        A = [rng.standard_normal((m, k), dtype=cp.float32) for _ in range(sets)]
        B = [rng.standard_normal((k, n), dtype=cp.float32) for _ in range(sets)]
        out = cp.empty((m, n), cp.float32)
        K.gemm(A[0], B[0], out, variant=variant)
        want = cp.matmul(A[0], B[0])
        err = rel_err(out, want)
        if not err < 1e-5:
            return failed(case, shape, f"relative error {err:.2e} against cuBLAS")
        ms = time_ms(lambda i: K.gemm(A[i], B[i], out, variant=variant), sets)
        ref_ms = time_ms(lambda i: cp.matmul(A[i], B[i], out=out), sets)
        ref_name = "cuBLAS fp32 (CuPy)"
        if torch is not None:
            torch.backends.cuda.matmul.allow_tf32 = False
            TA = [torch.from_dlpack(a) for a in A]
            TB = [torch.from_dlpack(b) for b in B]
            tout = torch.from_dlpack(out)
            t_ms = time_ms(lambda i: torch.matmul(TA[i], TB[i], out=tout), sets)
            ref_name += f", torch {t_ms:.3f} ms"
        record(case, shape, ms, ref_ms, ref_name, 2.0 * m * n * k, "TFLOP/s", PEAK_TFLOPS["fp32"])
        return
    # bf16: A (m, k) row-major; B given as (n, k) row-major, read transposed (K-contiguous).
    if torch is None:
        return failed(case, shape, "PyTorch is needed for the bf16 reference")
    TA = [torch.randn(m, k, device="cuda", dtype=torch.bfloat16) for _ in range(sets)]
    TB = [torch.randn(n, k, device="cuda", dtype=torch.bfloat16) for _ in range(sets)]
    A = [cp.from_dlpack(t.view(torch.int16)).view(cp.uint16) for t in TA]
    B = [cp.from_dlpack(t.view(torch.int16)).view(cp.uint16) for t in TB]
    out = cp.empty((m, n), cp.uint16)
    plan = K.gemm_plan(A[0], B[0], out, False, True, variant)
    if plan != variant:
        return failed(case, shape, f"plan resolved to {plan}")
    K.gemm(A[0], B[0], out, 1.0, 0.0, False, True, None, False, variant)
    want = torch.matmul(TA[0], TB[0].T)
    got = torch.from_dlpack(out.view(cp.int16)).view(torch.bfloat16)
    err = float((got.float() - want.float()).norm() / want.float().norm())
    if not err < 1e-2:
        return failed(case, shape, f"relative error {err:.2e} against cuBLAS bf16")
    ms = time_ms(lambda i: K.gemm(A[i], B[i], out, 1.0, 0.0, False, True, None, False, variant), sets)
    tout = torch.empty(m, n, device="cuda", dtype=torch.bfloat16)
    ref_ms = time_ms(lambda i: torch.matmul(TA[i], TB[i].T, out=tout), sets)
    record(case, shape, ms, ref_ms, "cuBLAS bf16 (torch)", 2.0 * m * n * k, "TFLOP/s", PEAK_TFLOPS["bf16"])


def case_gemm():
    s = 1024 if STATE["quick"] else 4096
    gemm_case("gemm fp32 simt", "fp32", s, s, s, "simt")
    s = 2048 if STATE["quick"] else 8192
    for v in ("mma", "wgmma"):
        try:
            gemm_case(f"gemm bf16 {v}", "bf16", s, s, s, v)
        except Exception as exc:
            failed(f"gemm bf16 {v}", f"{s}^3", f"{type(exc).__name__}: {exc}")


def case_xent():
    b, v = (1024, 50257) if STATE["quick"] else (8192, 50257)
    shape = f"{b}x{v}"
    rng = cp.random.default_rng(2)
    z = rng.standard_normal((b, v), dtype=cp.float32) * 3
    t = rng.integers(0, v, size=b).astype(cp.int64)
    lse, nll, sm = (cp.empty(b, cp.float64) for _ in range(3))
    scale = cp.full(b, 1.0 / b, cp.float32)
    dz = cp.empty_like(z)
    err = cp.full(1, 2**31 - 1, cp.int32)

    def ember_step(i):
        K.cross_entropy_fwd(z, t, None, 0.0, -100, lse, nll, sm, err)
        K.cross_entropy_bwd(z, t, None, 0.0, -100, lse, scale, dz, err)

    ember_step(0)
    loss = float(nll.mean())
    ref_name, ref_ms, note = "", None, ""
    if torch is not None:
        tz = torch.from_dlpack(z).detach().requires_grad_(True)
        tt = torch.from_dlpack(t)
        tl = F.cross_entropy(tz, tt)
        tl.backward()
        lerr = abs(loss - float(tl)) / max(abs(float(tl)), 1e-30)
        gerr = rel_err(dz, cp.from_dlpack(tz.grad))
        if not (lerr < 1e-5 and gerr < 1e-5):
            return failed("cross-entropy fwd+bwd", shape, f"loss rel err {lerr:.2e}, grad rel err {gerr:.2e}")

        def torch_step(i):
            tz.grad = None
            F.cross_entropy(tz, tt).backward()

        ref_ms = time_ms(torch_step)
        ref_name = "torch F.cross_entropy"
    ms = time_ms(ember_step)
    fwd_ms = time_ms(lambda i: K.cross_entropy_fwd(z, t, None, 0.0, -100, lse, nll, sm, err))
    note = f"(forward alone {fwd_ms:.3f} ms = {4 * b * v / fwd_ms / 1e6:.0f} GB/s)"
    record("cross-entropy fwd+bwd", shape, ms, ref_ms, ref_name, 3 * 4 * b * v, "GB/s", STATE["copy_gbs"],
           note=note)


def case_relu():
    n = (64 << 20) if STATE["quick"] else (512 << 20)
    x = cp.random.standard_normal(n, dtype=cp.float32)
    y = cp.empty_like(x)
    K.relu_fwd(x, y)
    if not bool(cp.all(y == cp.maximum(x, 0))):
        return failed("relu fwd", f"{n}", "wrong values")
    ms = time_ms(lambda i: K.relu_fwd(x, y))
    ref_ms, ref_name = None, ""
    if torch is not None:
        tx, ty = torch.from_dlpack(x), torch.from_dlpack(y)
        ref_ms, ref_name = time_ms(lambda i: torch.clamp_min(tx, 0, out=ty)), "torch clamp_min(0)"
    record("relu fwd", f"{n >> 20}Mi floats", ms, ref_ms, ref_name, 2 * 4 * n, "GB/s", STATE["copy_gbs"])
    g = cp.random.standard_normal(n, dtype=cp.float32)
    ms = time_ms(lambda i: K.relu_bwd(g, y, x))
    record("relu bwd", f"{n >> 20}Mi floats", ms, None, "", 3 * 4 * n, "GB/s", STATE["copy_gbs"])


def case_pool():
    shape = (1024, 32, 30, 30)
    x = cp.random.standard_normal(shape, dtype=cp.float32)
    y = cp.empty((1024, 32, 15, 15), cp.float32)
    idx = cp.empty(y.shape, cp.int64)
    dx = cp.empty_like(x)
    dy = cp.random.standard_normal(y.shape, dtype=cp.float32)
    K.max_pool2d_fwd(x, y, idx, 2, 2, 2, 2, 0, 0, 1, 1)
    K.max_pool2d_bwd(dy, idx, dx)
    ref_ms = ref_f = None
    if torch is not None:
        tx = torch.from_dlpack(x).detach().requires_grad_(True)
        ty, ti = F.max_pool2d(tx, 2, 2, return_indices=True)
        ty.backward(torch.from_dlpack(dy), retain_graph=True)  # the timed backward reuses this graph
        if not (torch.equal(ty.detach(), torch.from_dlpack(y)) and torch.equal(ti, torch.from_dlpack(idx))
                and torch.equal(tx.grad, torch.from_dlpack(dx))):
            return failed("max-pool 2x2 fwd+bwd", str(shape), "differs from torch")
        tdy = torch.from_dlpack(dy)

        def torch_step(i):
            tx.grad = None
            out, _ = F.max_pool2d(tx, 2, 2, return_indices=True)
            out.backward(tdy)

        ref_ms = time_ms(torch_step)
        ref_f = time_ms(lambda i: F.max_pool2d(tx.detach(), 2, 2, return_indices=True))
    ms_f = time_ms(lambda i: K.max_pool2d_fwd(x, y, idx, 2, 2, 2, 2, 0, 0, 1, 1))
    ms_b = time_ms(lambda i: K.max_pool2d_bwd(dy, idx, dx))
    nin, nout = x.size, y.size
    record("max-pool 2x2 fwd", str(shape), ms_f, ref_f, "torch", 4 * nin + 12 * nout, "GB/s", STATE["copy_gbs"])
    record("max-pool 2x2 bwd", str(shape), ms_b, None, "", 4 * nin + 12 * nout, "GB/s", STATE["copy_gbs"])
    record("max-pool 2x2 fwd+bwd", str(shape), ms_f + ms_b, ref_ms, "torch", 8 * nin + 24 * nout, "GB/s",
           STATE["copy_gbs"])


def case_conv():
    n = 256 if STATE["quick"] else 1024
    shape = f"{n}x3x32x32 -> 32, 3x3"
    x = cp.random.standard_normal((n, 3, 32, 32), dtype=cp.float32)
    w = cp.random.standard_normal((32, 3, 3, 3), dtype=cp.float32) * 0.2
    b = cp.random.standard_normal(32, dtype=cp.float32)
    y = cp.empty((n, 32, 30, 30), cp.float32)
    dy = cp.random.standard_normal(y.shape, dtype=cp.float32)
    dx, dw, db = cp.empty_like(x), cp.empty_like(w), cp.empty_like(b)

    def ember_fwd(i):
        K.conv2d_fwd(x, w, b, y, 1, 1, 0, 0, 1, 1, 1, False)

    def ember_bwd(i):
        K.conv2d_bwd_data(dy, w, dx, 1, 1, 0, 0, 1, 1, 1)
        K.conv2d_bwd_weight(x, dy, dw, db, 1, 1, 0, 0, 1, 1, 1)

    ember_fwd(0)
    ember_bwd(0)
    ref_f = ref_b = None
    if torch is not None:
        torch.backends.cudnn.allow_tf32 = False
        tx = torch.from_dlpack(x).detach().requires_grad_(True)
        tw = torch.from_dlpack(w).detach().requires_grad_(True)
        tb = torch.from_dlpack(b).detach().requires_grad_(True)
        ty = F.conv2d(tx, tw, tb)
        ty.backward(torch.from_dlpack(dy))
        errs = [rel_err(y, cp.from_dlpack(ty.detach())), rel_err(dx, cp.from_dlpack(tx.grad)),
                rel_err(dw, cp.from_dlpack(tw.grad)), rel_err(db, cp.from_dlpack(tb.grad))]
        if not max(errs) < 1e-4:
            return failed("conv2d 3->32 3x3", shape, "relative errors (y, dx, dw, db) " +
                          ", ".join(f"{e:.1e}" for e in errs))
        tdy = torch.from_dlpack(dy)
        ref_f = time_ms(lambda i: F.conv2d(tx.detach(), tw.detach(), tb.detach()))

        def torch_bwd(i):
            torch.autograd.grad(ty, (tx, tw, tb), tdy, retain_graph=True)

        ref_b = time_ms(torch_bwd)
    ms_f, ms_b = time_ms(ember_fwd), time_ms(ember_bwd)
    flops = 2.0 * n * 32 * 30 * 30 * 27
    record("conv2d fwd (seed layer)", shape, ms_f, ref_f, "torch cudnn fp32", flops, "TFLOP/s", PEAK_TFLOPS["fp32"])
    record("conv2d bwd (seed layer)", shape, ms_b, ref_b, "torch cudnn fp32", 2 * flops, "TFLOP/s",
           PEAK_TFLOPS["fp32"])


def case_adam():
    shapes = [(32, 3, 3, 3), (32,), (128, 7200), (128,), (10, 128), (10,)]  # the seed CNN on CIFAR-10
    rng = cp.random.default_rng(3)
    P = [rng.standard_normal(s, dtype=cp.float32) for s in shapes]
    G = [rng.standard_normal(s, dtype=cp.float32) for s in shapes]
    M = [cp.zeros(s, cp.float32) for s in shapes]
    V = [cp.zeros(s, cp.float32) for s in shapes]
    nparams = sum(int(np.prod(s)) for s in shapes)
    steps = [1] * len(shapes)
    ms = time_ms(lambda i: K.adam_step(P, G, M, V, None, steps, 1e-3, 0.9, 0.999, 1e-8, 0.0, False, False))
    ref_ms, ref_name = None, ""
    if torch is not None:
        tp = [torch.nn.Parameter(torch.from_dlpack(p).clone()) for p in P]
        for p, g in zip(tp, G):
            p.grad = torch.from_dlpack(g).clone()
        try:
            opt = torch.optim.Adam(tp, lr=1e-3, fused=True)
            ref_name = "torch Adam(fused=True)"
        except Exception:
            opt = torch.optim.Adam(tp, lr=1e-3, foreach=True)
            ref_name = "torch Adam(foreach=True)"
        ref_ms = time_ms(lambda i: opt.step())
    record("Adam step (seed CNN)", f"{len(shapes)} tensors, {nparams} floats", ms, ref_ms, ref_name,
           7 * 4 * nparams, "GB/s", STATE["copy_gbs"])


# The GEMMs last: a tensor-core kernel that faulted would leave the CUDA context unusable.
CASES = {"copy": case_copy, "xent": case_xent, "relu": case_relu, "pool": case_pool, "conv": case_conv,
         "adam": case_adam, "gemm": case_gemm}


def print_table():
    print("\n" + "=" * 132)
    print(f"{'case':<28} {'shape':<26} {'ember ms':>9} {'ref ms':>9} {'ratio':>6} {'rate':>14} {'limit':>6}  "
          f"reference / status")
    print("-" * 132)
    for r in RESULTS:
        f = lambda v, s: "-" if v is None else format(v, s)  # noqa: E731
        rate = "-" if r["rate"] is None else f"{r['rate']:.1f} {r['unit']}"
        status = r["ref"] if r["status"] == "ok" else f"{r['status']}: {r['note']}"
        print(f"{r['case']:<28} {r['shape']:<26} {f(r['ember_ms'], '9.3f'):>9} {f(r['ref_ms'], '9.3f'):>9} "
              f"{f(r['ratio'], '6.2f'):>6} {rate:>14} {f(r['limit'], '6.2f'):>6}  {status}")
    print("=" * 132)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--quick", action="store_true", help="small sizes, few repeats (a smoke test)")
    ap.add_argument("--only", default="", help="comma-separated cases: " + ",".join(CASES))
    args = ap.parse_args(argv)
    if not have_gpu():
        print("bench_cuda: no GPU, CuPy or ember._cuda; nothing to measure")
        return 0
    STATE["quick"] = args.quick
    dev = K.device_info(0)
    print(f"device: {dev['name']} cc {dev['compute_capability']} ({dev['multiprocessors']} SMs); CuPy "
          f"{cp.__version__}; torch {torch.__version__ if torch is not None else 'absent'}", flush=True)
    chosen = [c for c in args.only.split(",") if c] or list(CASES)
    if "copy" not in chosen:
        chosen.insert(0, "copy")
    for name in chosen:
        t0 = time.time()
        try:
            CASES[name]()
        except Exception as exc:
            traceback.print_exc()
            failed(name, "-", f"{type(exc).__name__}: {exc}")
        finally:
            cp.get_default_memory_pool().free_all_blocks()
            if torch is not None:
                torch.cuda.empty_cache()
        print(f"  [{name}: {time.time() - t0:.1f} s]", flush=True)
    print_table()
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"device": dev, "copy_gbs": STATE["copy_gbs"], "results": RESULTS}, fh, indent=1,
                      default=lambda o: None if isinstance(o, float) and math.isnan(o) else str(o))
    return 1 if any(r["status"] != "ok" for r in RESULTS) else 0


def bench_cuda_quick():
    """pytest: a quick smoke pass where a GPU is present (skipped otherwise)."""
    import pytest

    if not have_gpu():
        pytest.skip("no GPU, CuPy or ember._cuda")
    RESULTS.clear()
    assert main(["--quick"]) == 0, "some GPU benchmark case FAILED its correctness check"


if __name__ == "__main__":
    sys.exit(main())

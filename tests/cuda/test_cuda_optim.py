"""ember._cuda.adam_step / sgd_step (multi-tensor, one launch per list) against the CPU references
(ember._C.adam_step_ref / sgd_step_ref) applied tensor by tensor on host copies: Adam, AdamW,
AMSGrad, maximize, weight decay, per-tensor step counts; SGD with and without momentum,
dampening, Nesterov, the first step; tensors of awkward sizes, unaligned views, more tensors than
one launch carries."""

import numpy as np
import pytest

from cuda_helpers import CUDA_MARKS, K, assert_close, cp, dev, host, ref_fn, sync

pytestmark = CUDA_MARKS

SIZES = [1, 3, 4, 5, 1000, 16384, 16387, 70001]


def tensors(rng, sizes, unaligned=False):
    out = []
    for n in sizes:
        shape = (n,) if n % 5 else (5, n // 5)
        out.append(rng.standard_normal(shape).astype(np.float32))
    return out


def to_dev(arrs, unaligned):
    if not unaligned:
        return [dev(a) for a in arrs]
    res = []
    for a in arrs:  # a view starting 4 bytes into its buffer: not 16-byte aligned
        buf = cp.empty(a.size + 1, dtype=cp.float32)
        v = buf[1:].reshape(a.shape)
        v[...] = cp.asarray(a)
        res.append(v)
    return res


@pytest.mark.parametrize("decoupled", [False, True])
@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("maximize", [False, True])
@pytest.mark.parametrize("unaligned", [False, True])
def test_adam_matches_reference(rng, decoupled, amsgrad, maximize, unaligned):
    sizes = SIZES
    p = tensors(rng, sizes)
    g = tensors(rng, sizes)
    m = [0.1 * x for x in tensors(rng, sizes)]
    v = [np.abs(x) * 0.01 for x in tensors(rng, sizes)]
    vmax = [x * 1.5 for x in v] if amsgrad else None
    steps = [int(s) for s in rng.integers(1, 20, size=len(sizes))]
    hp = dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.05)
    P, G, M, V = (to_dev(x, unaligned) for x in (p, g, m, v))
    X = to_dev(vmax, unaligned) if amsgrad else None
    K.adam_step(P, G, M, V, X, steps, hp["lr"], hp["beta1"], hp["beta2"], hp["eps"], hp["weight_decay"], decoupled,
                maximize)
    sync()
    ref = ref_fn("adam_step_ref")
    for i in range(len(sizes)):
        pr, mr, vr = p[i].copy(), m[i].copy(), v[i].copy()
        xr = vmax[i].copy() if amsgrad else None
        ref(pr, g[i], mr, vr, xr, hp["lr"], hp["beta1"], hp["beta2"], hp["eps"], hp["weight_decay"], steps[i],
            decoupled, maximize)
        what = f"adam tensor {i} (n={sizes[i]}, step {steps[i]}) decoupled={decoupled} amsgrad={amsgrad}"
        # float32 arithmetic on O(1) operands: a few ulps of the operands, not of a small result
        assert_close(host(P[i]), pr, 2e-6, 2e-6, what + " param")
        assert_close(host(M[i]), mr, 2e-6, 1e-6, what + " exp_avg")
        assert_close(host(V[i]), vr, 2e-6, 1e-8, what + " exp_avg_sq")
        if amsgrad:
            assert_close(host(X[i]), xr, 2e-6, 1e-8, what + " max_exp_avg_sq")
        assert_close(host(G[i]), g[i], 0, 0, what + " grad must be untouched")


@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("first", [False, True])
@pytest.mark.parametrize("unaligned", [False, True])
def test_sgd_matches_reference(rng, momentum, nesterov, first, unaligned):
    sizes = SIZES
    p, g = tensors(rng, sizes), tensors(rng, sizes)
    bufs = tensors(rng, sizes) if momentum else None
    P, G = to_dev(p, unaligned), to_dev(g, unaligned)
    B = to_dev(bufs, unaligned) if momentum else None
    K.sgd_step(P, G, B, 0.05, momentum, 0.1, 0.01, nesterov, False, first)
    sync()
    ref = ref_fn("sgd_step_ref")
    for i in range(len(sizes)):
        pr = p[i].copy()
        br = bufs[i].copy() if momentum else None
        ref(pr, g[i], br, 0.05, momentum, 0.1, 0.01, nesterov, False, first)
        assert_close(host(P[i]), pr, 2e-6, 2e-6, f"sgd tensor {i} param")
        if momentum:
            assert_close(host(B[i]), br, 2e-6, 2e-6, f"sgd tensor {i} momentum buffer")


def test_many_tensors_take_several_launches(rng):
    sizes = [int(s) for s in rng.integers(1, 300, size=130)]  # more than one launch's table
    p, g = tensors(rng, sizes), tensors(rng, sizes)
    m = [np.zeros_like(x) for x in p]
    v = [np.zeros_like(x) for x in p]
    P, G, M, V = (to_dev(x, False) for x in (p, g, m, v))
    K.adam_step(P, G, M, V, None, [1] * len(sizes), 1e-3, 0.9, 0.999, 1e-8, 0.0, False, False)
    K.sgd_step(G, P, None, 0.1, 0.0, 0.0, 0.0, False, True, True)  # grads updated with the params as "grads"
    sync()
    ref = ref_fn("adam_step_ref")
    for i in range(len(sizes)):
        pr, mr, vr = p[i].copy(), m[i].copy(), v[i].copy()
        ref(pr, g[i], mr, vr, None, 1e-3, 0.9, 0.999, 1e-8, 0.0, 1, False, False)
        assert_close(host(P[i]), pr, 1e-6, 1e-6, f"adam tensor {i} of {len(sizes)}")
        assert_close(host(G[i]), g[i] + 0.1 * pr, 1e-6, 1e-6, f"sgd (maximize) tensor {i} of {len(sizes)}")


def test_empty_lists_and_tensors(rng):
    K.adam_step([], [], [], [], None, [], 1e-3, 0.9, 0.999, 1e-8, 0.0, False, False)
    K.sgd_step([], [], None, 0.1, 0.0, 0.0, 0.0, False, False, True)
    # An empty tensor between two others: they are updated exactly as alone.
    p, g = tensors(rng, [5, 7]), tensors(rng, [5, 7])
    empty = lambda: cp.empty(0, cp.float32)  # noqa: E731
    P, G = to_dev(p, False), to_dev(g, False)
    M, V = [cp.zeros_like(x) for x in P], [cp.zeros_like(x) for x in P]
    K.adam_step([P[0], empty(), P[1]], [G[0], empty(), G[1]], [M[0], empty(), M[1]], [V[0], empty(), V[1]], None,
                [1, 1, 1], 1e-3, 0.9, 0.999, 1e-8, 0.0, False, False)
    sync()
    ref = ref_fn("adam_step_ref")
    for i in range(2):
        pr, mr, vr = p[i].copy(), np.zeros_like(p[i]), np.zeros_like(p[i])
        ref(pr, g[i], mr, vr, None, 1e-3, 0.9, 0.999, 1e-8, 0.0, 1, False, False)
        assert_close(host(P[i]), pr, 1e-6, 1e-6, f"adam tensor {i} beside an empty one")


def test_optim_checks(rng):
    p = dev(rng.standard_normal(10).astype(np.float32))
    g = dev(rng.standard_normal(10).astype(np.float32))
    m, v = cp.zeros(10, cp.float32), cp.zeros(10, cp.float32)
    with pytest.raises(ValueError, match="steps has 2 counts but params has 1 arrays"):
        K.adam_step([p], [g], [m], [v], None, [1, 2], 1e-3, 0.9, 0.999, 1e-8, 0.0, False, False)
    with pytest.raises(ValueError, match="steps\\[0\\]"):
        K.adam_step([p], [g], [m], [v], None, [0], 1e-3, 0.9, 0.999, 1e-8, 0.0, False, False)
    with pytest.raises(ValueError, match="elements"):
        K.adam_step([p], [g[:5]], [m], [v], None, [1], 1e-3, 0.9, 0.999, 1e-8, 0.0, False, False)
    with pytest.raises(ValueError, match="share memory"):
        K.adam_step([p], [g], [m], [m], None, [1], 1e-3, 0.9, 0.999, 1e-8, 0.0, False, False)
    with pytest.raises(TypeError, match="host array"):
        K.sgd_step([host(p)], [g], None, 0.1, 0.0, 0.0, 0.0, False, False, True)
    with pytest.raises(TypeError, match="list"):
        K.sgd_step(p, [g], None, 0.1, 0.0, 0.0, 0.0, False, False, True)

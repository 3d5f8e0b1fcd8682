"""Shared by the GPU kernel tests: the skip rule, host/device copies, poisoning, comparisons.

Every test here is marked ``cuda`` and skipped, with the reason, when CuPy is missing,
``ember._cuda`` was not built, or no GPU is visible. Failures print enough to fix a kernel
without re-running it: the largest error, the first bad index, shapes and dtypes.
"""

import numpy as np
import pytest


def _skip_reason():
    try:
        import cupy  # noqa: F401
    except Exception as exc:  # ImportError, or a CuPy that cannot load its CUDA libraries
        return f"CuPy is not available ({type(exc).__name__}: {exc}); install cupy-cuda13x"
    try:
        from ember import _cuda
    except ImportError:
        return "ember._cuda was not built (no CUDA compiler when Ember was installed)"
    if _cuda.device_count() == 0:
        return "no CUDA GPU is visible"
    try:
        if cupy.cuda.runtime.getDeviceCount() == 0:
            return "CuPy sees no CUDA GPU"
    except Exception as exc:
        return f"CuPy cannot reach the GPU ({exc})"
    return None


SKIP_REASON = _skip_reason()
requires_cuda = pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")
# Apply to a whole module with: pytestmark = CUDA_MARKS
CUDA_MARKS = [pytest.mark.cuda, requires_cuda]

if SKIP_REASON is None:
    import cupy as cp
    from ember import _cuda as K
else:
    cp = None
    K = None


def dev(x):
    """A device copy of a host array (C-contiguous)."""
    return cp.asarray(np.ascontiguousarray(x))


def host(x):
    return cp.asnumpy(x)


def poisoned(shape, dtype=np.float32):
    """A device array full of NaN (or the most negative int for integer types)."""
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return cp.full(shape, np.nan, dtype=dt)
    return cp.full(shape, np.iinfo(dt).min, dtype=dt)


def describe(a):
    return f"{type(a).__name__} {getattr(a, 'dtype', '?')} {getattr(a, 'shape', '?')}"


def assert_close(got, want, rtol, atol, what=""):
    """|got - want| <= atol + rtol * |want| elementwise (atol may be an array); NaN must match NaN.
    On failure: count, the largest error, the first bad index, shapes."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != expected {want.shape}"
    gnan, wnan = np.isnan(got), np.isnan(want)
    if (gnan != wnan).any():
        idx = np.argwhere(gnan != wnan)
        first = tuple(idx[0])
        pytest.fail(f"{what}: NaN mismatch at {len(idx)} of {got.size} elements (shape {got.shape}); first at "
                    f"{first}: got {got[first]!r}, want {want[first]!r}"
                    + ("  [NaN where a value was expected: unwritten output?]" if gnan[first] else ""))
    with np.errstate(invalid="ignore"):
        err = np.where(gnan, 0.0, np.abs(got - want))
        same_inf = np.isinf(got) & np.isinf(want) & (np.sign(got) == np.sign(want))
        err = np.where(same_inf, 0.0, err)
        tol = atol + rtol * np.where(np.isfinite(want), np.abs(want), 0.0)
        bad = ~(err <= tol)
    if bad.any():
        idx = np.argwhere(bad)
        first = tuple(idx[0])
        worst = np.unravel_index(np.argmax(np.where(bad, err - tol, -np.inf)), err.shape)
        pytest.fail(f"{what}: {len(idx)} of {got.size} elements out of tolerance (shape {got.shape}); max error "
                    f"{err.max():.3e}; first bad {first}: got {got[first]!r} want {want[first]!r} tol "
                    f"{np.broadcast_to(tol, err.shape)[first]:.3e}; worst {tuple(int(i) for i in worst)}: got "
                    f"{got[worst]!r} want {want[worst]!r}")


def assert_equal(got, want, what=""):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != expected {want.shape}"
    same = (got == want) | (np.isnan(got) & np.isnan(want)) if got.dtype.kind == "f" else got == want
    if not np.all(same):
        idx = np.argwhere(~same)
        first = tuple(idx[0])
        pytest.fail(f"{what}: {len(idx)} of {got.size} elements differ (shape {got.shape}); first at {first}: got "
                    f"{got[first]!r}, want {want[first]!r}")


class ReadOnly:
    """Exposes a CuPy array's __cuda_array_interface__ marked read-only."""

    def __init__(self, arr):
        self._arr = arr

    @property
    def __cuda_array_interface__(self):
        d = dict(self._arr.__cuda_array_interface__)
        d["data"] = (d["data"][0], True)
        return d


def sync():
    cp.cuda.get_current_stream().synchronize()


def ref_fn(name, old=None):
    """ember._C's reference by its new name, or its older one."""
    from ember import _C

    f = getattr(_C, name, None)
    if f is None and old is not None:
        f = getattr(_C, old, None)
    if f is None:
        pytest.skip(f"ember._C has no {name}")
    return f


def bf16_bits(x):
    """float32 -> bf16 bit patterns (uint16), rounded to nearest even; NaN stays NaN."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(x)
    return np.where(nan, np.uint16(0x7FC0), rounded).astype(np.uint16)


def bf16_to_f32(bits):
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)

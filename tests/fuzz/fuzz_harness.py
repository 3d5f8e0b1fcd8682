"""The fuzzer's machinery: cases, the arrays they describe, the worker process that runs them.

A *case* is plain data (picklable, printable): which function to call, the ISA and thread
count, and its arguments. An array argument is an ``Arr``: a view (dtype, shape, byte strides,
byte offset) into the case's one byte buffer, which is filled with a sentinel before the
arrays' values are written. Views may be strided, reversed, broadcast (stride 0), misaligned
or overlapping one another, which is how aliasing between inputs and outputs is expressed.

Cases run in a worker process (``Worker``), forked from a server that has already imported
NumPy and Ember, so a crash (SIGSEGV, SIGFPE, an abort from a sanitizer) or a hang becomes a
test failure that names the case instead of the end of the test session. The worker checks
the property of ``fuzz_ops.check_case`` and answers with a short outcome or a failure text.
"""

from __future__ import annotations

import ctypes
import dataclasses
import mmap
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

# The byte pattern outside every array: as float32 it is the signalling NaN 0x7FA5A5A5, so a
# kernel that reads a gap as data produces NaN, and one that writes a gap is caught bytewise.
SENTINEL = np.frombuffer(bytes([0xA5, 0xA5, 0xA5, 0x7F]), np.uint8)

# Per-case wall-clock limit in the worker. Every case is small (microseconds to milliseconds of
# work); a case that runs this long does work that does not follow the sizes of its arrays.
DEFAULT_TIMEOUT = float(os.environ.get("EMBER_FUZZ_TIMEOUT", "20"))
# Address-space limit of the worker (not under AddressSanitizer, which reserves terabytes of
# shadow): a kernel asking for absurd memory must fail with MemoryError, not take the machine.
MEMORY_LIMIT = int(os.environ.get("EMBER_FUZZ_MEMORY_LIMIT", str(6 << 30)))


@dataclass(frozen=True)
class Arr:
    """A view into the case's buffer. ``fill`` says what its elements hold (see ``fill_values``)."""

    dtype: str
    shape: tuple
    strides: tuple  # bytes
    offset: int  # byte offset of element [0, ..., 0]
    fill: tuple = ("none",)
    seed: int = 0
    readonly: bool = False

    def __repr__(self) -> str:
        ro = ", readonly" if self.readonly else ""
        return f"Arr({self.dtype}{list(self.shape)} strides={list(self.strides)} @{self.offset} {self.fill}{ro})"

    @property
    def itemsize(self) -> int:
        return np.dtype(self.dtype).itemsize

    def span(self) -> tuple[int, int]:
        """Byte range [lo, hi) the view touches (empty for size 0)."""
        if 0 in self.shape:
            return self.offset, self.offset
        lo = hi = self.offset
        for n, s in zip(self.shape, self.strides):
            if s < 0:
                lo += (n - 1) * s
            else:
                hi += (n - 1) * s
        return lo, hi + self.itemsize


@dataclass(frozen=True)
class Obj:
    """A non-buffer argument built in the worker: ``kind`` is 'object_array', 'list', 'matrix' ..."""

    kind: str
    shape: tuple = ()
    dtype: str = "float32"

    def __repr__(self) -> str:
        return f"Obj({self.kind}, {list(self.shape)}, {self.dtype})"


@dataclass(frozen=True)
class Case:
    op: str
    args: tuple  # ((name, value), ...) in call order; values are Arr, Obj or plain Python data
    nbytes: int
    isa: str = "generic"
    threads: int = 1

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.args)  # lists of Arr print as lists
        return f"Case({self.op} isa={self.isa} threads={self.threads} buffer={self.nbytes}B: {inner})"

    def arg(self, name: str) -> Any:
        for k, v in self.args:
            if k == name:
                return v
        raise KeyError(name)

    def replace(self, **changes) -> Case:
        args = tuple((k, changes.pop(k, v)) for k, v in self.args)
        return dataclasses.replace(self, args=args, **changes)


# ------------------------------------------------------------------ building arrays


def fill_values(fill: tuple, seed: int, shape: tuple, dtype: np.dtype) -> np.ndarray | None:
    """The values an array holds, by kind:

    ints      small integers (-4..4): float sums and products stay exact
    gauss     standard normal
    special   small integers with ~15% NaN, +inf, -inf
    huge      +-1e30..3e38 (float32 range; beyond it for narrower types)
    pos       uniform in (0.01, 4)
    prob      non-negative rows summing to 1 along the last axis
    zeros     0
    labels    ('labels', classes, extra...): classes in [0, classes), one or a few elements one of
              the extra values
    list      ('list', values...): the given values, repeated to the size
    packed    ('packed', part, n, k, bits, group, seed): a quantized weight's packed arrays
    none      left as the sentinel
    """
    kind = fill[0]
    if kind in ("none", "lse_of"):
        return None
    rng = np.random.default_rng(seed)
    size = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if kind == "packed":
        flat = _packed(*fill[1:])
        return np.resize(flat, size).reshape(shape).astype(dtype)
    if kind == "list":
        return np.resize(np.array(fill[1:], dtype=object), size).reshape(shape).astype(dtype)
    if kind == "labels":
        classes, extra = fill[1], fill[2:]
        vals = rng.integers(0, max(classes, 1), size).astype(object)
        if extra and size:  # one element (sometimes a few) takes one of the extra values
            at = rng.integers(0, size, 1 if rng.random() < 0.7 else max(1, size // 3))
            vals[at] = extra[int(rng.integers(0, len(extra)))]
        return np.array(vals.tolist() or [], dtype=object).reshape(shape).astype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, shape).astype(bool)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if kind == "huge":
            return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
        return rng.integers(max(info.min, -4), 5, shape).astype(dtype)
    if dtype.kind == "c":
        return (rng.integers(-4, 5, shape) + 1j * rng.integers(-4, 5, shape)).astype(dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        if kind == "ints":
            v = rng.integers(-4, 5, shape).astype(np.float64)
        elif kind == "gauss":
            v = rng.standard_normal(shape)
        elif kind == "special":
            v = rng.integers(-4, 5, shape).astype(np.float64)
            bad = rng.random(shape) < 0.15
            v[bad] = rng.choice([np.nan, np.inf, -np.inf], int(bad.sum()))
        elif kind == "huge":
            v = rng.choice([-1.0, 1.0], shape) * 10.0 ** rng.uniform(30, 38.5, shape)
        elif kind == "pos":
            v = rng.uniform(0.01, 4.0, shape)
        elif kind == "prob":
            v = rng.uniform(0.0, 1.0, shape)
            if v.ndim and v.shape[-1]:
                v /= v.sum(axis=-1, keepdims=True)
        elif kind == "zeros":
            v = np.zeros(shape)
        else:
            raise ValueError(f"unknown fill {fill!r}")
        return v.astype(dtype)


_PACKED_CACHE: dict = {}


def _packed(part: str, n: int, k: int, bits: int, group: int, seed: int) -> np.ndarray:
    key = (n, k, bits, group, seed)
    if key not in _PACKED_CACHE:
        from ember import quant

        w = np.random.default_rng(seed).standard_normal((n, k)).astype(np.float32)
        _PACKED_CACHE.clear()
        _PACKED_CACHE[key] = quant.quantize_weight(w, bits, group if bits == 4 else None)  # int8: per channel
    qw = _PACKED_CACHE[key]
    return {"data": qw.data, "scales": qw.scales, "colsum": qw.colsum}[part].reshape(-1)


def view_of(buf: np.ndarray, a: Arr) -> np.ndarray:
    return np.ndarray(a.shape, np.dtype(a.dtype), buffer=buf, offset=a.offset, strides=a.strides)


def byte_mask(nbytes: int, arrays, region_size: int | None = None) -> np.ndarray:
    """True at every byte that one of the views' elements covers (of the buffer, or of a region
    of `region_size` bytes that ends with it)."""
    region_size = nbytes if region_size is None else region_size
    full = np.zeros(region_size, np.uint8)
    mask = full[region_size - nbytes:]
    for a in arrays:
        if 0 in a.shape:
            continue
        m = np.ndarray(a.shape + (a.itemsize,), np.uint8, buffer=mask, offset=a.offset, strides=a.strides + (1,))
        m[...] = 1
    return full.astype(bool)


def build_obj(o: Obj, seed: int = 0):
    rng = np.random.default_rng(seed)
    vals = rng.integers(-4, 5, o.shape).astype(np.float64)
    if o.kind == "object_array":
        return np.array(vals.tolist() if o.shape else 1.0, dtype=object).reshape(o.shape)
    if o.kind == "list":
        return vals.tolist()
    if o.kind == "scalar":
        return 1.5
    if o.kind == "matrix":  # an ndarray subclass
        return np.asarray(vals, o.dtype).view(_Sub)
    raise ValueError(o.kind)


class _Sub(np.ndarray):
    """An ndarray subclass, as array-likes from other libraries are."""


_PAGE = mmap.PAGESIZE
_libc = ctypes.CDLL(None, use_errno=True)


def guarded_region(nbytes: int) -> np.ndarray:
    """Whole pages of fresh memory, filled with the sentinel, between two inaccessible guard
    pages; the case's buffer is its last `nbytes` bytes, so running off its end faults at once,
    and running off its start goes through the sentinel bytes before the buffer (checked like
    the gaps) into the other guard page."""
    pages = max(1, -(-nbytes // _PAGE))
    mm = mmap.mmap(-1, (pages + 2) * _PAGE)
    base = ctypes.addressof(ctypes.c_char.from_buffer(mm))
    for at in (base, base + (pages + 1) * _PAGE):
        if _libc.mprotect(ctypes.c_void_p(at), ctypes.c_size_t(_PAGE), 0) != 0:
            raise OSError(ctypes.get_errno(), "mprotect failed")
    region = np.frombuffer(mm, np.uint8)[_PAGE:(pages + 1) * _PAGE]
    region[:] = np.resize(SENTINEL, region.size)
    return region


def build(case: Case):
    """The case's memory region (the buffer and the sentinel bytes before it), and its argument
    values, in order."""
    region = guarded_region(case.nbytes)
    buf = region[region.size - case.nbytes:]
    def value(v, i):
        if isinstance(v, Arr):
            arr = view_of(buf, v)
            vals = fill_values(v.fill, v.seed, v.shape, arr.dtype)
            if vals is not None and arr.size:
                arr[...] = vals
            return arr
        if isinstance(v, Obj):
            return build_obj(v, i)
        if isinstance(v, list) and any(isinstance(x, (Arr, Obj)) for x in v):  # a list of arrays
            return [value(x, i) for x in v]
        return v

    values = [value(v, i) for i, (_, v) in enumerate(case.args)]
    # Values derived from other arguments: ('lse_of', name) is the row-wise log-sum-exp of name.
    named = {k: x for (k, _), x in zip(case.args, values)}
    for (_, v), arr in zip(case.args, values):
        if isinstance(v, Arr) and v.fill[0] == "lse_of" and arr.size:
            z = np.asarray(named[v.fill[1]], np.float64)
            with np.errstate(all="ignore"):
                m = np.max(z, axis=-1, keepdims=True) if z.ndim == 2 and z.shape[1] else np.zeros((arr.size, 1))
                m = np.where(np.isfinite(m), m, 0.0)
                lse = (np.log(np.exp(z - m).sum(axis=-1)) + m[..., 0]) if z.ndim == 2 and z.shape[1] else m[..., 0]
            arr[...] = np.resize(lse, arr.size).reshape(arr.shape)
    for v, arr in flat_arrays(case.args, values):
        if v.readonly:
            arr.flags.writeable = False
    return region, values


def flat_arrays(args, values=None):
    """(Arr, value) for every array argument, those inside lists too (value None without values)."""
    out = []
    for i, (_, v) in enumerate(args):
        x = values[i] if values is not None else None
        if isinstance(v, Arr):
            out.append((v, x))
        elif isinstance(v, list):
            out += [(a, x[j] if x is not None else None) for j, a in enumerate(v) if isinstance(a, Arr)]
    return out


def arrays_of(v) -> list:
    """The Arr of an argument: itself, or those in its list."""
    if isinstance(v, Arr):
        return [v]
    if isinstance(v, list):
        return [a for a in v if isinstance(a, Arr)]
    return []


def canonical(case: Case, values: list) -> list:
    """The same argument values, each array replaced by a fresh C-contiguous copy of its
    elements (same dtype and shape): the layout every kernel takes without question."""
    def copy(v, x):
        if isinstance(v, Arr):
            c = np.array(x, copy=True, order="C")
            if v.readonly:
                c.flags.writeable = False
            return c
        if isinstance(v, list) and isinstance(x, list):
            return [copy(a, y) for a, y in zip(v, x)]
        return x

    return [copy(v, x) for (_, v), x in zip(case.args, values)]


# ------------------------------------------------------------------ describing a case for people


def _describe_arr(name: str, v: Arr) -> list:
    lines = [f"{name} = np.ndarray({tuple(v.shape)}, np.{v.dtype}, buffer=buf, offset={v.offset}, "
             f"strides={tuple(v.strides)})"]
    if v.fill[0] == "lse_of":
        lines.append(f"{name}[...] = np.logaddexp.reduce({v.fill[1]}.astype(np.float64), axis=-1)")
    vals = fill_values(v.fill, v.seed, v.shape, np.dtype(v.dtype))
    if vals is not None and vals.size:
        if vals.size <= 48:
            lines.append(f"{name}[...] = np.array({vals.tolist()!r}, np.{v.dtype})")
        else:
            lines.append(f"{name}[...] = fill_values({v.fill!r}, {v.seed}, {tuple(v.shape)}, "
                         f"np.dtype({v.dtype!r}))  # tests/fuzz/fuzz_harness.py")
    if v.readonly:
        lines.append(f"{name}.flags.writeable = False")
    return lines


def describe(case: Case) -> str:
    """A script that rebuilds the case's arrays and makes its call (for a bug report)."""
    lines = [
        "import numpy as np, ember",
        "from ember import _C, kernels, quant",
        f"ember.set_isa({case.isa!r}); ember.set_num_threads({case.threads})",
        f"buf = np.resize(np.frombuffer(bytes([0xA5, 0xA5, 0xA5, 0x7F]), np.uint8), {case.nbytes})  # sentinel",
    ]
    names = []
    for name, v in case.args:
        if isinstance(v, Arr):
            lines += _describe_arr(name, v)
            names.append(name)
        elif isinstance(v, Obj):
            lines.append(f"{name} = build_obj({v!r})  # tests/fuzz/fuzz_harness.py")
            names.append(name)
        elif isinstance(v, list) and any(isinstance(a, Arr) for a in v):
            parts = []
            for j, a in enumerate(v):
                if isinstance(a, Arr):
                    lines += _describe_arr(f"{name}_{j}", a)
                    parts.append(f"{name}_{j}")
                else:
                    parts.append(repr(a))
            lines.append(f"{name} = [{', '.join(parts)}]")
            names.append(name)
        else:
            names.append(f"{v!r}")
    from fuzz_ops import call_text  # the op's call, as its user would write it

    lines.append(call_text(case, names))
    return "\n".join("    " + ln for ln in lines)


# ------------------------------------------------------------------ the worker


def _worker_main(conn, err_path: str, limit_memory: bool) -> None:  # runs in the worker process
    fd = os.open(err_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
    if not _under_asan():  # AddressSanitizer reports a crash itself, where it happened
        import faulthandler

        faulthandler.enable(all_threads=True)
    if limit_memory:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    import fuzz_ops

    while True:
        try:
            case = conn.recv()
        except EOFError:
            return
        print(f"--- case: {case!r}", file=sys.stderr, flush=True)
        try:
            outcome = ("ok", fuzz_ops.check_case(case))
        except AssertionError as e:
            outcome = ("fail", str(e))
        except BaseException as e:  # a defect of the fuzzer itself, reported as such
            import traceback

            outcome = ("fail", "the fuzzer's check raised:\n" + "".join(traceback.format_exception(e)))
        conn.send(outcome)


def _under_asan() -> bool:
    return "asan" in os.environ.get("LD_PRELOAD", "")


class Worker:
    """A long-lived worker process that runs cases; restarted (forked from a server that has
    imported NumPy and Ember) after it dies or hangs."""

    def __init__(self):
        import multiprocessing as mp

        self._ctx = mp.get_context("forkserver")
        self._ctx.set_forkserver_preload(["numpy", "ember", "fuzz_harness", "fuzz_ops"])
        fd, self.err_path = tempfile.mkstemp(prefix="ember-fuzz-", suffix=".log")
        os.close(fd)
        self.proc = None
        self.conn = None
        self.stats: dict[str, dict] = {}
        self.restarts = 0
        self.history: list[Case] = []  # the cases this worker process ran, most recent last
        self.hung_ops: set[str] = set()

    def _start(self) -> None:
        parent, child = self._ctx.Pipe()
        self.proc = self._ctx.Process(target=_worker_main, args=(child, self.err_path, not _under_asan()),
                                      daemon=True)
        self.proc.start()
        child.close()
        self.conn = parent
        self.restarts += 1
        self.history = []

    def _stop(self) -> None:
        if self.proc is not None:
            if self.proc.is_alive():
                self.proc.kill()
            self.proc.join(5)
        if self.conn is not None:
            self.conn.close()
        self.proc = self.conn = None

    def close(self) -> None:
        self._stop()
        try:
            os.unlink(self.err_path)
        except OSError:
            pass

    def _stderr_tail(self, limit: int = 6000) -> str:
        try:
            with open(self.err_path, "rb") as f:
                data = f.read()
        except OSError:
            return ""
        text = data.decode("utf-8", "replace")
        # Only what the failing case printed: from its marker on.
        cut = text.rfind("--- case: ")
        text = text[cut:] if cut >= 0 else text
        text = text.split("\n", 1)[1] if text.startswith("--- case: ") else text
        # A sanitizer's report: from its first line (what went wrong, and where).
        starts = [i for i in (text.find("ERROR: AddressSanitizer"), text.find("runtime error:")) if i >= 0]
        if starts:
            begin = text.rfind("\n", 0, min(starts)) + 1
            return text[begin:begin + limit]
        return text[-limit:]

    def run(self, case: Case, timeout: float = DEFAULT_TIMEOUT) -> tuple[str, Any]:
        """('ok', outcome) | ('fail', text) | ('died', text) | ('hang', text)."""
        earlier = list(self.history)
        if case.op in self.hung_ops:  # shrinking a hang: no need to wait the whole limit each time
            timeout = min(timeout, 3.0)
        status, info = self._run(case, timeout)
        if status == "hang":
            self.hung_ops.add(case.op)
        if status == "died" and earlier:
            status, info = self._blame(case, info, earlier, timeout)
        return status, info

    def _blame(self, case: Case, info: str, earlier: list, timeout: float):
        """A worker that dies may have been corrupted by an earlier case (a heap overflow is often
        noticed only at a later allocation). If the case alone survives, find the earlier case
        after which it dies."""
        if self._run(case, timeout)[0] == "died":
            return "died", info
        for prev in reversed(earlier[-8:]):
            self._stop()
            self._run(prev, timeout)
            if self.proc is not None and self._run(case, timeout)[0] == "died":
                return "died", (f"the process running it died, but the case alone does not crash: an earlier case "
                                f"left the process in a state (corrupted memory, a cache, a setting) in which this "
                                f"case crashes. That case was:\n  case: {prev!r}\n  to reproduce "
                                f"it (then run the case above in the same process):\n{describe(prev)}\n\n"
                                f"The crash: {info}")
        self._stop()
        return "died", ("the process running it died, but neither the case alone nor after one of the 8 cases "
                        "before it crashes; the crash: " + info)

    def _run(self, case: Case, timeout: float) -> tuple[str, Any]:
        if self.proc is None or not self.proc.is_alive():
            self._stop()
            self._start()
        with open(self.err_path, "w"):
            pass  # truncate: the worker appends
        t0 = time.monotonic()
        self.history = (self.history + [case])[-8:]
        self.conn.send(case)
        if not self.conn.poll(timeout):
            self._stop()
            return "hang", f"did not finish within {timeout:.0f} s"
        try:
            result = self.conn.recv()
        except (EOFError, ConnectionResetError):
            self.proc.join(5)
            code = self.proc.exitcode
            self._stop()
            why = (f"killed by {signal.Signals(-code).name}" if code is not None and code < 0
                   else f"exited with status {code}")
            return "died", f"the process running it was {why}\n{self._stderr_tail()}"
        s = self.stats.setdefault(case.op, {"cases": 0, "seconds": 0.0, "outcomes": {}})
        s["cases"] += 1
        s["seconds"] += time.monotonic() - t0
        if result[0] == "ok":
            s["outcomes"][result[1]] = s["outcomes"].get(result[1], 0) + 1
        return result

    def check(self, case: Case, timeout: float = DEFAULT_TIMEOUT) -> str:
        """Runs the case; raises AssertionError naming it unless the property held."""
        status, info = self.run(case, timeout)
        if status == "ok":
            return info
        header = {"fail": "the property does not hold", "died": "the call crashed",
                  "hang": "the call hung"}[status]
        raise AssertionError(f"{case.op}: {header}: {info}\n  case: {case!r}\n  to reproduce:\n{describe(case)}")

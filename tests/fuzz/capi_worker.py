"""The C API fuzzer's worker: a process that loads libember and runs cases sent over a pipe, so
that a crash or a hang in the library fails the case that caused it instead of the test session.

A case is ``("load", file_bytes, shapes)``: the bytes are written to a file and loaded with
ember_model_load, then each input shape is asked of ember_model_output_shape and, when its
output is small, run by ember_model_forward; ``("pool" | "conv", fields)``: a shape struct
given to the output-size function and, when that succeeds and the arrays are small, to the
forward (and backward) kernels; ``("xent", fields)``: a cross-entropy problem run forward and
backward; ``("qweight", fields)``: a weight quantized and multiplied. The answer is a list of
(function, status, message).
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import tempfile

import numpy as np

# Cases whose arrays would exceed this many floats are only sized, not run.
MAX_RUN = 1 << 20
STATUSES = {0: "ok", 1: "invalid argument", 2: "unsupported", 3: "out of memory", 4: "internal error", 5: "i/o error"}

CONV_FIELDS = ("n", "c", "h", "w", "o", "kh", "kw", "stride_h", "stride_w", "pad_top", "pad_left", "pad_bottom",
               "pad_right", "dilation_h", "dilation_w", "groups")
POOL_FIELDS = ("n", "c", "h", "w", "kh", "kw", "stride_h", "stride_w", "pad_h", "pad_w", "dilation_h", "dilation_w")


class ConvShape(ctypes.Structure):
    _fields_ = [(f, ctypes.c_int64) for f in CONV_FIELDS]


class PoolShape(ctypes.Structure):
    _fields_ = [(f, ctypes.c_int64) for f in POOL_FIELDS] + [("ceil_mode", ctypes.c_int)]


def _library(path):
    lib = ctypes.CDLL(path)
    lib.ember_last_error.restype = ctypes.c_char_p
    lib.ember_model_free.argtypes = [ctypes.c_void_p]
    lib.ember_qweight_free.argtypes = [ctypes.c_void_p]
    return lib


def _floats(n):
    return np.random.default_rng(n).standard_normal(max(int(n), 1)).astype(np.float32)


def _ptr(a):
    return ctypes.c_void_p(a.ctypes.data)


def _load(lib, data, shapes, folder):
    answers = []
    path = os.path.join(folder, "case.safetensors")
    with open(path, "wb") as f:
        f.write(data)
    model = ctypes.c_void_p()
    status = lib.ember_model_load(path.encode(), ctypes.byref(model))
    answers.append(("ember_model_load", status, lib.ember_last_error().decode()))
    if status != 0:
        return answers
    try:
        for shape in shapes:
            dims = (ctypes.c_int64 * len(shape))(*shape)
            rank, out = ctypes.c_int(), (ctypes.c_int64 * 8)()
            status = lib.ember_model_output_shape(model, len(shape), dims, ctypes.byref(rank), out)
            answers.append(("ember_model_output_shape", status, lib.ember_last_error().decode()))
            if status != 0:
                continue
            n_in, n_out = int(np.prod(shape)), int(np.prod(out[:rank.value]))
            if max(n_in, n_out) > MAX_RUN:
                continue
            x, y = _floats(n_in), np.empty(max(n_out, 1), np.float32)
            status = lib.ember_model_forward(model, len(shape), dims, _ptr(x), _ptr(y), ctypes.c_int64(n_out))
            answers.append(("ember_model_forward", status, lib.ember_last_error().decode()))
    finally:
        lib.ember_model_free(model)
    return answers


def _kernel(lib, kind, fields):
    answers = []
    shape = ConvShape(*fields) if kind == "conv" else PoolShape(*fields)
    oh, ow = ctypes.c_int64(), ctypes.c_int64()
    size_fn = "ember_conv2d_output_size" if kind == "conv" else "ember_pool2d_output_size"
    status = getattr(lib, size_fn)(ctypes.byref(shape), ctypes.byref(oh), ctypes.byref(ow))
    answers.append((size_fn, status, lib.ember_last_error().decode()))
    if status != 0:
        return answers
    s = dict(zip(CONV_FIELDS if kind == "conv" else POOL_FIELDS, fields))
    n_x = s["n"] * s["c"] * s["h"] * s["w"]
    if kind == "conv":
        n_w, n_y = s["o"] * (s["c"] // s["groups"]) * s["kh"] * s["kw"], s["n"] * s["o"] * oh.value * ow.value
        if max(n_x, n_w, n_y) > MAX_RUN:
            return answers
        x, w, b, y = _floats(n_x), _floats(n_w), _floats(s["o"]), np.empty(max(n_y, 1), np.float32)
        calls = [("ember_conv2d_forward_f32", (ctypes.byref(shape), _ptr(x), _ptr(w), _ptr(b), 1, _ptr(y))),
                 ("ember_conv2d_backward_data_f32", (ctypes.byref(shape), _ptr(_floats(n_y)), _ptr(w), _ptr(x))),
                 ("ember_conv2d_backward_weight_f32", (ctypes.byref(shape), _ptr(x), _ptr(_floats(n_y)), _ptr(w),
                                                       _ptr(b)))]
    else:
        n_y = s["n"] * s["c"] * oh.value * ow.value
        if max(n_x, n_y) > MAX_RUN:
            return answers
        x, y, idx = _floats(n_x), np.empty(max(n_y, 1), np.float32), np.zeros(max(n_y, 1), np.int64)
        calls = [("ember_max_pool2d_forward_f32", (ctypes.byref(shape), _ptr(x), _ptr(y), _ptr(idx))),
                 ("ember_max_pool2d_backward_f32", (ctypes.byref(shape), _ptr(y), _ptr(idx), _ptr(x))),
                 ("ember_avg_pool2d_forward_f32", (ctypes.byref(shape), 0, _ptr(x), _ptr(y))),
                 ("ember_avg_pool2d_backward_f32", (ctypes.byref(shape), 1, _ptr(y), _ptr(x)))]
    for name, args in calls:
        status = getattr(lib, name)(*args)
        answers.append((name, status, lib.ember_last_error().decode()))
    return answers


class XentArgs(ctypes.Structure):
    _fields_ = [("batch", ctypes.c_int64), ("classes", ctypes.c_int64), ("target", ctypes.c_void_p),
                ("target_probs", ctypes.c_void_p), ("weight", ctypes.c_void_p), ("label_smoothing", ctypes.c_float),
                ("ignore_index", ctypes.c_int64), ("reduction", ctypes.c_int)]


def _xent(lib, fields):
    """fields: batch, classes, soft (bool), weighted (bool), label_smoothing, ignore_index, reduction,
    target values (a list cycled over the batch)."""
    b, v, soft, weighted, eps, ignore, reduction, targets = fields
    if max(b, 0) > MAX_RUN or max(v, 0) > MAX_RUN or max(b, 0) * max(v, 0) > MAX_RUN:
        return []  # buffers of the claimed sizes would not fit: a caller's lie is not detectable
    n = max(b, 0) * max(v, 0)
    z = _floats(n)
    t = np.array([targets[i % len(targets)] for i in range(max(b, 0))] or [0], np.int64)
    probs = np.abs(_floats(n)) if soft else None
    w = np.abs(_floats(max(v, 1))) if weighted else None
    args = XentArgs(b, v, None if soft else _ptr(t), _ptr(probs) if soft else None, _ptr(w) if weighted else None,
                    eps, ignore, reduction)
    loss, lse, dz = np.empty(max(b, 1), np.float32), np.empty(max(b, 1)), np.empty(max(n, 1), np.float32)
    answers = []
    status = lib.ember_cross_entropy_forward_f32(ctypes.byref(args), _ptr(z), _ptr(loss), _ptr(lse))
    answers.append(("ember_cross_entropy_forward_f32", status, lib.ember_last_error().decode()))
    status = lib.ember_cross_entropy_backward_f32(ctypes.byref(args), _ptr(z), None, None, _ptr(dz))
    answers.append(("ember_cross_entropy_backward_f32", status, lib.ember_last_error().decode()))
    return answers


def _qweight(lib, fields):
    """fields: bits (8, 4, a bad value, or "int8_groups"), n, k, group_size, m, ld extra, a non-finite
    value or not."""
    bits, n, k, group, m, extra, poison = fields
    width = max(k + extra, 1)
    if max(n, 1) * width > MAX_RUN or max(m, 1) * width > MAX_RUN or max(m, 1) * max(n, 1) > MAX_RUN:
        return []  # buffers of the claimed sizes would not fit
    w = _floats(max(n, 1) * max(k + extra, 1))
    if poison:
        w[0] = np.inf
    handle = ctypes.c_void_p()
    i64 = ctypes.c_int64
    if bits == "int8_groups":
        quantize = "ember_qweight_quantize_int8_groups_f32"
        status = lib[quantize](_ptr(w), i64(n), i64(k), i64(k + extra), i64(group), ctypes.byref(handle))
    else:
        quantize = "ember_qweight_quantize_f32"
        status = lib[quantize](_ptr(w), i64(n), i64(k), i64(k + extra), bits, i64(group), ctypes.byref(handle))
    answers = [(quantize, status, lib.ember_last_error().decode())]
    if status != 0:
        return answers
    try:
        x, y = _floats(max(m, 1) * (k + extra)), np.empty(max(m, 1) * n, np.float32)
        status = lib.ember_qmatmul_f32(handle, i64(m), _ptr(x), i64(k + extra), None, _ptr(y), i64(n))
        answers.append(("ember_qmatmul_f32", status, lib.ember_last_error().decode()))
    finally:
        lib.ember_qweight_free(handle)
    return answers


def _main(conn, path):
    lib = _library(path)
    with tempfile.TemporaryDirectory(prefix="ember-capi-fuzz-") as folder:
        while True:
            try:
                case = conn.recv()
            except EOFError:
                return
            if case[0] == "load":
                conn.send(_load(lib, case[1], case[2], folder))
            elif case[0] == "xent":
                conn.send(_xent(lib, case[1]))
            elif case[0] == "qweight":
                conn.send(_qweight(lib, case[1]))
            else:
                conn.send(_kernel(lib, case[0], case[1]))


class Worker:
    """Runs cases in a child process; a case that kills or hangs it is reported, and the next
    case gets a fresh child."""

    def __init__(self, library, timeout=20.0):
        self.library, self.timeout = str(library), timeout
        self._ctx = mp.get_context("spawn")
        self.proc = self.conn = None

    def _start(self):
        parent, child = self._ctx.Pipe()
        self.proc = self._ctx.Process(target=_main, args=(child, self.library), daemon=True)
        self.proc.start()
        child.close()
        self.conn = parent

    def close(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.join(5)
        self.proc = self.conn = None

    def run(self, case):
        """The answers for `case`; a crash or a hang raises AssertionError describing it."""
        if self.proc is None or not self.proc.is_alive():
            self._start()
        self.conn.send(case)
        if not self.conn.poll(self.timeout):
            self.close()
            raise AssertionError(f"the C API hung (over {self.timeout} s) on {_describe(case)}")
        try:
            return self.conn.recv()
        except EOFError:
            self.proc.join(5)
            code = self.proc.exitcode
            self.close()
            raise AssertionError(f"the C API crashed (exit code {code}) on {_describe(case)}") from None


class Case(tuple):
    """A case as sent to the worker, shown by what was done to make it (not by its bytes)."""

    def __new__(cls, parts, note=""):
        case = super().__new__(cls, parts)
        case.note = note
        return case

    def __repr__(self):
        if self[0] == "load":
            return f"Case(checkpoint of {len(self[1])} bytes: {self.note}; input shapes {self[2]})"
        return f"Case({self[0]} shape {self[1]})"

    def __reduce__(self):  # sent over the pipe as a plain tuple
        return (tuple, (tuple(self),))


def _describe(case):
    return repr(case) if isinstance(case, Case) else repr(Case(case))

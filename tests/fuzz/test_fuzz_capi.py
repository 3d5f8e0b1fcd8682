"""The C API fuzzed: checkpoints damaged byte by byte, in their safetensors header and in the model
description they carry, loaded with ember_model_load and run on input shapes of every kind; and
convolution and pooling shape structs of edge values. Every call answers with a status among
the documented ones (never an internal error) and a message naming the function, or succeeds;
none crashes or hangs (each case runs in a worker process: capi_worker.py)."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as hs

import capi_worker
import ember
from ember import models, nn, quant
from fuzz_settings import examples

LIB = ember.get_lib() + "/libember.so"
DOCUMENTED = {0, 1, 2, 3, 5}
EDGE_INTS = [0, 1, 2, 3, 7, -1, -2, 2**31, 2**40, 2**62, 2**63 - 1, -(2**63), 2**64]


@pytest.fixture(scope="module")
def capi():
    worker = capi_worker.Worker(LIB)
    yield worker
    worker.close()


def _seeds():
    """Checkpoints of a float CNN with normalisation, an int8 and an int4 model (bytes)."""
    import tempfile
    from pathlib import Path

    ember.manual_seed(0)
    out = []
    with tempfile.TemporaryDirectory() as folder:
        cnn = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Flatten(), nn.Linear(64, 16), nn.LayerNorm(16), nn.GELU(), nn.Linear(16, 10))
        flat = nn.Sequential(nn.Flatten(), nn.Linear(64, 24), nn.ReLU(), nn.Linear(24, 10))
        for name, model in [("cnn", cnn), ("int8", quant.quantize(flat, bits=8)[0]),
                            ("int4", quant.quantize(flat, bits=4)[0]), ("digits", models.cnn((1, 8, 8), 10))]:
            path = Path(folder) / f"{name}.safetensors"
            ember.save(path, model.eval())
            out.append(path.read_bytes())
    return out


SEEDS = _seeds()


def _split(data):
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + n]), data[8 + n:]


def _join(header, body):
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + body


json_values = hs.recursive(
    hs.one_of(hs.sampled_from(EDGE_INTS), hs.integers(-5, 40), hs.sampled_from([1.5, -0.0, 1e308, float("inf")]),
              hs.sampled_from(["same", "valid", "", "x", "nn.Linear"]), hs.none(), hs.booleans()),
    lambda inner: hs.one_of(hs.lists(inner, max_size=3), hs.dictionaries(hs.sampled_from(["a", "class", "config"]),
                                                                         inner, max_size=2)),
    max_leaves=6)

CLASSES = ["nn.Conv2d", "nn.Linear", "nn.ReLU", "nn.MaxPool2d", "nn.AvgPool2d", "nn.AdaptiveAvgPool2d", "nn.Flatten",
           "nn.BatchNorm2d", "nn.BatchNorm1d", "nn.LayerNorm", "nn.Softmax", "nn.Sequential", "quant.QuantLinear",
           "nn.Embedding", "nn.Dropout", "nn.GELU"]


@hs.composite
def checkpoints(draw):
    data = draw(hs.sampled_from(SEEDS))
    header, body = _split(data)
    kind = draw(hs.sampled_from(["bytes", "truncate", "header", "architecture", "architecture", "none"]))
    note = f"seed {SEEDS.index(data)}, {kind}"
    if kind == "bytes":
        raw = bytearray(data)
        for _ in range(draw(hs.integers(1, 8))):
            at, value = draw(hs.integers(0, len(raw) - 1)), draw(hs.integers(0, 255))
            raw[at] = value
            note += f" [{at}]={value}"
        data = bytes(raw)
    elif kind == "truncate":
        data = data[:draw(hs.integers(0, len(data) - 1))]
        note += f" to {len(data)} bytes"
    elif kind == "header":
        names = sorted(k for k in header if k != "__metadata__")
        name = draw(hs.sampled_from(names))
        entry = header[name]
        field = draw(hs.sampled_from(["dtype", "shape", "data_offsets", None]))
        if field is None:
            entry.clear()
        else:
            entry[field] = draw(hs.one_of(json_values, hs.sampled_from(["F32", "BF16", "I8", "U8", "I64", "F64"]),
                                          hs.lists(hs.sampled_from(EDGE_INTS), max_size=4)))
        note += f" {name}: {entry}"
        data = _join(header, body)
    elif kind == "architecture":
        meta = header["__metadata__"]
        arch = json.loads(meta["ember.architecture"])
        children = arch["children"]
        module = children[draw(hs.sampled_from(sorted(children)))]
        what = draw(hs.sampled_from(["config", "config", "class", "drop", "children"]))
        if what == "config":
            key = draw(hs.sampled_from(sorted(module["config"]) + ["bits", "group_size", "eps"]))
            module["config"][key] = draw(json_values)
        elif what == "class":
            module["class"] = draw(hs.sampled_from(CLASSES))
        elif what == "drop":
            module.pop(draw(hs.sampled_from(sorted(module))))
        else:
            module["children"] = draw(json_values)
        note += f" {what}: {json.dumps(module)[:200]}"
        meta["ember.architecture"] = json.dumps(arch)
        data = _join(header, body)
    dims = hs.one_of(hs.integers(0, 9), hs.sampled_from([16, 64, 2**31, 2**62]))
    shapes = draw(hs.lists(hs.one_of(hs.tuples(hs.integers(1, 3), hs.just(1), hs.just(8), hs.just(8)),
                                     hs.lists(dims, min_size=1, max_size=5).map(tuple)), min_size=1, max_size=3))
    return capi_worker.Case(("load", data, shapes), note)


def _check(answers):
    for function, status, message in answers:
        assert status in DOCUMENTED, f"{function} answered status {status}: {message}"
        if status == 0:
            assert message == "", (function, message)
        else:
            assert message.startswith(function + ": ") and len(message) > len(function) + 2, (function, message)


@examples(60)
@given(checkpoints())
def test_model_load_and_forward(capi, case):
    _check(capi.run(case))


def test_the_seeds_themselves_load_and_run(capi):
    for data in SEEDS:
        answers = capi.run(("load", data, [(2, 1, 8, 8)]))
        assert [a[1] for a in answers] == [0, 0, 0], answers


# Mostly shapes a caller would pass (small, valid or nearly), with one or two fields swapped for an
# edge value, so that both the checks and the kernels behind them are reached.
SMALL = {"n": (0, 3), "c": (1, 6), "h": (0, 12), "w": (0, 12), "o": (1, 6), "kh": (1, 4), "kw": (1, 4),
         "stride_h": (1, 3), "stride_w": (1, 3), "pad_top": (0, 2), "pad_left": (0, 2), "pad_bottom": (0, 2),
         "pad_right": (0, 2), "pad_h": (0, 2), "pad_w": (0, 2), "dilation_h": (1, 3), "dilation_w": (1, 3),
         "groups": (1, 3)}


@hs.composite
def shape_fields(draw, fields):
    values = {f: draw(hs.integers(*SMALL[f])) for f in fields}
    for field in draw(hs.lists(hs.sampled_from(fields), max_size=2, unique=True)):
        values[field] = draw(hs.one_of(hs.sampled_from(EDGE_INTS[:-1]), hs.integers(-2, 40)))
    return tuple(values[f] for f in fields)


@examples(40)
@given(shape_fields(capi_worker.CONV_FIELDS))
def test_conv2d_shapes(capi, fields):
    _check(capi.run(("conv", fields)))


@examples(40)
@given(shape_fields(capi_worker.POOL_FIELDS), hs.integers(0, 1))
def test_pool2d_shapes(capi, fields, ceil_mode):
    _check(capi.run(("pool", fields + (ceil_mode,))))


@examples(40)
@given(hs.tuples(hs.one_of(hs.integers(0, 40), hs.sampled_from([-1, 2**40])),
                 hs.one_of(hs.integers(0, 40), hs.sampled_from([-1, 2**40])), hs.booleans(), hs.booleans(),
                 hs.sampled_from([0.0, 0.1, 1.0, -0.5, 1.5, float("nan")]), hs.sampled_from([-100, 0, 3]),
                 hs.integers(-1, 3), hs.lists(hs.one_of(hs.integers(-2, 45), hs.sampled_from(EDGE_INTS[:-1])),
                                              min_size=1, max_size=4)))
def test_cross_entropy(capi, fields):
    _check(capi.run(("xent", fields)))


@examples(40)
@given(hs.tuples(hs.sampled_from([8, 4, 3, "int8_groups"]), hs.one_of(hs.integers(-1, 40), hs.just(2**40)),
                 hs.one_of(hs.integers(-1, 300), hs.sampled_from([65536, 65537])),
                 hs.sampled_from([8, 16, 32, 64, 12, 0, 4096, 8192]), hs.integers(-1, 20), hs.integers(-2, 3),
                 hs.booleans()))
def test_quantized_weights(capi, fields):
    _check(capi.run(("qweight", fields)))

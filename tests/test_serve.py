"""``ember serve``: the HTTP service on 127.0.0.1 -- requests in every format, bad requests, metrics,
reloads that leave a bad file unserved, incremental training picked up online, and a bounded load
test: concurrent clients while the model is reloaded ten times, no request failed and every output
the one its model version gives."""

from __future__ import annotations

import asyncio
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import ember
from ember import models, nn

httpx = pytest.importorskip("httpx", reason="the service's tests talk to it with httpx (pip install 'ember[serve]')")
pytest.importorskip("starlette", reason="ember serve needs starlette (pip install 'ember[serve]')")
pytest.importorskip("uvicorn", reason="ember serve needs uvicorn (pip install 'ember[serve]')")
pytest.importorskip("prometheus_client", reason="ember serve needs prometheus-client (pip install 'ember[serve]')")
from ember import serve  # noqa: E402
from ember.serve.app import OUTPUTS  # noqa: E402

SHAPE = (1, 8, 8)


def make_checkpoint(path, seed):
    ember.manual_seed(seed)
    model = models.cnn(SHAPE, 10, padding=1)
    model.save(path, config={"input_shape": list(SHAPE)})
    return model.eval()


def replace_atomically(source, target):
    tmp = target.with_suffix(".tmp")
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)


@pytest.fixture
def two_models(tmp_path):
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    served = tmp_path / "served.safetensors"
    model_a, model_b = make_checkpoint(a, 1), make_checkpoint(b, 2)
    shutil.copyfile(a, served)
    return served, (a, model_a), (b, model_b)


@pytest.fixture
def server(two_models):
    served = two_models[0]
    url, stop = serve.start_in_thread(served, max_batch=64, max_wait_ms=2.0, max_body_bytes=1 << 20, max_rows=64)
    yield url
    stop()


def outputs_of(model, x):
    with ember.no_grad():
        return model(ember.tensor(x)).numpy()


def test_predict_in_every_format(server, two_models, rng):
    _, (_, model_a), _ = two_models
    x = rng.standard_normal((3,) + SHAPE).astype(np.float32)
    want = outputs_of(model_a, x)
    r = httpx.post(server + "/v1/predict", json={"inputs": x.tolist()})
    assert r.status_code == 200 and r.headers["x-model-version"] == str(r.json()["model_version"])
    np.testing.assert_allclose(r.json()["outputs"], want, rtol=1e-5, atol=1e-6)
    r = httpx.post(server + "/v1/predict", json={"inputs": x[0].tolist(), "output": "classes"})  # one input alone
    assert r.json()["outputs"] == [int(want[0].argmax())]
    buf = io.BytesIO()
    np.save(buf, x.astype(np.float64))
    r = httpx.post(server + "/v1/predict?output=probabilities", content=buf.getvalue(),
                   headers={"content-type": "application/x-npy"})
    p = np.array(r.json()["outputs"])
    np.testing.assert_allclose(p.sum(1), 1, rtol=1e-6)
    np.testing.assert_array_equal(p.argmax(1), want.argmax(1))
    from safetensors.numpy import save

    r = httpx.post(server + "/v1/predict", content=save({"inputs": x}), headers={"content-type": "application/x-safetensors"})
    np.testing.assert_allclose(r.json()["outputs"], want, rtol=1e-5, atol=1e-6)
    info = httpx.get(server + "/v1/model").json()
    assert info["input_shape"] == list(SHAPE) and info["outputs"] == 10 and info["kind"] == "ember"
    assert httpx.get(server + "/healthz").json() == {"status": "ok"}
    assert httpx.get(server + "/readyz").json()["ready"] is True


@pytest.mark.parametrize("kwargs, status, message", [
    (dict(json={"inputs": [[1.0, 2.0]]}), 422, "the model takes one input of shape (1, 8, 8)"),
    (dict(json={"inputs": [["a"] * 8] * 8}), 422, "nested lists of numbers of one shape"),
    # NumPy would read "1" and true as numbers; JSON inputs are JSON numbers, as a binary body's dtype must be one
    (dict(json={"inputs": [[["1"] * 8] * 8]}), 422, 'found "1", which is not a JSON number'),
    (dict(json={"inputs": [[[1.0] * 7 + [True]] * 8]}), 422, "found true, which is not a JSON number"),
    (dict(json={"inputs": [[[1.0] * 8] * 7 + [[1.0] * 7]]}), 422, "its lists differ in length"),
    (dict(json={"inputs": [[[1.0] * 8] * 8], "output": "soft"}), 422, '"output" must be one of'),
    (dict(json={"data": 1}), 400, 'must be an object with "inputs"'),
    (dict(content=b"{not json", headers={"content-type": "application/json"}), 400, "the body is not JSON"),
    (dict(content=b"\x93NUMPY garbage", headers={"content-type": "application/x-npy"}), 400, "not a .npy array"),
    (dict(content=b"abc", headers={"content-type": "text/plain"}), 415, "content type 'text/plain'"),
    (dict(content=json.dumps({"inputs": [[[float("nan")] * 8] * 8]}).encode(),
          headers={"content-type": "application/json"}), 422, "inputs must be finite"),
    (dict(json={"inputs": np.zeros((65,) + SHAPE).tolist()}), 413, "a request holds 1 to 64 inputs"),
    (dict(content=b"0" * (2 << 20), headers={"content-type": "application/json"}), 413, "the limit is 1048576"),
    (dict(content=b'{"inputs": [' + b"1" * 400 + b"]}", headers={"content-type": "application/json"}), 422,
     "too large for a float"),
    (dict(content=b'{"inputs": ' + b"[" * 100000 + b"]" * 100000 + b"}", headers={"content-type": "application/json"}),
     400, "nested too deeply"),
    # chunked, with no Content-Length: refused while it streams in, not after it is all held
    (dict(content=(b"0" * (1 << 18) for _ in range(8)), headers={"content-type": "application/json"}), 413,
     "the body has more than 1048576 bytes"),
])
def test_bad_requests_get_a_4xx_naming_the_problem(server, kwargs, status, message):
    r = httpx.post(server + "/v1/predict", **kwargs)
    assert r.status_code == status and message in r.json()["error"], r.text
    assert httpx.post(server + "/v1/predict", json={"inputs": np.zeros(SHAPE).tolist()}).status_code == 200


def test_metrics_in_prometheus_text(server):
    for _ in range(3):
        httpx.post(server + "/v1/predict", json={"inputs": np.zeros((2,) + SHAPE).tolist()})
    httpx.post(server + "/v1/predict", json={"inputs": [1]})
    text = httpx.get(server + "/metrics").text
    assert 'ember_requests_total{status="200"} 3.0' in text and 'ember_requests_total{status="422"} 1.0' in text
    assert "ember_request_seconds_bucket" in text and "ember_batch_size_count" in text
    assert "ember_model_version" in text


def test_a_bad_file_leaves_the_old_model_serving(server, two_models, tmp_path):
    served = two_models[0]
    version = httpx.get(server + "/v1/model").json()["version"]
    served.write_bytes(b"not a checkpoint")
    r = httpx.post(server + "/v1/reload")
    assert r.status_code == 422 and f"version {version} keeps serving" in r.json()["error"]
    ember.manual_seed(0)
    nn.Sequential(nn.Flatten(), nn.Linear(64, 3)).save(served, config={"input_shape": list(SHAPE)})  # 3 outputs, not 10
    r = httpx.post(server + "/v1/reload")
    assert r.status_code == 422 and "gives 3 outputs" in r.json()["error"]
    reply = httpx.post(server + "/v1/predict", json={"inputs": np.zeros(SHAPE).tolist()}).json()
    assert reply["model_version"] == version and len(reply["outputs"][0]) == 10
    assert 'ember_reloads_total{result="rejected"} 2.0' in httpx.get(server + "/metrics").text


def test_incremental_training_is_picked_up_online(server, two_models, rng):
    served = two_models[0]
    model = ember.load_model(served)
    model[0].requires_grad_(False)  # fine-tune the classifier only
    conv = model[0].weight.detach().numpy().copy()
    x = rng.standard_normal((64,) + SHAPE).astype(np.float32)
    y = rng.integers(0, 10, 64)
    model.compile(optimizer="adam", loss="cross_entropy")
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    np.testing.assert_array_equal(model[0].weight.detach().numpy(), conv)
    model.save(served, config={"input_shape": list(SHAPE)})  # atomic: a reader never sees half a file
    before = httpx.get(server + "/v1/model").json()["version"]
    r = httpx.post(server + "/v1/reload")
    assert r.status_code == 200 and r.json()["version"] > before
    reply = httpx.post(server + "/v1/predict", json={"inputs": x[:2].tolist()}).json()
    assert reply["model_version"] == r.json()["version"]
    np.testing.assert_allclose(reply["outputs"], outputs_of(model.eval(), x[:2]), rtol=1e-5, atol=1e-6)


async def _load(url, pool, clients, requests_each, reload=None):
    """(latencies, replies) of ``clients`` concurrent clients sending ``requests_each`` requests of
    1-3 inputs from ``pool``; ``reload`` runs alongside."""
    latencies, replies = [], []
    rng = np.random.default_rng(0)
    plans = [[rng.integers(0, len(pool), rng.integers(1, 4)) for _ in range(requests_each)] for _ in range(clients)]

    async def client(plan, http):
        for rows in plan:
            start = time.perf_counter()
            r = await http.post(url + "/v1/predict", json={"inputs": pool[rows].tolist()})
            latencies.append(time.perf_counter() - start)
            replies.append((rows, r.status_code, r.json()))

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        tasks = [client(plan, http) for plan in plans] + ([reload(http)] if reload else [])
        await asyncio.gather(*tasks)
    return np.array(latencies), replies


def test_ten_reloads_under_load_fail_no_request_and_mix_no_versions(two_models, rng):
    served, (a, model_a), (b, model_b) = two_models
    pool = rng.standard_normal((32,) + SHAPE).astype(np.float32)
    expected = {"a": outputs_of(model_a, pool), "b": outputs_of(model_b, pool)}
    url, stop = serve.start_in_thread(served, max_batch=64, max_wait_ms=2.0)
    versions = {httpx.get(url + "/v1/model").json()["version"]: "a"}

    async def reload(http):
        for i in range(10):
            await asyncio.sleep(0.05)
            name, source = ("b", b) if i % 2 == 0 else ("a", a)
            replace_atomically(source, served)
            r = await http.post(url + "/v1/reload")
            assert r.status_code == 200, r.text
            versions[r.json()["version"]] = name

    try:
        latencies, replies = asyncio.run(_load(url, pool, clients=16, requests_each=25, reload=reload))
        metrics = httpx.get(url + "/metrics").text
    finally:
        stop()
    assert len(replies) == 400 and all(status == 200 for _, status, _ in replies)
    seen = set()
    for rows, _, reply in replies:  # every reply is exactly what the version it names computes
        name = versions[reply["model_version"]]
        seen.add(name)
        want = expected[name][rows]
        np.testing.assert_allclose(reply["outputs"], want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    assert seen == {"a", "b"} and len(versions) == 11
    assert 'ember_reloads_total{result="loaded"} 10.0' in metrics
    print(f"\n16 clients, 400 requests, 10 reloads: p50 {np.percentile(latencies, 50) * 1e3:.2f} ms, "
          f"p99 {np.percentile(latencies, 99) * 1e3:.2f} ms")


def test_the_command_serves_until_stopped(two_models, tmp_path):
    served = two_models[0]
    env = {**os.environ, "SKBUILD_EDITABLE_VERBOSE": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "ember", "serve", str(served), "--port", "0", "--no-batching"],
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        url = None
        deadline = time.time() + 60
        while url is None and time.time() < deadline:
            line = proc.stderr.readline()
            if "running on" in line.lower():
                url = line.split("running on ")[1].split()[0]
        assert url, "the server did not say where it listens"
        r = httpx.post(url + "/v1/predict", json={"inputs": np.zeros(SHAPE).tolist(), "output": "classes"})
        assert r.status_code == 200 and len(r.json()["outputs"]) == 1
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_serve_refuses_what_it_cannot_serve(tmp_path, capsys):
    from ember import cli

    assert cli.main(["serve", str(tmp_path / "none.safetensors")]) == 2
    assert "no model at" in capsys.readouterr().err
    nn.Sequential(nn.Flatten(), nn.Linear(64, 3)).save(tmp_path / "m.safetensors")
    assert cli.main(["serve", str(tmp_path / "m.safetensors")]) == 2
    assert "pass --input-shape" in capsys.readouterr().err
    with pytest.raises(ValueError, match="max_batch must be >= 1"):
        serve.create_app(tmp_path / "m.safetensors", input_shape=SHAPE, max_batch=0)
    for wait in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="max_wait a finite number of seconds >= 0"):
            serve.create_app(tmp_path / "m.safetensors", input_shape=SHAPE, max_wait_ms=wait)


def test_watching_the_file_reloads_it_when_it_changes(two_models):
    served, (a, _), (b, model_b) = two_models
    url, stop = serve.start_in_thread(served, watch_seconds=0.05)
    try:
        first = httpx.get(url + "/v1/model").json()["version"]
        replace_atomically(b, served)
        deadline = time.time() + 10
        while httpx.get(url + "/v1/model").json()["version"] == first and time.time() < deadline:
            time.sleep(0.05)
        reply = httpx.post(url + "/v1/predict", json={"inputs": np.ones(SHAPE).tolist()}).json()
        assert reply["model_version"] > first
        np.testing.assert_allclose(reply["outputs"], outputs_of(model_b, np.ones((1,) + SHAPE, np.float32)),
                                   rtol=1e-5, atol=1e-6)
        served.write_bytes(b"half a file")  # a bad write: reported, the last good model keeps serving
        time.sleep(0.5)
        assert httpx.get(url + "/v1/model").json()["version"] == reply["model_version"]
        assert 'ember_reloads_total{result="rejected"} 1.0' in httpx.get(url + "/metrics").text
    finally:
        stop()


def test_outputs_that_are_not_finite_get_a_json_error(tmp_path):
    ember.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3))
    nn.init.ones_(model[0].weight)
    model.save(tmp_path / "m.safetensors", config={"input_shape": [4]})
    url, stop = serve.start_in_thread(tmp_path / "m.safetensors")
    try:
        for output in OUTPUTS:  # 4 x 3e38 is past float32's largest number
            r = httpx.post(url + "/v1/predict", json={"inputs": [[1.0] * 4, [3e38] * 4], "output": output})
            assert r.status_code == 422 and "not finite" in r.json()["error"] and "input(s) 1 " in r.json()["error"]
        assert httpx.post(url + "/v1/predict", json={"inputs": [1.0] * 4}).status_code == 200
        text = httpx.get(url + "/metrics").text
        assert 'ember_requests_total{status="422"} 3.0' in text and 'ember_requests_total{status="200"} 1.0' in text
    finally:
        stop()


def test_a_reload_failing_with_any_error_is_rejected_and_watching_goes_on(two_models, monkeypatch):
    served, (a, _), (b, _) = two_models
    url, stop = serve.start_in_thread(served, watch_seconds=0.05)

    def metric(text):
        deadline = time.time() + 10
        while text not in httpx.get(url + "/metrics").text and time.time() < deadline:
            time.sleep(0.05)
        return text in httpx.get(url + "/metrics").text

    def broken(*args, **kwargs):
        raise TypeError("__init__() got an unexpected keyword argument 'widht'")

    try:
        first = httpx.get(url + "/v1/model").json()["version"]
        monkeypatch.setattr(serve.model, "load", broken)
        r = httpx.post(url + "/v1/reload")
        assert r.status_code == 422 and f"version {first} keeps serving: TypeError: __init__()" in r.json()["error"]
        replace_atomically(b, served)  # the watcher's reload fails the same way
        assert metric('ember_reloads_total{result="rejected"} 2.0')
        monkeypatch.undo()
        replace_atomically(a, served)  # a good file written later is picked up
        assert metric('ember_reloads_total{result="loaded"} 1.0')
        assert httpx.post(url + "/v1/predict", json={"inputs": np.zeros(SHAPE).tolist()}).json()["model_version"] > first
    finally:
        stop()


def _onnx_matmul(path, batch, reshape_to=None):
    """A (batch, 4) -> (batch, 3) ONNX model; ``reshape_to`` reshapes its input first (to a fixed shape)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3), "w")
    nodes, inits, x = [], [weight], "x"
    if reshape_to is not None:
        inits.append(numpy_helper.from_array(np.array(reshape_to, np.int64), "shape"))
        nodes.append(helper.make_node("Reshape", ["x", "shape"], ["r"]))
        x = "r"
    nodes.append(helper.make_node("MatMul", [x, "w"], ["y"]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 3])], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = min(proto.ir_version, 8)  # what every ONNX Runtime this project runs with reads
    onnx.save(proto, path)
    return path


def test_onnx_files_must_take_any_batch(tmp_path):
    pytest.importorskip("onnxruntime")
    fixed = _onnx_matmul(tmp_path / "fixed.onnx", 2)
    with pytest.raises(ValueError, match=r"fixed\.onnx: its input has a fixed batch of 2"):
        serve.load(fixed)
    reshaped = _onnx_matmul(tmp_path / "reshaped.onnx", "batch", reshape_to=[2, 4])  # symbolic, yet batch 2 only
    with pytest.raises(ValueError, match=r"reshaped\.onnx: the model does not run on a batch of 1"):
        serve.load(reshaped)
    model = serve.load(_onnx_matmul(tmp_path / "any.onnx", "batch"))
    x = np.arange(20, dtype=np.float32).reshape(5, 4)
    assert model.input_shape == (4,) and model.classes == 3
    np.testing.assert_allclose(model.predict(x), x @ np.arange(12, dtype=np.float32).reshape(4, 3))


def _softmax_models(tmp_path):
    """An nn.Sequential ending in nn.Softmax and a Keras Sequential ending in Dense(softmax), both
    with logits (0, ln 3) for every input -- probabilities (1/4, 3/4) -- saved; the first also
    exported to ONNX (an upper-case suffix)."""
    from ember import keras
    from ember import onnx as ember_onnx

    plain = nn.Sequential(nn.Linear(2, 2), nn.Softmax(1))
    dense = keras.Sequential([keras.layers.Dense(2, activation="softmax", input_shape=(2,))])
    with ember.no_grad():
        for linear in (plain[0], dense.layers[0].linear):
            linear.weight._data[:] = 0
            linear.bias._data[:] = [0.0, np.log(3.0)]
    paths = [tmp_path / "plain.safetensors", tmp_path / "keras.safetensors"]
    plain.save(paths[0], config={"input_shape": [2]})
    dense.save(paths[1], config={"input_shape": [2]})
    if importlib.util.find_spec("onnx") and importlib.util.find_spec("onnxruntime"):
        paths.append(ember_onnx.export(plain, np.zeros((1, 2), np.float32), tmp_path / "plain.ONNX",
                                       metadata={"ember.input": {"scale": 0.5, "mean": [1.0], "std": [2.0]}}))
    return paths


def test_a_model_ending_in_a_softmax_serves_its_logits_and_one_softmax(tmp_path):
    paths = _softmax_models(tmp_path)
    for path in paths:
        url, stop = serve.start_in_thread(path)
        try:
            def predict(output):
                r = httpx.post(url + "/v1/predict", json={"inputs": [[1.0, -2.0], [0.5, 3.0]], "output": output})
                assert r.status_code == 200, r.text
                return np.array(r.json()["outputs"])

            np.testing.assert_allclose(predict("logits"), [[0.0, np.log(3.0)]] * 2, rtol=1e-6, err_msg=str(path))
            np.testing.assert_allclose(predict("probabilities"), [[0.25, 0.75]] * 2, rtol=1e-6, err_msg=str(path))
            assert predict("classes").tolist() == [1, 1]
            info = httpx.get(url + "/v1/model").json()
            assert info["kind"] == ("onnx" if path.suffix == ".ONNX" else "ember")
            if info["kind"] == "onnx":  # what ember export records in the file
                assert info["input_normalisation"] == {"scale": 0.5, "mean": [1.0], "std": [2.0]}
        finally:
            stop()


def test_an_input_shape_contradicting_the_files_is_refused(two_models, capsys):
    from ember import cli

    served = two_models[0]
    with pytest.raises(ValueError, match=r"takes inputs of shape \(1, 8, 8\), but the input shape given "
                                         r"\(--input-shape\) is \(1, 4, 4\)"):
        serve.load(served, input_shape=(1, 4, 4))
    assert serve.load(served, input_shape=SHAPE).input_shape == SHAPE  # the same shape: nothing to refuse
    assert cli.main(["serve", str(served), "--input-shape", "1,4,4"]) == 2
    assert "but the input shape given (--input-shape) is (1, 4, 4)" in capsys.readouterr().err


def test_unknown_routes_and_wrong_methods_get_json_errors(server):
    r = httpx.get(server + "/v2/predict")
    assert r.status_code == 404 and r.headers["content-type"] == "application/json"
    assert "no route /v2/predict; the routes are POST /v1/predict" in r.json()["error"]
    r = httpx.get(server + "/v1/predict")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert r.json() == {"error": "GET /v1/predict: this route takes POST"}


def test_a_client_leaving_mid_body_is_no_model_failure(server):
    import socket

    host, port = server[len("http://"):].split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{\"inputs\": [")
        time.sleep(0.2)
    deadline = time.time() + 10
    while 'status="499"' not in httpx.get(server + "/metrics").text and time.time() < deadline:
        time.sleep(0.05)
    text = httpx.get(server + "/metrics").text
    assert 'ember_requests_total{status="499"} 1.0' in text and 'status="500"' not in text

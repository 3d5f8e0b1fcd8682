"""The HTTP service (Starlette on uvicorn; metrics by prometheus-client): routes, request parsing,
metrics, reloading."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import time
from pathlib import Path

import numpy as np

from ..nn.functional import softmax
from ..factories import tensor
from . import model as served
from .batcher import Batcher

OUTPUTS = ("logits", "probabilities", "classes")
# The status a request whose client disconnected before sending its whole body is counted under
# (nginx's "client closed request"); nothing is sent.
CLIENT_CLOSED = 499


class BadRequest(Exception):
    """A request the server refuses: status and message for the client."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _array_from(body: bytes, content_type: str, field: str = "inputs"):
    """(float32 inputs, requested output or None) of a request body."""
    if content_type in ("", "application/json"):
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(400, f"the body is not JSON: {exc}") from None
        except RecursionError:
            raise BadRequest(400, "the JSON body is nested too deeply") from None
        if not isinstance(data, dict) or field not in data:
            raise BadRequest(400, f'the JSON body must be an object with "{field}": nested lists of numbers')
        array = _json_numbers(data[field], field)
        output = data.get("output")
        if output is not None and output not in OUTPUTS:
            raise BadRequest(422, f'"output" must be one of {", ".join(OUTPUTS)}, got {output!r}')
        return array, output
    if content_type in ("application/x-npy", "application/octet-stream"):
        try:
            array = np.load(io.BytesIO(body), allow_pickle=False)
        except Exception as exc:  # NumPy's own errors for a damaged or non-.npy body
            raise BadRequest(400, f"the body is not a .npy array: {exc}") from None
    elif content_type == "application/x-safetensors":
        from safetensors.numpy import load as load_safetensors

        try:
            tensors = load_safetensors(body)
        except Exception as exc:  # safetensors' own error types
            raise BadRequest(400, f"the body is not safetensors: {exc}") from None
        if field not in tensors:
            raise BadRequest(422, f'the safetensors body must hold a tensor named "{field}", it holds '
                                  f"{sorted(tensors)}")
        array = tensors[field]
    else:
        raise BadRequest(415, f"content type {content_type!r}: send application/json, application/x-npy or "
                              "application/x-safetensors")
    if array.dtype.kind not in "fiu":
        raise BadRequest(422, f"inputs must be numbers, got dtype {array.dtype}")
    return array.astype(np.float32, copy=False), None


def _json_numbers(value, field: str) -> np.ndarray:
    """JSON ``value`` as a float32 array: nested lists of one shape whose every item is a JSON
    number -- not a string such as "1", nor true or false, which NumPy would turn into numbers."""
    one_shape = f'"{field}" must be nested lists of numbers of one shape'
    try:
        cells = np.array(value, dtype=object)
    except (ValueError, RecursionError):  # lists of different lengths, at some depth
        raise BadRequest(422, one_shape) from None
    for v in cells.flat:
        if type(v) not in (int, float):  # bool is an int to Python, not to JSON
            raise BadRequest(422, f"{one_shape}; " + ("its lists differ in length" if isinstance(v, list) else
                                                      f"found {json.dumps(v)[:40]}, which is not a JSON number"))
    try:
        return cells.astype(np.float32)
    except OverflowError:
        raise BadRequest(422, f'"{field}" holds a number too large for a float') from None


def _check_inputs(array, shape, max_rows):
    """The inputs as a (rows, *shape) batch: one input of the model's shape or a batch of them."""
    if tuple(array.shape) == tuple(shape):
        array = array[None]
    if array.ndim != len(shape) + 1 or tuple(array.shape[1:]) != tuple(shape):
        raise BadRequest(422, f"inputs have shape {tuple(array.shape)}; the model takes one input of shape "
                              f"{tuple(shape)} or a batch (N, {', '.join(map(str, shape))})")
    if len(array) == 0 or len(array) > max_rows:
        raise BadRequest(413 if len(array) else 422, f"a request holds 1 to {max_rows} inputs, this one "
                                                       f"{len(array)}")
    if not np.isfinite(array).all():
        raise BadRequest(422, "inputs must be finite (found NaN or infinity)")
    return np.ascontiguousarray(array)


class Server:
    """The state behind the routes: the batcher, the metrics, the model file and its reloads."""

    def __init__(self, path, *, max_batch=64, max_wait_ms=2.0, max_body_bytes=16 << 20, max_rows=1024,
                 input_shape=None, watch_seconds=None):
        try:
            import prometheus_client as prom
        except ImportError:
            raise ImportError("ember serve needs its extra: pip install 'ember[serve]'") from None
        self.path, self.input_shape = Path(path), input_shape
        self.max_body_bytes, self.max_rows, self.watch_seconds = max_body_bytes, max_rows, watch_seconds
        model = served.load(self.path, input_shape)
        self.registry = prom.CollectorRegistry()
        self.requests = prom.Counter("ember_requests", "Prediction requests by response status", ["status"],
                                     registry=self.registry)
        self.latency = prom.Histogram("ember_request_seconds", "Prediction latency (parse, queue, batch, reply)",
                                      buckets=(5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1, 0.25, 0.5, 1, 2.5),
                                      registry=self.registry)
        self.batch_size = prom.Histogram("ember_batch_size", "Inputs per model call",
                                         buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024), registry=self.registry)
        self.version = prom.Gauge("ember_model_version", "Version of the model serving", registry=self.registry)
        self.reloads = prom.Counter("ember_reloads", "Model reloads by result", ["result"], registry=self.registry)
        self.version.set(model.version)
        self.batcher = Batcher(model, max_batch=max_batch, max_wait=max_wait_ms / 1000, on_batch=self.batch_size.observe)
        self._reload_lock = None  # made in start(): an asyncio lock belongs to the server's loop
        self._mtime = self._file_mtime()
        self._watcher = None

    def _file_mtime(self):
        try:
            return self.path.stat().st_mtime_ns
        except OSError:
            return None

    async def reload(self) -> dict:
        """Load the model file again off the request path and, if it checks out, serve it from the next
        batch on; otherwise (whatever the error) keep the old one and say why."""
        async with self._reload_lock:
            old = self.batcher.model
            try:
                new = await asyncio.get_running_loop().run_in_executor(
                    None, lambda: served.load(self.path, self.input_shape, like=old))
            except Exception as exc:  # a file or a model that cannot serve, for whatever reason
                self.reloads.labels("rejected").inc()
                reason = exc if isinstance(exc, (ValueError, OSError, ImportError)) else f"{type(exc).__name__}: {exc}"
                raise BadRequest(422, f"the new model was not loaded; version {old.version} keeps serving: "
                                      f"{reason}") from None
            self.batcher.swap(new)
            self.version.set(new.version)
            self.reloads.labels("loaded").inc()
            self._mtime = self._file_mtime()
            return {"previous_version": old.version, **new.describe()}

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.watch_seconds)
            mtime = self._file_mtime()
            if mtime is not None and mtime != self._mtime:
                with contextlib.suppress(Exception):  # counted as rejected; the old model keeps serving
                    await self.reload()
                self._mtime = mtime

    async def start(self) -> None:
        self._reload_lock = asyncio.Lock()
        await self.batcher.start()
        if self.watch_seconds:
            self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
        await self.batcher.stop()

    async def predict(self, body: bytes, content_type: str, output: str | None):
        """The reply to one prediction request (its body already read; the caller counted it as
        arriving, and this stops counting it once it is queued or refused)."""
        try:
            inputs, output = self._parse(body, content_type, output)
        finally:
            self.batcher.arriving(-1)
        logits, used = await self.batcher.submit(inputs)
        bad = np.flatnonzero(~np.isfinite(logits).all(axis=1))
        if len(bad):  # JSON has no NaN or infinity, and a class or a probability from them means nothing
            rows = ", ".join(map(str, bad[:10])) + (", ..." if len(bad) > 10 else "")
            raise BadRequest(422, f"model version {used.version} gives outputs that are not finite (NaN or "
                                  f"infinity) for input(s) {rows} of this request: inputs too large for it?")
        if output == "classes":
            values = logits.argmax(axis=1)
        elif output == "probabilities":
            values = softmax(tensor(logits), 1).numpy()
        else:
            values = logits
        return {"model_version": used.version, "output": output, "outputs": values.tolist()}

    def _parse(self, body: bytes, content_type: str, output: str | None):
        if len(body) > self.max_body_bytes:
            raise BadRequest(413, f"the body has {len(body)} bytes; the limit is {self.max_body_bytes}")
        array, asked = _array_from(body, content_type)
        output = asked or output or "logits"
        if output not in OUTPUTS:
            raise BadRequest(422, f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")
        return _check_inputs(array, self.batcher.model.input_shape, self.max_rows), output


async def _body_within(request, limit: int) -> bytes:
    """The request's body, read as it streams in and refused (413) once it passes ``limit``
    bytes: a body sent without a Content-Length (chunked) is never held whole before the check."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest(413, f"the body has more than {limit} bytes; the limit is {limit}")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(path, **options):
    """The Starlette application serving the model file at ``path`` (see ``Server`` for options)."""
    try:
        from starlette.applications import Starlette
        from starlette.exceptions import HTTPException
        from starlette.requests import ClientDisconnect, Request
        from starlette.responses import JSONResponse, Response
        from starlette.routing import Route
    except ImportError:
        raise ImportError("ember serve needs its extra: pip install 'ember[serve]'") from None
    import prometheus_client as prom

    server = Server(path, **options)

    async def predict(request: Request):
        start = time.perf_counter()
        server.batcher.arriving(+1)  # until it is queued: a batch being gathered may wait for it
        counted = True
        try:
            content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
            declared = request.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > server.max_body_bytes:
                raise BadRequest(413, f"the body has {declared} bytes; the limit is {server.max_body_bytes}")
            body = await _body_within(request, server.max_body_bytes)
            counted = False  # server.predict stops counting it
            reply = await server.predict(body, content_type, request.query_params.get("output"))
            response = JSONResponse(reply, headers={"X-Model-Version": str(reply["model_version"])})
        except BadRequest as exc:
            server.requests.labels(str(exc.status)).inc()
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        except ClientDisconnect:  # the client went away before sending its whole body: nobody to answer
            server.requests.labels(str(CLIENT_CLOSED)).inc()
            return Response(status_code=CLIENT_CLOSED)
        except Exception as exc:  # the model failed: the client hears it, the server keeps serving
            server.requests.labels("500").inc()
            return JSONResponse({"error": f"the model failed on this batch: {type(exc).__name__}: {exc}"},
                                status_code=500)
        finally:
            if counted:
                server.batcher.arriving(-1)
        server.requests.labels("200").inc()
        server.latency.observe(time.perf_counter() - start)
        return response

    async def reload(request: Request):
        try:
            return JSONResponse(await server.reload())
        except BadRequest as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)

    async def model_info(request: Request):
        return JSONResponse(server.batcher.model.describe())

    async def healthz(request: Request):
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request):
        ready = server.batcher.running
        return JSONResponse({"ready": ready, "model_version": server.batcher.model.version},
                            status_code=200 if ready else 503)

    async def metrics(request: Request):
        return Response(prom.generate_latest(server.registry), media_type=prom.CONTENT_TYPE_LATEST)

    routes = [Route("/v1/predict", predict, methods=["POST"]),
              Route("/v1/reload", reload, methods=["POST"]),
              Route("/v1/model", model_info, methods=["GET"]),
              Route("/healthz", healthz, methods=["GET"]),
              Route("/readyz", readyz, methods=["GET"]),
              Route("/metrics", metrics, methods=["GET"])]
    known = ", ".join(f"{'/'.join(sorted(r.methods - {'HEAD'}))} {r.path}" for r in routes)

    async def http_error(request: Request, exc: HTTPException):
        """An unknown route (404) or a method a route does not take (405), in JSON like every other
        error."""
        if exc.status_code == 404:
            message = f"no route {request.url.path}; the routes are {known}"
        elif exc.status_code == 405:
            message = f"{request.method} {request.url.path}: this route takes {(exc.headers or {}).get('Allow', '')}"
        else:
            message = exc.detail
        return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await server.start()
        try:
            yield
        finally:
            await server.stop()

    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error}, lifespan=lifespan)
    app.state.server = server
    return app

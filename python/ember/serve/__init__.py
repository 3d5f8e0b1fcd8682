"""``ember serve``: an HTTP inference service for an Ember checkpoint or an ONNX file (the optional
extra ``ember[serve]``: Starlette on uvicorn, metrics by prometheus-client).

- ``POST /v1/predict``: inputs as JSON (``{"inputs": nested lists, "output": "logits" |
  "probabilities" | "classes"}``), ``.npy`` bytes (``application/x-npy``) or safetensors bytes
  (``application/x-safetensors``, a tensor named ``inputs``; ``?output=`` chooses the output); one
  input of the model's shape or a batch. The reply names the model version that computed it (also
  in the ``X-Model-Version`` header). A model that ends in a softmax is served without it:
  "logits" are its logits, "probabilities" one softmax of them. A bad request (JSON inputs that
  are not JSON numbers included), an unknown route or a wrong method is a 4xx whose JSON message
  says what is wrong; a client that leaves mid-body is counted as status 499, and answered nothing.
- ``POST /v1/reload``: load the model file again (a training run replaced it atomically), check it,
  and serve it from the next batch on; a file that fails the checks is reported and the old model
  keeps serving. ``--watch SECONDS`` does the same whenever the file changes.
- ``GET /v1/model``, ``GET /healthz``, ``GET /readyz``, ``GET /metrics`` (Prometheus text format:
  requests by status, latency and batch-size histograms, the model version, reloads).

Concurrent requests are batched dynamically (up to ``max_batch`` inputs, or what arrived within
``max_wait_ms`` of the first) and each batch runs on one worker thread that owns the model, so the
event loop never waits on a kernel.
"""

from __future__ import annotations

import threading

from .app import Server, create_app
from .model import ServedModel, load

__all__ = ["ServedModel", "Server", "create_app", "load", "run", "start_in_thread"]


def run(path, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info", access_log: bool = False,
        **options) -> None:
    """Serve the model file at ``path`` until interrupted (options: see ``Server``); ``access_log``
    logs every request (off: at thousands of requests a second the log costs more than the model)."""
    try:
        import uvicorn
    except ImportError:
        raise ImportError("ember serve needs its extra: pip install 'ember[serve]'") from None
    uvicorn.run(create_app(path, **options), host=host, port=port, log_level=log_level, access_log=access_log)


def start_in_thread(path, host: str = "127.0.0.1", port: int = 0, **options):
    """Serve from a background thread (for tests, benchmarks and programs that embed the server):
    returns ``(base URL, stop)``; ``port=0`` picks a free port."""
    import uvicorn

    app = create_app(path, **options)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="ember-serve", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"the server did not start on {host}:{port}")
        threading.Event().wait(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]

    def stop():
        server.should_exit = True
        thread.join(timeout=10)

    return f"http://{host}:{bound}", stop

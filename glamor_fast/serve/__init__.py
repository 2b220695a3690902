"""An HTTP server for emotion recognition that batches the faces of concurrent requests.

``glamor-fast serve CKPT`` (``cli/serve.py``) runs it; the optional extra ``pip install
".[serve]"`` brings FastAPI, uvicorn and python-multipart. Pieces: ``engine`` (the model and
the detector; ``Engine.recognize`` is the one call into the model), ``batcher`` (dynamic
batching across requests), ``uploads`` and ``params`` (what a request carries), ``limits``
(what it may ask, and the JSON errors), ``app`` (the endpoints), ``server`` (uvicorn, SIGTERM).
"""
from .batcher import DynamicBatcher
from .engine import Engine
from .limits import ApiError, Limits

__all__ = ["ApiError", "DynamicBatcher", "Engine", "Limits", "ServeSettings", "create_app", "serve"]


def __getattr__(name):  # the FastAPI/uvicorn parts load only when asked for (they need the extra)
    if name in ("create_app", "ServeSettings"):
        from . import app

        return getattr(app, name)
    if name == "serve":
        from .server import serve

        return serve
    raise AttributeError(name)

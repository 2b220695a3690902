"""Run the app with uvicorn on a socket bound here, and stop it cleanly on SIGTERM or Ctrl-C.

``bind(host, port)`` makes the listening socket (port 0: any free port) before the model is
loaded, so a taken port is reported at once; ``serve(app, sock)`` calls ``on_ready()`` once
uvicorn accepts connections, then serves until SIGTERM/SIGINT: uvicorn stops accepting
connections, lets the requests in flight finish (at most ``drain_s`` seconds), runs the app's
shutdown (the batcher finishes its queue) and ``serve`` returns. Uvicorn re-raises the signal it
caught once it is done; the handlers installed here absorb it, so the process exits with 0.
"""
from __future__ import annotations

import signal
import socket
from typing import Callable, Optional

import uvicorn


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port); OSError names the address when it is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {(exc.strerror or str(exc)).lower()}") from None
    sock.listen(2048)
    return sock


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, on_ready: Optional[Callable[[], None]]):
        super().__init__(config)
        self._on_ready = on_ready

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets=sockets)
        if self.started and self._on_ready is not None:
            self._on_ready()


def serve(app, sock: socket.socket, drain_s: float = 60.0, on_ready: Optional[Callable[[], None]] = None,
          log_level: str = "warning") -> int:
    """Serve ``app`` on the bound ``sock`` until SIGTERM or SIGINT; returns 0 after draining."""
    config = uvicorn.Config(app, log_level=log_level, timeout_graceful_shutdown=drain_s, lifespan="on",
                            access_log=False, timeout_keep_alive=30)
    server = _Server(config, on_ready)
    caught: list[int] = []
    previous = {sig: signal.signal(sig, lambda s, f: caught.append(s)) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0

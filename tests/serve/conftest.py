"""Servers for the serve tests: in-process uvicorn on 127.0.0.1, a free port, stopped at the end."""
from __future__ import annotations

import http.client
import json
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from tests.tiny_training import tiny_checkpoint  # noqa: E402


@dataclass
class Reply:
    status: int
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body)

    def lines(self) -> list:
        return [json.loads(line) for line in self.body.decode().splitlines() if line.strip()]


class Client:
    """A small HTTP/1.1 client (stdlib) for one server."""

    def __init__(self, port: int):
        self.port = port

    def request(self, method: str, path: str, body: bytes = None, headers: dict = None, timeout: float = 60) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            conn.close()

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def post(self, path: str, body: bytes, content_type: str = "application/octet-stream", **kw) -> Reply:
        return self.request("POST", path, body, {"Content-Type": content_type}, **kw)

    def post_file(self, path: str, data: bytes, filename: str, content_type: str) -> Reply:
        boundary = "glamor-test-boundary"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
                f"Content-Type: {content_type}\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
        return self.post(path, body, f"multipart/form-data; boundary={boundary}")


@contextmanager
def running_server(engine, **settings):
    """An app on 127.0.0.1 (free port) in a thread; yields a Client; stops and joins on exit."""
    import uvicorn

    from glamor_fast.serve import ServeSettings, create_app
    from glamor_fast.serve.server import bind

    app = create_app(engine, ServeSettings(**settings))
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.01)
    try:
        yield Client(sock.getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@pytest.fixture(scope="session")
def ckpt(tmp_path_factory):
    """An untrained GLAMOR-Net checkpoint (the server needs no training)."""
    return tiny_checkpoint(tmp_path_factory.mktemp("serve_ckpt"))


@pytest.fixture(scope="session")
def engine(ckpt):
    from glamor_fast.serve import Engine

    return Engine(ckpt, device="cpu", backend="cpp")


@pytest.fixture(scope="module")
def client(engine, tmp_path_factory):
    """A server with the default limits; video uploads are decoded under ``client.tmp_dir``."""
    tmp_dir = tmp_path_factory.mktemp("uploads")
    with running_server(engine, max_batch=16, max_wait_ms=20, tmp_dir=str(tmp_dir)) as c:
        c.tmp_dir = tmp_dir
        yield c

"""Run a node app with uvicorn: in the foreground (the CLI) or on a background thread (tests, evaluation)."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn
from fastapi import FastAPI

from rag.errors import RagError

__all__ = ["BackgroundServer", "start_background_server"]


class BackgroundServer:
    """A uvicorn server on its own thread, bound before it starts (port 0 picks a free one)."""

    def __init__(self, app: FastAPI, host: str, port: int):
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._socket.bind((host, port))
        except OSError as exc:
            self._socket.close()
            raise RagError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        self.host, self.port = host, self._socket.getsockname()[1]
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RagError(f"the node server on {self.url} did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)
        self._socket.close()


def start_background_server(app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> BackgroundServer:
    return BackgroundServer(app, host, port).start()

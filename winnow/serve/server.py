"""Run the app on uvicorn. The socket is bound here (port 0 picks a free one) so that the bound port can
be written to ``port_file`` once the server is ready (models loaded, accepting connections)."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

from winnow.errors import MissingDependencyError
from winnow.serve.settings import ServeSettings

log = logging.getLogger(__name__)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host.strip("[]"), port))
    sock.set_inheritable(True)
    return sock


def run(settings: ServeSettings, *, port_file: Path | None = None) -> None:
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as exc:
        raise MissingDependencyError(
            f"winnow serve needs fastapi and uvicorn ({exc.name or exc} is missing): pip install 'winnow[serve]'"
        ) from None

    from winnow.serve.app import create_app

    sock = bind(settings.host, settings.port)
    port = sock.getsockname()[1]
    app = create_app(settings)
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=10)

    class Server(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets=sockets)
            if self.started:
                print(f"winnow serving {settings.home} at http://{settings.host}:{port} (docs: /docs)", flush=True)
                if port_file is not None:
                    tmp = port_file.with_name(port_file.name + ".tmp")
                    tmp.write_text(str(port), encoding="utf-8")
                    os.replace(tmp, port_file)

    Server(config).run(sockets=[sock])

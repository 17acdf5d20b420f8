"""Composition root: settings from the environment, telemetry, uvicorn serving the app."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Iterator

import uvicorn

from switchboard.common import telemetry

from .app import create_app
from .config import Settings

log = logging.getLogger(__name__)

GRACE_SECONDS = 5
# How long an idle keep-alive connection stays open: longer than the proxy in front keeps
# its idle upstream connections (Envoy's edge cluster and Istio's DestinationRule: 60 s), so
# the proxy closes first and never sends a request down a connection uvicorn is closing
# (uvicorn's default of 5 s made that a 503 under bursty load).
KEEP_ALIVE_SECONDS = 75


class EdgeServer(uvicorn.Server):
    """uvicorn, plus a `ready` log line, SSE draining on shutdown and a clean exit."""

    def __init__(self, config: uvicorn.Config, draining: asyncio.Event, planner: str) -> None:
        super().__init__(config)
        self.draining = draining
        self.planner = planner

    @property
    def port(self) -> int:
        """The bound port, which differs from the configured one when that was 0."""
        sock = self.servers[0].sockets[0]
        return int(sock.getsockname()[1])

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            fields = {"host": self.config.host, "port": self.port, "planner": self.planner}
            log.info("ready", extra={"fields": fields})

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Open SSE streams would hold the shutdown for the whole grace period; end them
        # now and let their clients resume elsewhere with Last-Event-ID.
        self.draining.set()
        await super().shutdown(sockets)
        log.info("stopped")

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn's own version re-raises the signal after the graceful shutdown, turning
        # a clean drain into death by SIGTERM; the loop's handlers just ask it to exit.
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        try:
            yield
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)


def build_server(settings: Settings) -> EdgeServer:
    draining = asyncio.Event()
    app = create_app(settings, draining=draining)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        # The edge's own access line (middleware.Observe) is structured; uvicorn's is not.
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=GRACE_SECONDS,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )
    return EdgeServer(config, draining, settings.planner_address)


def main() -> None:
    settings = Settings.from_env(os.environ)
    telemetry.setup("edge", settings.log_level)
    build_server(settings).run()

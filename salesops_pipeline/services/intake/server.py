"""Serving the intake to the outside world: slow or flooding clients cannot hold it, and every
delivery leaves one log line formatted like uvicorn's own."""

import asyncio
import copy
import logging

import uvicorn
from uvicorn.config import LOGGING_CONFIG
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# A client must send a request's headers within this; one trickling them byte by byte would
# otherwise hold a connection for ever.
HEADER_READ_TIMEOUT_SECONDS = 10.0
KEEP_ALIVE_SECONDS = 5
# Beyond this many connections at once, new ones get 503 rather than exhausting the process.
MAX_CONCURRENT_CONNECTIONS = 500
LOG_LEVELS = ("debug", "info", "warning", "error")


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol (httptools, the fast parser), closing connections whose
    request headers are too slow."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        in_progress = self.cycle is not None and not self.cycle.response_complete
        if in_progress and self._header_timer is not None:
            # The request line and headers are in: the body has its own timeout.
            self._header_timer.cancel()
            self._header_timer = None

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_timer()  # the next request on a kept-alive connection

    def connection_lost(self, exc: Exception | None) -> None:
        if getattr(self, "_header_timer", None) is not None:
            self._header_timer.cancel()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        if getattr(self, "_header_timer", None) is not None:
            self._header_timer.cancel()
        self._header_timer = self.loop.call_later(HEADER_READ_TIMEOUT_SECONDS, self._too_slow)

    def _too_slow(self) -> None:
        self._header_timer = None
        if self.cycle is None or self.cycle.response_complete:
            logging.getLogger("salesops.intake").warning(
                "connection closed: request headers not received within %.0fs",
                HEADER_READ_TIMEOUT_SECONDS,
            )
            self.transport.close()


def log_config(level: str) -> dict:
    """uvicorn's logging, with the intake's own logger beside it, at `level`."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["salesops"] = {"handlers": ["default"], "level": level.upper()}
    config["loggers"]["uvicorn"]["level"] = level.upper()
    return config


def intake_config(app, *, host: str, port: int, log_level: str = "info") -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=HeaderTimeoutProtocol,
        loop="uvloop",
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        limit_concurrency=MAX_CONCURRENT_CONNECTIONS,
        log_config=log_config(log_level),
        log_level=log_level,
        access_log=False,
    )


def serve_intake(app, *, host: str, port: int, log_level: str = "info") -> None:
    uvicorn.Server(intake_config(app, host=host, port=port, log_level=log_level)).run()

"""The ``Server-Timing`` response header: how long the server took to answer (W3C Server Timing).

Every HTTP response gets ``Server-Timing: app;dur=<ms>``, the time from the request reaching the
application to the start of the response (routing, queueing for a worker thread, the database,
the assessment and rendering), measured with :func:`time.perf_counter`. Browsers show it in
their developer tools; ``benchmarks/bench_web.py`` reads it as the server-side latency.
"""

from __future__ import annotations

import time

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class ServerTimingMiddleware:
    """ASGI middleware adding ``Server-Timing: app;dur=<milliseconds>`` to HTTP responses."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                elapsed_ms = 1000.0 * (time.perf_counter() - start)
                MutableHeaders(scope=message).append("Server-Timing", f"app;dur={elapsed_ms:.1f}")
            await send(message)

        await self.app(scope, receive, timed_send)

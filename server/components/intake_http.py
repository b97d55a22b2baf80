"""The citizen intake's own HTTP listener: its own thread, its own event loop, its own uvicorn.

Why: under the whole city's polling the server's main event loop stalls (0.5–1.5 s at full Dijon), and a
report answered there waits for the stall whatever little work it is (1–2 ms). Served here, a report never
touches the main loop::

    main event loop (API, hub flusher, components)     thread "intake-http" (its own event loop)
    ──────────────────────────────────────────────     ─────────────────────────────────────────────────
                                                       uvicorn on settings intake.listen (TLS: the API's)
                                                         │ POST /api/v1/reports · POST /reports/{ref}/photos
                                                         │ GET /reports/{ref}   (server.api.create_intake_app)
                                                         ▼
                                                       Intake.enqueue ──► thread "intake-writer" (group commit)
                                                         ▲ its future answered   │ WorkOrders.open_or_attach
                                                         └───────────────────────┤ (under the store's lock)
    hub flusher ◄── Hub.on_workorders (the hub's lock) ◄── the store's listener ──┘ (the writer's thread)
    /health "intake", system alarm ◄── call_soon_threadsafe ── the listener stopped by itself

What the routes touch from this thread, and why it is safe: the intake's channels and token buckets (the
config and the bucket table are replaced whole by a reload; a bucket takes its own lock), its two SQLite
files (every use under ``Intake.lock``, connections shared across threads), the work-order store (its own
lock: the writer thread and the main loop's workers already share it), the photo files (the crews' path,
one file per content hash), the hub (``on_workorders`` takes the hub's lock; its flusher sends on the main
loop). The only hand-over to the main loop is :meth:`IntakeListener._failed`, by ``call_soon_threadsafe``:
the system-alarm sink is used on the main loop.

What this isolates, measured: a main loop that is *blocked* (sleeping, waiting on I/O or in C code that lets
the GIL go) no longer delays a report (tests/workorders/test_intake_listener.py: answered in tens of ms within a
1.5 s block). A main loop that is *busy in Python* still slows it: the threads of one process share the GIL, each of
a report's many hand-overs (socket, validation, the writer thread, every SQLite call) waits up to the
interpreter's switch interval (5 ms) for it. Beyond that, the intake needs a process of its own (docs/workorders.md).

The main API keeps serving the same routes (an intake channel may use either): only this listener is
independent of the main loop's blocking. In a failover pair a report answered here does not wait for the
standby's copy (the main API's operator actions do): its order reaches the standby with the next frames.

Lifecycle: started by the work-order component when the settings give ``intake.listen`` and intake.yaml
exists, stopped before the intake closes. ``/health`` shows it as subsystem ``intake`` (its URL); a bind
failure at start or a listener that stops by itself is ``down`` with the reason and the P2 system alarm
``system.workorders.intake_down`` (the work orders and the main API's routes go on).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import socket
import ssl
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import uvicorn

from server.components.loopthread import start_loop_thread, stop_loop_thread

if TYPE_CHECKING:
    import threading

    from server.app import ScadaServer
    from server.settings import Listen

log = logging.getLogger(__name__)

STATUS = "intake"  # the /health subsystem
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0


class _Server(uvicorn.Server):
    """uvicorn without its signal handling: the process's signals are the main loop's (server.main)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class IntakeListener:
    """One uvicorn serving ``app`` on ``listen`` from its own thread and event loop (see the module picture)."""

    def __init__(self, server: ScadaServer, app: Any, listen: Listen) -> None:
        self.server = server
        settings = server.settings
        kwargs: dict[str, Any] = {"log_level": "warning", "access_log": False, "lifespan": "off",
                                  "timeout_graceful_shutdown": 3, "server_header": False,
                                  # as the main API (server.main): forwarded headers only from the listed proxies
                                  "proxy_headers": bool(settings.http.trusted_proxies),
                                  "forwarded_allow_ips": list(settings.http.trusted_proxies)}
        if settings.tls is not None:
            kwargs |= {"ssl_certfile": str(settings.tls.cert), "ssl_keyfile": str(settings.tls.key)}
            if settings.tls.client_ca is not None:
                kwargs |= {"ssl_ca_certs": str(settings.tls.client_ca), "ssl_cert_reqs": ssl.CERT_REQUIRED}
        self.web = _Server(uvicorn.Config(app, host=listen.host, port=listen.port, **kwargs))
        self.listen = listen
        self.url = ""
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.serving: concurrent.futures.Future[None] | None = None
        self.main_loop: asyncio.AbstractEventLoop | None = None
        self.stopping = False

    async def start(self) -> str:
        """Start the thread and the listener; its URL once it accepts connections. OSError (the address is
        taken...) or RuntimeError (not listening within START_TIMEOUT_S): nothing is left running."""
        self.main_loop = asyncio.get_running_loop()
        # bound here, so a taken address is this OSError (uvicorn's own bind would sys.exit its thread's loop)
        family = socket.AF_INET6 if ":" in self.listen.host else socket.AF_INET
        sock = socket.create_server((self.listen.host, self.listen.port), family=family)
        try:
            self.loop, self.thread = start_loop_thread("intake-http")
        except BaseException:
            sock.close()
            raise
        self.serving = asyncio.run_coroutine_threadsafe(self.web.serve(sockets=[sock]), self.loop)
        self.serving.add_done_callback(self._ended)
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                while not self.web.started:
                    if self.serving.done():
                        self.serving.result()  # its failure: raise it
                        raise RuntimeError(f"intake listener on {self.listen.host}:{self.listen.port} ended at start")
                    await asyncio.sleep(0.02)
        except BaseException:
            await self.aclose()
            raise
        port = int(sock.getsockname()[1])
        self.url = f"{self.server.settings.scheme}://{self.listen.host}:{port}"
        log.info("server: citizen intake on %s (its own thread and event loop)", self.url)
        return self.url

    async def aclose(self) -> None:
        """Stop accepting, let the requests in progress finish (uvicorn's graceful 3 s), stop the thread."""
        self.stopping = True
        self.web.should_exit = True
        if self.serving is not None:
            with contextlib.suppress(Exception):  # its own failure was reported by _ended; stop the thread anyway
                await asyncio.wait_for(asyncio.wrap_future(self.serving), STOP_TIMEOUT_S)
        await stop_loop_thread(self.loop, self.thread)
        self.loop = self.thread = self.serving = None

    def _ended(self, fut: concurrent.futures.Future[None]) -> None:
        """The serve coroutine returned (the intake thread): unless asked to, that is a failure for the main loop
        to report (health and system alarm are used there: the one hand-over, call_soon_threadsafe)."""
        if self.stopping or self.main_loop is None or not self.web.started:
            return  # a stop, or a start failure that start() raises itself
        exc = None if fut.cancelled() else fut.exception()
        why = f"stopped by itself: {exc!r}" if exc is not None else "stopped by itself"
        with contextlib.suppress(RuntimeError):  # the main loop is closed: the process is going away anyway
            self.main_loop.call_soon_threadsafe(self._failed, why)

    def _failed(self, why: str) -> None:
        report_down(self.server, f"{self.url or self.listen.host}: {why}")


def report_down(server: ScadaServer, why: str) -> None:
    """Fail loud (on the main loop): /health ``intake`` down with the reason, and the P2 system alarm."""
    log.error("citizen intake listener down: %s (the main API still takes reports)", why)
    server.status(STATUS).set("down", why)
    sink = server.system_alarms
    if sink is not None:
        sink.raise_("workorders", "intake_down", active=True, detail=why[:300])


def report_up(server: ScadaServer, url: str) -> None:
    server.status(STATUS).set("ok", url)
    sink = server.system_alarms
    if sink is not None:
        sink.raise_("workorders", "intake_down", active=False)

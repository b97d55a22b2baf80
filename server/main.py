"""Run the server process: uvicorn on the configured address, signals, state file.

    serve(settings)  build ScadaServer (server.app), check the city (ConfigError: every problem) → open it →
                     uvicorn with the FastAPI app (server.api: logins from here) → start its components
                     (server.assemble) → write server.json (pid, URL) → wait for SIGTERM/SIGINT (SIGHUP:
                     reload) → stop HTTP → stop components in reverse → remove server.json
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import ssl
import time
from collections.abc import Awaitable, Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn

from scada.errors import ConfigError
from server import assemble
from server.api import create_app
from server.app import ScadaServer
from server.settings import ServerSettings

if TYPE_CHECKING:
    from scada.config import CityConfig

log = logging.getLogger(__name__)


class _Uvicorn:
    """uvicorn.Server without its own signal handling: this process handles SIGTERM/SIGINT itself."""

    def __init__(self, app: Any, settings: ServerSettings, sock: Any = None) -> None:
        kwargs: dict[str, Any] = {"log_level": "warning", "access_log": False, "lifespan": "off",
                                  "ws_max_size": 1 << 20, "timeout_graceful_shutdown": 3,
                                  # X-Forwarded-For/-Proto believed from the listed proxies only (uvicorn's
                                  # own default trusts 127.0.0.1): else the client address is the TCP peer
                                  "proxy_headers": bool(settings.http.trusted_proxies),
                                  "forwarded_allow_ips": list(settings.http.trusted_proxies),
                                  "server_header": False}
        if settings.tls is not None:
            kwargs["ssl_certfile"] = str(settings.tls.cert)
            kwargs["ssl_keyfile"] = str(settings.tls.key)
            if settings.tls.client_ca is not None:
                kwargs["ssl_ca_certs"] = str(settings.tls.client_ca)
                kwargs["ssl_cert_reqs"] = ssl.CERT_REQUIRED
        config = uvicorn.Config(app, host=settings.listen.host, port=settings.listen.port, **kwargs)

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Any:
                yield

        self.server = Server(config)
        self.sock = sock

    @property
    def port(self) -> int:
        for srv in getattr(self.server, "servers", []):
            for s in srv.sockets:
                return int(s.getsockname()[1])
        return 0

    async def serve(self) -> None:
        await self.server.serve(sockets=[self.sock] if self.sock is not None else None)

    def stop(self) -> None:
        self.server.should_exit = True


async def serve(settings: ServerSettings, endpoint_overrides: dict[str, str] | None = None,
                ready: Callable[[ScadaServer, str], Awaitable[None] | None] | None = None,
                install_signals: bool = True, on_stop: Callable[[], None] | None = None,
                skip: Collection[str] = (), config: CityConfig | None = None) -> int:
    """Run the server until SIGTERM/SIGINT (or ``server.stop_event``). ConfigError if the city is invalid.
    ``skip``: components left out (server.assemble), e.g. a benchmark that feeds the tag database itself.
    ``config``: the city already checked by the caller (not loaded a second time).

    The API listens as soon as the stores and the tag database are open, before the components start: a login
    and /health ("starting") answer meanwhile, a subsystem not up yet answers 503 (server.routes.deps); the
    server state file, the signal handlers and ``ready`` come once every component has started."""
    server = ScadaServer(settings, endpoint_overrides)
    if config is None:
        config, problems = server.check_config()
        if problems or config is None:
            raise ConfigError(problems)
    server.open(config)
    web = _Uvicorn(create_app(server), settings)
    loop = asyncio.get_running_loop()
    web_task = asyncio.create_task(web.serve(), name="http")
    try:
        while not web.server.started:
            if web_task.done():
                web_task.result()  # bind failure: raise it
                raise OSError(f"HTTP server on {settings.listen.host}:{settings.listen.port} did not start")
            await asyncio.sleep(0.02)
        url = f"{settings.scheme}://{settings.listen.host}:{web.port}"
        server.status("api").set("ok", url)
        log.info("server: API on %s (OpenAPI at %s/docs), data in %s; starting the components", url, url,
                 settings.data_dir)
        await assemble.start(server, config, skip=skip, opened=True)
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, server.stop_event.set)
            loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(
                server.reload("local", "SIGHUP")))
        write_state(settings.data_dir, url)
        if ready is not None:
            res = ready(server, url)
            if asyncio.iscoroutine(res):
                await res
        stop = asyncio.create_task(server.stop_event.wait())
        await asyncio.wait({stop, web_task}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
    finally:
        log.info("server: stopping")
        if on_stop is not None:  # e.g. `scada run` closes the HMI before the server goes away
            with contextlib.suppress(Exception):  # the caller's hook must not keep the server from stopping
                on_stop()
        web.stop()
        with contextlib.suppress(Exception):  # the web task's own failure was logged by uvicorn; stop the rest anyway
            await asyncio.wait_for(web_task, timeout=10)
        await assemble.stop(server)
        clear_state(settings.data_dir)
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        log.info("server: stopped")
    return 0


def write_state(data_dir: Path, url: str) -> None:
    """``server.json``: how ``scada reload`` finds the running server (pid for SIGHUP, URL for the API)."""
    path = data_dir / "server.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "url": url, "started_ms": time.time_ns() // 1_000_000}))
    tmp.replace(path)


def clear_state(data_dir: Path) -> None:
    with contextlib.suppress(OSError):
        state = json.loads((data_dir / "server.json").read_text())
        if state.get("pid") == os.getpid():
            (data_dir / "server.json").unlink()

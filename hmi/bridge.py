"""The bridge: the ONE place of the console that knows about networking and threads.

    GUI thread (Qt)                               worker thread (asyncio loop, started by Bridge.start)
    ───────────────                               ─────────────────────────────────────────────────────
    bridge.request("GET", path) ──► Reply ───────► httpx.AsyncClient  (Bearer token, X-Workstation)
          reply.finished(reply) ◄── queued signal ◄─┘   401 token_invalid → log in again once, retry
    bridge.set_channel("city", sub) ─────────────► WebSocket per channel: hello → subscribe → snapshot
                                                   then deltas every 100 ms ("seq" gap → resubscribe)
          dataReady ◄── queued signal, at most ◄── rows coalesced by tag name, alarm events in order,
          bridge.take() → Updates                  work-order events by id (+ "read the list again" after
                                                   a snapshot; + "read GET /config again" after a snapshot
                                                   of a reload or a reconnection); one pending wake-up
    connectionChanged(state, detail) ◄──────────── online / reconnecting (data stale) / offline

Reconnection: when a channel drops (server restart, network), the state becomes ``reconnecting``
at once (every view shows its data as stale), the worker retries with back-off (0.5 s → 5 s), logs
in again with the remembered credentials when the server forgot the token (a restart), resubscribes
and gets a fresh snapshot; the state returns to ``online`` when every channel is back.

Sessions end, they are never stretched silently: the remembered credentials are used again only to
renew a session that has not expired, as the same role (a server restart forgets every token; an
account changed by an administrator refuses the old password or answers with another role).
Everything else ends the session —
state ``logged_out`` with the reason, every channel closed, token and credentials forgotten — and
the console asks for a password (:class:`hmi.mainwindow.MainWindow` shows the login dialog):

    401 token_invalid / unauthenticated ──► expiry passed?          ─yes─► logged_out "session expired"
                                            log in again with the
                                            remembered credentials ─refused─► logged_out "…: log in again"
                                            another role than before ──────► logged_out "role changed"
                                                  │ same role
                                                  ▼ carry on (a server restart)
    401 session_idle (REST) ─────────────────────────────────────────────► logged_out "session idle…"
    logout() (the operator)  ────────────────────────────────────────────► logged_out "logged out"

Nothing else in ``hmi`` imports httpx or websockets; widgets and models never see a socket, and
everything the bridge emits is delivered in the GUI thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import websockets
from PyQt6 import sip
from PyQt6.QtCore import QCoreApplication, QEventLoop, QObject, pyqtSignal, pyqtSlot

from scada.i18n import _

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
MAX_ALARM_EVENTS = 20_000  # pending between two GUI wake-ups; beyond that we ask for a fresh snapshot


class Reply(QObject):
    """One HTTP request's answer, delivered in the GUI thread by ``finished(self)``."""

    finished = pyqtSignal(object)

    def __init__(self, method: str, path: str) -> None:
        super().__init__()
        self.method = method
        self.path = path
        self.status = 0
        self.data: Any = None
        self.error = ""  # transport error or the server's "why"
        self.code = ""  # the server's machine-readable code
        self.done = False
        self.timing: tuple[float, float] = (0.0, 0.0)  # (waiting for the worker, request) seconds

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def why(self) -> str:
        if self.ok:
            return ""
        return self.error or _("HTTP {status}").format(status=self.status)

    def then(self, receiver: QObject, slot: Callable[..., object]) -> Reply:
        """``slot(self)`` once answered, unless ``receiver`` (the widget that asked) was deleted meanwhile: closed, or
        its window built again in another language (hmi.window_host). Qt drops a bound method's connection with its
        object by itself; a lambda or a closure (an answer that needs more than the reply) needs this guard."""

        def deliver(reply: Reply) -> None:
            if not sip.isdeleted(receiver):
                slot(reply)

        self.finished.connect(deliver)
        return self


@dataclass(slots=True)
class Updates:
    """What arrived since the last ``take()`` (rows coalesced by name, the latest value wins)."""

    rows: dict[str, list[Any]] = field(default_factory=dict)
    snapshots: list[str] = field(default_factory=list)  # channels that sent a snapshot
    alarm_snapshot: list[dict[str, Any]] | None = None
    alarm_events: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)  # server errors worth showing
    workorders: dict[str, dict[str, Any]] = field(default_factory=dict)  # order events, the last state per id
    # a channel subscribed to work orders sent a snapshot (subscribed, resubscribed after a reconnection, a
    # slow consumer's resync): events may have been missed before it, so the list is read again (GET /workorders)
    workorders_resync: bool = False
    # the configuration may have changed: a snapshot after a reload (reason "reload"), or after a reconnection
    # (the server may have restarted on other files): the console reads GET /config again (its language, zone)
    config_changed: bool = False

    def __bool__(self) -> bool:
        return bool(self.rows or self.snapshots or self.alarm_snapshot is not None or self.alarm_events
                    or self.messages or self.workorders or self.workorders_resync or self.config_changed)


@dataclass(slots=True)
class _Channel:
    name: str
    sub: dict[str, Any]
    ws: Any = None
    seq: int = 0
    online: bool = False
    ever_online: bool = False
    task: asyncio.Task[None] | None = None


class Bridge(QObject):
    """See the module docstring. Create in the GUI thread, ``start()``, ``login()``, then use."""

    connectionChanged = pyqtSignal(str, str)  # online | connecting | reconnecting | offline | logged_out; detail
    dataReady = pyqtSignal()
    loggedIn = pyqtSignal(dict)  # {user, role, ...} after every successful (re)login
    _replyDone = pyqtSignal(object, int, object, str, str)
    _wake = pyqtSignal()
    _state = pyqtSignal(str, str)
    _login = pyqtSignal(dict)

    def __init__(self, url: str, workstation: str | None = None, parent: QObject | None = None,
                 timeout_s: float = 15.0) -> None:
        super().__init__(parent)
        self.url = url.rstrip("/")
        self.ws_url = ("wss:" if self.url.startswith("https") else "ws:") + self.url.split(":", 1)[1] + PREFIX + "/ws"
        self.workstation = workstation or os.environ.get("SCADA_WORKSTATION") or socket.gethostname()
        self.timeout_s = timeout_s
        self.state = "offline"
        self.token = ""
        self._credentials: tuple[str, str] | None = None  # kept in memory only, to log in again after a restart
        self._login_info: dict[str, Any] = {}  # the last login's answer without its token
        self._channels: dict[str, _Channel] = {}
        self._wanted: set[str] = set()  # channel names asked for (GUI thread), under _lock
        self._lock = threading.Lock()
        self._pending = Updates()
        self._woken = False
        self._inflight: set[Reply] = set()
        self._tasks: set[asyncio.Future[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: httpx.AsyncClient | None = None
        self._login_lock: asyncio.Lock | None = None
        self._stopping = False
        self.snapshot_at: dict[str, float] = {}  # first snapshot per channel (perf_counter), for benchmarks
        self.stats = {"messages": 0, "rows": 0, "bytes": 0, "reconnects": 0, "resyncs": 0, "relogins": 0}
        self._replyDone.connect(self._deliver)
        self._wake.connect(self._on_wake)
        self._state.connect(self._on_state)
        self._login.connect(self.loggedIn)

    # ------------------------------------------------------------------ lifecycle (GUI thread)
    def start(self) -> None:
        if self._thread is not None:
            return
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            self._login_lock = asyncio.Lock()
            self._client = httpx.AsyncClient(base_url=self.url, timeout=self.timeout_s,
                                             headers={"X-Workstation": self.workstation[:64]})
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._client.aclose())
                loop.close()

        self._thread = threading.Thread(target=run, name="hmi-bridge", daemon=True)
        self._thread.start()
        ready.wait(10)

    def stop(self) -> None:
        """Close every channel and the HTTP client; join the worker thread."""
        if self._loop is None or self._thread is None:
            return
        self._stopping = True
        fut = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        with contextlib.suppress(Exception):  # closing: a failed or slow shutdown must not keep the console open
            fut.result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._thread = None
        self._loop = None

    async def _shutdown(self) -> None:
        for ch in list(self._channels.values()):
            if ch.task is not None:
                ch.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await ch.task
        self._channels.clear()

    @property
    def running(self) -> bool:
        return self._loop is not None and not self._stopping

    def retarget(self, url: str) -> None:
        """Talk to another server from now on (the failover pair's new active: hmi.failover): every channel
        reconnects there at once and logs in again with the remembered credentials (a token is one server's)."""
        url = url.rstrip("/")
        loop = self._loop
        if url == self.url or loop is None:
            return
        self.url = url
        self.ws_url = ("wss:" if url.startswith("https") else "ws:") + url.split(":", 1)[1] + PREFIX + "/ws"

        def switch() -> None:
            if self._client is not None:
                self._client.base_url = httpx.URL(url)
            self.token = ""
            for ch in self._channels.values():
                if ch.task is not None:
                    ch.task.cancel()
                ch.task = asyncio.ensure_future(self._run_channel(ch))

        loop.call_soon_threadsafe(switch)

    # ------------------------------------------------------------------ public API (GUI thread)
    def login(self, user: str, password: str) -> Reply:
        """Log in; on success the credentials are kept (in memory) to log in again after a server restart."""
        reply = Reply("POST", PREFIX + "/auth/login")
        self._submit(reply, self._do_login(user, password))
        return reply

    def change_password(self, old: str, new: str) -> Reply:
        """The logged-in user's own password (``POST /auth/password``); on success the remembered credentials
        follow, and ``loggedIn`` is emitted again without ``must_change_password``."""
        reply = Reply("POST", PREFIX + "/auth/password")
        self._submit(reply, self._do_change_password(old, new))
        return reply

    def logout(self) -> Reply:
        """Revoke the token on the server and close every channel; the state becomes ``logged_out`` at once.
        The bridge stays started: the next :meth:`login` (another user) opens the channels again."""
        reply = Reply("POST", PREFIX + "/auth/logout")
        # the token goes with the request: it is forgotten here before the worker sends it
        self._submit(reply, self._http("POST", PREFIX + "/auth/logout", token=self.token))
        self._forget_session()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._drop_channels)
        self._on_state("logged_out", _("logged out"))
        return reply

    def _forget_session(self) -> None:
        """Token, credentials and the wanted channels (any thread: plain assignments under the lock)."""
        with self._lock:
            self._wanted.clear()
            self.token = ""
            self._credentials = None
            self._login_info = {}

    def _drop_channels(self) -> None:
        """Cancel every channel (worker thread, synchronous: a channel asked for afterwards is a new one)."""
        for ch in list(self._channels.values()):
            if ch.task is not None:
                ch.task.cancel()
        self._channels.clear()

    def _end_session(self, why: str) -> None:
        """The server ended the session and the console may not renew it by itself (worker thread)."""
        log.warning("bridge: session ended: %s", why)
        self._forget_session()
        self._drop_channels()
        self._state.emit("logged_out", why)

    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                json_body: Any = None) -> Reply:
        """``path`` is relative to /api/v1 (``"/alarms"``). The answer arrives as ``reply.finished``."""
        reply = Reply(method, PREFIX + path)
        self._submit(reply, self._do_request(method, PREFIX + path, params, json_body))
        return reply

    def get(self, path: str, **params: Any) -> Reply:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: Any = None) -> Reply:
        return self.request("POST", path, json_body=body if body is not None else {})

    def set_channel(self, name: str, subscription: dict[str, Any] | None) -> None:
        """Open (or resubscribe) a WebSocket channel; ``None`` closes it. Channels reconnect by themselves."""
        if self._loop is None and self._stopping:
            return  # a queued GUI callback arriving after stop(): nothing to subscribe any more
        if self._loop is None:
            raise RuntimeError("bridge not started")
        with self._lock:
            if subscription is None:
                self._wanted.discard(name)
            else:
                self._wanted.add(name)
        self._loop.call_soon_threadsafe(self._set_channel, name, subscription)

    def take(self) -> Updates:
        """Everything that arrived since the last call (GUI thread, on ``dataReady``)."""
        with self._lock:
            out, self._pending = self._pending, Updates()
            self._woken = False
        return out

    # ------------------------------------------------------------------ GUI-thread slots
    @pyqtSlot(object, int, object, str, str)
    def _deliver(self, reply: Reply, status: int, data: Any, error: str, code: str) -> None:
        reply.status, reply.data, reply.error, reply.code, reply.done = status, data, error, code, True
        self._inflight.discard(reply)
        reply.finished.emit(reply)

    @pyqtSlot()
    def _on_wake(self) -> None:
        self.dataReady.emit()

    @pyqtSlot(str, str)
    def _on_state(self, state: str, detail: str) -> None:
        if state != self.state or state != "online":
            self.state = state
            self.connectionChanged.emit(state, detail)

    # ------------------------------------------------------------------ worker side
    def _submit(self, reply: Reply, coro: Any) -> None:
        if self._loop is None:
            coro.close()
            self._deliver(reply, 0, None, "bridge not started", "offline")
            return
        self._inflight.add(reply)

        t_submit = time.perf_counter()

        async def run() -> None:
            t_start = time.perf_counter()
            try:
                status, data, error, code = await coro
            except Exception as exc:  # never lose a reply: any failure is answered as an error (logged)
                log.exception("bridge: %s %s failed", reply.method, reply.path)
                status, data, error, code = 0, None, f"{type(exc).__name__}: {exc}", "internal"
            reply.timing = (t_start - t_submit, time.perf_counter() - t_start)  # queued, network + server
            self._replyDone.emit(reply, status, data, error, code)

        asyncio.run_coroutine_threadsafe(run(), self._loop)

    async def _http(self, method: str, path: str, params: Any = None, body: Any = None,
                    auth: bool = True, token: str | None = None) -> tuple[int, Any, str, str]:
        if self._client is None:  # made when the bridge's loop starts; a request before that is a bug
            raise RuntimeError(f"bridge: {method} {path} before the bridge started")
        bearer = self.token if token is None else token
        headers = {"Authorization": f"Bearer {bearer}"} if auth and bearer else {}
        try:
            r = await self._client.request(method, path, params=params, json=body, headers=headers)
        except (httpx.HTTPError, OSError) as exc:
            said = str(exc) or _("no answer")  # (a literal inside an f-string is not extracted for the catalogue)
            return 0, None, _("server unreachable ({error})").format(
                error=f"{type(exc).__name__}: {said}"), "unreachable"
        try:
            data = r.json() if r.content else None
        except ValueError:
            data = r.text
        if r.is_success:
            return r.status_code, data, "", ""
        why = data.get("why") if isinstance(data, dict) else None
        code = data.get("code") if isinstance(data, dict) else None
        return r.status_code, data, str(why or _("HTTP {status}").format(status=r.status_code)), str(code or "")

    async def _do_login(self, user: str, password: str, role: str | None = None) -> tuple[int, Any, str, str]:
        """Log in; with ``role`` (a silent log-in again) a different role is refused: a person must decide."""
        status, data, error, code = await self._http("POST", PREFIX + "/auth/login",
                                                     body={"user": user, "password": password}, auth=False)
        if status == 200 and isinstance(data, dict) and role is not None and data.get("role") != role:
            await self._http("POST", PREFIX + "/auth/logout", token=str(data.get("token", "")))
            return 403, data, _("the role of {user} changed from {old} to {new}: log in again").format(
                user=user, old=role, new=data.get("role")), "role_changed"
        if status == 200 and isinstance(data, dict):
            self.token = str(data.get("token", ""))
            self._credentials = (user, password)
            self._login_info = {k: v for k, v in data.items() if k != "token"}
            self._login.emit({k: v for k, v in data.items() if k != "token"})
            if not self._channels:
                self._state.emit("connecting", _("logged in as {user}, subscribing").format(user=user))
        return status, data, error, code

    async def _do_change_password(self, old: str, new: str) -> tuple[int, Any, str, str]:
        res = await self._http("POST", PREFIX + "/auth/password", body={"old": old, "new": new})
        if res[0] == 200 and self._credentials is not None:
            self._credentials = (self._credentials[0], new)
            self._login_info["must_change_password"] = False
            self._login.emit(dict(self._login_info))
        return res

    async def _relogin(self, failed_token: str) -> bool:
        """Log in again with the remembered credentials unless another task already did — only while the
        session has not expired and as the same role (see the module docstring); else end the session."""
        if self._login_lock is None:  # made when the bridge's loop starts
            raise RuntimeError("bridge: log-in before the bridge started")
        async with self._login_lock:
            if self.token and self.token != failed_token:
                return True
            credentials = self._credentials  # one read: the GUI thread may forget them (logout) meanwhile
            if credentials is None:
                return False
            expires_ms = int(self._login_info.get("expires_ms") or 0)
            if expires_ms and time.time() * 1000 >= expires_ms:
                self._end_session(_("session expired (end of its validity): log in again"))
                return False
            role = self._login_info.get("role")
            status, _data, error, _code = await self._do_login(*credentials, role=str(role) if role else None)
            if status == 200:
                self.stats["relogins"] += 1
                log.info("bridge: logged in again as %s", credentials[0])
                return True
            log.warning("bridge: cannot log in again: %s", error)
            if status in (401, 403):
                self._end_session(_("session ended: {why}").format(why=error))
            return False

    async def _do_request(self, method: str, path: str, params: Any, body: Any) -> tuple[int, Any, str, str]:
        token = self.token
        res = await self._http(method, path, params, body)
        if res[0] == 401 and res[3] in ("token_invalid", "unauthenticated") and await self._relogin(token):
            res = await self._http(method, path, params, body)
        elif res[0] == 401 and res[3] == "session_idle" and token and token == self.token:
            self._end_session(res[2])
        return res

    # ------------------------------------------------------------------ channels (worker thread)
    def _set_channel(self, name: str, sub: dict[str, Any] | None) -> None:
        ch = self._channels.get(name)
        if sub is None:
            if ch is not None and ch.task is not None:
                ch.task.cancel()
            self._channels.pop(name, None)
            return
        if ch is None:
            ch = self._channels[name] = _Channel(name, dict(sub))
            ch.task = asyncio.ensure_future(self._run_channel(ch))
            return
        ch.sub = dict(sub)
        if ch.ws is not None:
            self._spawn(self._send(ch, {"type": "subscribe", **ch.sub}))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)  # keep a reference until done (the loop only holds weak ones)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, ch: _Channel, msg: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):  # a broken socket is seen and reconnected by the channel's reader
            await ch.ws.send(json.dumps(msg))

    def _channel_state(self) -> None:
        """online: every essential channel has its snapshot; reconnecting: one that had it lost it (data
        stale); connecting: not all there yet. ``focus*`` channels (display details) do not count."""
        if self._stopping:
            return
        with self._lock:
            wanted = sorted(n for n in self._wanted if not n.startswith("focus"))
        ess = [self._channels.get(n) or _Channel(n, {}) for n in wanted]  # asked for but not created yet: offline
        if ess and all(c.online for c in ess):
            self._state.emit("online", "")
        elif any(c.ever_online and not c.online for c in ess):
            down = [c.name for c in ess if not c.online]
            self._state.emit("reconnecting", _("data stale: reconnecting {channels}").format(channels=", ".join(down)))
        elif ess:
            self._state.emit("connecting", _("waiting for {channels}").format(
                channels=", ".join(c.name for c in ess if not c.online)))

    async def _run_channel(self, ch: _Channel) -> None:
        backoff = 0.5
        while not self._stopping:
            token = self.token
            try:
                if not token and not await self._relogin(token):
                    raise ConnectionError("not logged in")
                async with websockets.connect(self.ws_url, additional_headers={"Authorization": f"Bearer {self.token}"},
                                              max_size=None, open_timeout=5, ping_interval=10, ping_timeout=20,
                                              close_timeout=2) as ws:
                    hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    if hello.get("type") != "hello":
                        if hello.get("code") in ("unauthenticated", "token_invalid"):
                            await self._relogin(token)
                            raise ConnectionError("token refused: logged in again")
                        raise ConnectionError(f"unexpected first message {hello.get('type')!r}")
                    ch.ws, ch.seq = ws, 0
                    await ws.send(json.dumps({"type": "subscribe", **ch.sub}))
                    backoff = 0.5
                    async for raw in ws:
                        self._handle(ch, raw)
                    raise ConnectionError(f"closed by the server ({ws.close_code})")
            except asyncio.CancelledError:
                ch.online = False
                raise
            except Exception as exc:  # noqa: BLE001 - websockets/httpx/json raise many kinds: the channel goes offline, reconnects
                was = ch.online
                ch.online, ch.ws = False, None
                if was:
                    self.stats["reconnects"] += 1
                    log.warning("bridge: channel %s lost (%s); reconnecting", ch.name, exc)
                else:
                    log.debug("bridge: channel %s: cannot connect (%r); retrying in %.1f s", ch.name, exc, backoff)
                self._channel_state()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def _handle(self, ch: _Channel, raw: str | bytes) -> None:
        msg = json.loads(raw)
        self.stats["messages"] += 1
        self.stats["bytes"] += len(raw)
        kind = msg.get("type")
        if kind in ("snapshot", "delta"):
            seq = int(msg.get("seq", 0))
            if kind == "delta" and ch.seq and seq != ch.seq + 1:
                # a gap: we missed something; ask for a fresh snapshot rather than show a wrong state
                self.stats["resyncs"] += 1
                self._spawn(self._send(ch, {"type": "subscribe", **ch.sub}))
            ch.seq = seq
            rows = msg.get("tags") or []
            self.stats["rows"] += len(rows)
            with self._lock:
                p = self._pending
                for r in rows:
                    p.rows[r[0]] = r
                alarms = msg.get("alarms") or []
                if kind == "snapshot":
                    p.snapshots.append(ch.name)
                    if ch.sub.get("alarms", True):
                        p.alarm_snapshot = list(alarms)
                        p.alarm_events = []
                elif alarms:
                    p.alarm_events.extend(alarms)
                    if len(p.alarm_events) > MAX_ALARM_EVENTS:
                        p.alarm_events = []
                        self._spawn(self._send(ch, {"type": "subscribe", **ch.sub}))
                for o in msg.get("workorders") or ():  # coalesced by id: the last state wins
                    p.workorders[str(o.get("id"))] = o
                if kind == "snapshot" and ch.sub.get("workorders"):
                    p.workorders_resync = True
                if kind == "snapshot" and (msg.get("reason") == "reload" or (ch.ever_online and not ch.online)):
                    p.config_changed = True
                wake = not self._woken
                self._woken = True
            if kind == "snapshot" and not ch.online:
                self.snapshot_at.setdefault(ch.name, time.perf_counter())
                ch.online = ch.ever_online = True
                self._channel_state()
            if wake:
                self._wake.emit()
        elif kind == "error":
            log.warning("bridge: channel %s: %s: %s", ch.name, msg.get("what"), msg.get("why"))
            with self._lock:
                self._pending.messages.append(msg)
                wake = not self._woken
                self._woken = True
            if wake:
                self._wake.emit()
            if msg.get("code") == "token_invalid":
                self._spawn(self._relogin(self.token))


def wait_reply(reply: Reply, timeout_s: float = 15.0) -> Reply:
    """Block until ``reply`` is done while processing Qt events (scripts, the CLI's --screenshots)."""
    deadline = time.monotonic() + timeout_s
    app = QCoreApplication.instance()
    while not reply.done and time.monotonic() < deadline:
        if app is not None:
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
        else:
            time.sleep(0.01)
    return reply

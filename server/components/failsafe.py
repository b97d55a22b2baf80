"""The fail-safe layer (failsafe.service.Failsafe) on commands.yaml: gate, leases, monitor, crisis plans.

    API ─► Failsafe (CommandService, CrisisService) ─► CommandGate ─► DriverWriter ─► poll loop ─► driver
                                                                      │ per-device lock, allow-list,
                                                                      │ runs on the drivers' loop (call=);
                                                                      ├ a junction: on the field-safety loop
                                                                      └ an edge's device: a DCMD to its edge
                                                                        (server.components.edge)
    FieldSafetyMonitor: built on the junctions' own database and run in the field-safety thread
      (server.components.safety; without it, poll left out: on the main tag database)
    FailsafeAlarm (monitor, gate) ─► hop to the main loop ─► system-alarm tags (scada.alarms.system) ─► alarm engine
    UncommandedWatch (failsafe.watch): the field against what we commanded (the gate and the leases write
    through its RecordingWriter) ─► P2 uncommanded change / backup time 0, P3 local control

No commands.yaml: every command is refused (status ``unavailable``). A reload first builds the new layer
aside (``prepare``: a vocabulary or city it cannot use, or a layout the controllers' phaseConcurrency
refutes, refuses the reload), then rebuilds it on the new configuration and vocabulary, on the same audit
log; leases persist across it, and pending approvals, select windows and rate windows are carried into the
new gate (Failsafe.adopt).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drivers.base import Driver
from failsafe.audit import AuditLog
from failsafe.concurrency import check_layouts, tagdb_reader
from failsafe.monitor import FieldSafetyMonitor
from failsafe.service import Failsafe
from failsafe.types import FailsafeAlarm
from failsafe.vocabulary import Vocabulary, check_vocabulary, load_vocabulary
from failsafe.watch import RecordingWriter, UncommandedWatch
from failsafe.writer import DriverLike, DriverWriter
from scada.alarms.system import codes_of
from scada.config import CityConfig
from scada.datadir import keys_dir
from scada.errors import ConfigError, ConfigProblem
from scada.tagdb import TagDatabase
from server.components.base import SubsystemStatus
from server.components.failsafe_store import AUDIT_KEY, StoreWatch
from server.settings import ServerSettings

if TYPE_CHECKING:
    from server.app import ScadaServer
    from server.components.poll import PollComponent
    from server.reload import Candidate

log = logging.getLogger(__name__)


def commands_file(settings: ServerSettings) -> Path:
    """The command vocabulary: ``commands`` in the settings, else commands.yaml next to the tags file."""
    return settings.commands if settings.commands is not None else settings.tags.parent / "commands.yaml"


def check_commands(settings: ServerSettings, config: CityConfig) -> list[ConfigProblem]:
    """Problems of commands.yaml against this city (none when there is no commands.yaml: commands refused)."""
    path = commands_file(settings)
    if not path.is_file():
        return []
    _, problems = check_vocabulary(path, config)
    return list(problems)


class FailsafeComponent:
    name = "failsafe"

    def __init__(self, server: ScadaServer, poll: PollComponent | None,
                 may_write: Callable[[], bool] | None = None,
                 edge: Callable[[str], DriverLike | None] | None = None) -> None:
        self.server = server
        self.may_write = may_write  # the failover pair's fence (server.components.ha); None: a single server
        self.poll = poll  # the drivers to write through (None: every write fails, nothing to write with)
        self.edge = edge  # a device polled by an edge: its driver sends DCMDs (server.components.edge)
        self.fs: Failsafe | None = None
        self.writer: DriverWriter | None = None
        self.audit: AuditLog | None = None
        self.alarms: dict[str, FailsafeAlarm] = {}
        self.stores = StoreWatch(server)  # audit log and lease store writable (P1), leases kept to their city
        # (configuration, vocabulary) prepared for a reload, running, and before it (what a rollback goes back to)
        self._prepared: tuple[CityConfig, Vocabulary] | None = None
        self._running: tuple[CityConfig, Vocabulary] | None = None
        self._before: tuple[CityConfig, Vocabulary] | None = None
        self._closed: Failsafe | None = None  # the last layer stopped
        self.cancelled: list[dict[str, Any]] = []  # tickets the last reload cancelled (equipment or verb gone)
        self._main_loop: asyncio.AbstractEventLoop | None = None
        self._main_thread = threading.get_ident()
        self.watch: UncommandedWatch | None = None  # uncommanded changes (failsafe.watch)
        self._watch_task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ ports
    def _driver(self, device: str) -> DriverLike | None:
        at_edge = self.edge(device) if self.edge is not None else None
        if at_edge is not None:  # the same gate, writer, fence and allow-list; the write itself is a DCMD
            return at_edge
        junction = self.poll.safety.driver(device) if self.poll is not None else None
        if junction is not None:  # a junction's driver lives on the field-safety loop: each call goes there
            return junction
        driver = self.poll.driver(device) if self.poll is not None else None
        return driver if isinstance(driver, Driver) else None

    def reset_at_source(self, junctions: Iterable[str], user: str) -> None:
        """The alarm component's reset port: reset the monitor's latch of these junctions first."""
        if self.fs is not None:
            self.fs.reset_at_source(junctions, user)

    def _on_alarm_any_thread(self, alarm: FailsafeAlarm) -> None:
        """The alarm sink of the monitor and the gate: from the field-safety thread, the alarm hops to the main
        loop (the system-alarm tags are written there; the safety thread never waits for the main database)."""
        loop = self._main_loop
        if loop is None or threading.get_ident() == self._main_thread:
            self.on_alarm(alarm)
            return
        try:
            loop.call_soon_threadsafe(self.on_alarm, alarm)
        except RuntimeError:  # the main loop is closed (the server stops): still logged here
            log.error("%s: %s (P%s, not raised: the server is stopping)", alarm.equipment or "fail-safe",
                      alarm.message, alarm.priority)

    async def _writer_call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Where the writer runs a driver coroutine: a junction's (LoopDriver) goes to the safety loop by itself,
        so from that loop it runs here (the monitor's flash never waits for the poll loop); else the poll loop."""
        if self.poll is None or asyncio.get_running_loop() is self.poll.safety.loop:
            return await coro
        return await self.poll.call(coro)

    def on_alarm(self, alarm: FailsafeAlarm) -> None:
        """Fail-safe alarms (conflicting green, monitor did not act, not confirmed) → their system-alarm tags,
        which the alarm engine turns into ISA-18.2 alarms (scada.alarms.system). The detail (which phases,
        which command) is in the log and the command audit log."""
        self.alarms[alarm.key] = alarm
        log.log(logging.ERROR if alarm.active and alarm.priority <= 2 else logging.WARNING, "%s: %s (P%s, %s)",
                alarm.equipment or "fail-safe", alarm.message, alarm.priority, "active" if alarm.active else "cleared")
        if alarm.key == AUDIT_KEY:  # the gate's append failure: one steady alarm with the store probes
            self.stores.gate_audit(bool(alarm.active))
            return
        sink = self.server.system_alarms
        mapped = codes_of([alarm.key])
        if sink is None:
            return
        if not mapped:
            log.error("fail-safe alarm %s has no system alarm: it is only logged", alarm.key)
            return
        equipment, code = mapped[0]
        sink.raise_("failsafe", code, equipment, bool(alarm.active), detail=alarm.message)

    # ------------------------------------------------------------------ lifecycle
    async def start(self, config: CityConfig, tagdb: TagDatabase) -> None:
        st = self.health()
        path = commands_file(self.server.settings)
        if not path.is_file():
            st.set("unavailable", f"no command vocabulary ({path} not found): every command is refused")
            return
        foreign, why = self.stores.set_aside_foreign(config)  # a folder that served another city: no resume
        fs = await self._build(config, tagdb, path)
        self.stores.started(fs, config, foreign, why)
        st.set("ok", f"{len(fs.vocab.types)} commandable types, {len(fs.vocab.crisis_plans)} crisis plans")
        if fs.audit.damage is not None:  # the layer and its monitor run; only safety-increasing commands pass
            st.set("degraded", f"audit log damaged, commands refused except safety-increasing: {fs.audit.damage}")
        st.stats = self.stats

    def _make(self, config: CityConfig, tagdb: TagDatabase, vocab: Vocabulary) -> tuple[DriverWriter, Failsafe]:
        call = self._writer_call if self.poll is not None else None
        writer = DriverWriter(config, self._driver, call=call, may_write=self.may_write)
        # with the field-safety loop, the monitor is built on its database and run there (_attach_monitor)
        safety = self.poll is not None and self.poll.safety.db is not None
        # every write of ours is noted: a value we just wrote is never an "uncommanded change" (failsafe.watch)
        return writer, Failsafe.build(config, tagdb, RecordingWriter(writer), self.server.data_dir / "failsafe",
                                      vocabulary=vocab,
                                      alarms=self._on_alarm_any_thread, monitor=not safety,
                                      authenticate=lambda p: bool(p.authenticated),
                                      audit=self.audit, key_dir=keys_dir(self.server.data_dir))

    async def _build(self, config: CityConfig, tagdb: TagDatabase, path: Path, vocab: Vocabulary | None = None,
                     previous: Failsafe | None = None) -> Failsafe:
        vocab = vocab if vocab is not None else load_vocabulary(path, config)
        self.writer, self.fs = self._make(config, tagdb, vocab)
        self._before, self._running = self._running, (config, vocab)
        self.audit = self.fs.audit
        if previous is not None:  # a reload: pending approvals, select windows and rate windows go on
            self.cancelled = self.fs.adopt(previous)
        self._main_loop, self._main_thread = asyncio.get_running_loop(), threading.get_ident()
        await self.fs.start()
        await self._attach_monitor(config, vocab)
        self._start_watch(config, tagdb, self.fs)
        if self.fs.monitor is not None:  # the health detail follows the layouts' verification against the field
            self.fs.monitor.on_layout(self._layouts)
        self.server.commands = self.fs
        self.server.crisis = self.fs
        if self.server.system_alarms is not None:  # "no condition" is now known (after a restart: the
            self.server.system_alarms.initialise("failsafe")  # latched alarms stay held until an operator reset)
        return self.fs

    def _start_watch(self, config: CityConfig, tagdb: TagDatabase, fs: Failsafe) -> None:
        recorder = fs.gate.writer
        if not isinstance(recorder, RecordingWriter):
            return
        self.watch = UncommandedWatch(config, fs.vocab, tagdb, fs.leases, recorder, alarms=self.on_alarm,
                                      audit=fs.audit).start()
        self._watch_task = asyncio.create_task(self.watch.run(), name="failsafe-watch")

    async def _stop_watch(self) -> None:
        watch, task, self.watch, self._watch_task = self.watch, self._watch_task, None, None
        if watch is not None:
            watch.stop()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _attach_monitor(self, config: CityConfig, vocab: Vocabulary) -> None:
        """The field-safety monitor on the junctions' own database, run in their loop (server.components.safety):
        it decides on each sample before the main tag database gets it, and its flash goes out from there."""
        safety = self.poll.safety if self.poll is not None else None
        if safety is None or safety.db is None or self.fs is None or self.fs.monitor is not None:
            return  # no safety loop (poll left out): Failsafe.build subscribed the monitor to the main database
        fs = self.fs
        fs.monitor = FieldSafetyMonitor(config, vocab, safety.db, fs.gate, alarms=self._on_alarm_any_thread,
                                        audit=fs.audit)
        await safety.attach(fs.monitor)

    def stats(self) -> dict[str, Any]:
        if self.fs is None:
            return {}
        return {**self.fs.stats(), "writes": self.writer.writes if self.writer is not None else 0,
                "alarms": [{"key": a.key, "priority": a.priority, "message": a.message}
                           for a in self.alarms.values() if a.active][:100]}

    def health(self) -> SubsystemStatus:
        return self.server.status("failsafe")

    def _layouts(self, by_state: dict[str, list[str]]) -> None:
        """Junction layouts vs the controllers' phaseConcurrency (failsafe/concurrency.py) in the health detail:
        degraded while one is refused (its commands are refused), the unverified ones named."""
        st = self.health()
        base = st.detail.split(" | layouts")[0]
        refused, unverified = by_state["refused"], by_state["unverified"]
        note = f" | layouts: {len(by_state['verified'])} verified against the field"
        if unverified:
            note += f", unverified at {', '.join(unverified[:10])}{' ...' if len(unverified) > 10 else ''}"
        if refused:
            note += f", REFUSED at {', '.join(refused)} (commands refused there)"
        damaged = self.fs is not None and self.fs.audit.damage is not None  # only safety-increasing commands pass
        st.set("degraded" if refused or damaged else ("ok" if st.status == "degraded" else st.status), base + note)

    async def prepare(self, candidate: Candidate, tagdb: TagDatabase) -> None:
        """Build the new layer aside, not started (gate, leases, monitor on the new city and vocabulary): what
        cannot be built refuses the reload before anything switches."""
        self._prepared = None
        if candidate.vocabulary is not None:
            self._make(candidate.config, tagdb, candidate.vocabulary)  # a trial: the running layer is untouched
            # layouts against the field: the phaseConcurrency the junctions served (carried into ``tagdb``)
            # (as the running monitor last read it in full, else as carried into ``tagdb``)
            known, carried = self.fs.monitor if self.fs is not None else None, tagdb_reader(tagdb, candidate.config)
            refused = check_layouts(candidate.vocabulary,
                                    lambda j: (known.field_concurrency(j) if known is not None else None) or carried(j),
                                    [e.id for e in candidate.config.equipment.values() if e.template == "junction"])
            if refused:
                raise ConfigError(refused)
            self._prepared = (candidate.config, candidate.vocabulary)

    def discard(self) -> None:
        self._prepared = None

    def _vocabulary_for(self, config: CityConfig) -> Vocabulary | None:
        """The vocabulary prepared for ``config``, or the one it ran with (a rollback), else commands.yaml."""
        for known in (self._prepared, self._running, self._before):
            if known is not None and known[0] is config:
                return known[1]
        path = commands_file(self.server.settings)
        return load_vocabulary(path, config) if path.is_file() else None

    async def apply(self, old: CityConfig, new: CityConfig, tagdb: TagDatabase) -> dict[str, Any]:
        """Stop the running layer and start the new one, which goes on with its pending tickets, reservations and
        rate windows (Failsafe.adopt); the status then says what runs (a later good reload clears a "down")."""
        vocab = self._vocabulary_for(new)
        self._prepared = None
        previous = self.fs or self._closed
        st = self.health()
        # the switch itself, not a stop: the new monitor decides first on every sample that came in meanwhile
        # and the blind check (two periods) still runs, so the safety watch does not annunciate "not running"
        # for these few hundred milliseconds; a switch that fails ends down or unavailable (then it does)
        st.set("starting", "reload: the new fail-safe layer takes over")
        await self._stop()
        if vocab is None:
            st.set("unavailable", "no command vocabulary: every command is refused")
            return {}
        self.cancelled = []
        fs = await self._build(new, tagdb, commands_file(self.server.settings), vocab, previous)
        self.stores.started(fs, new)
        st.set("ok", f"{len(fs.vocab.types)} commandable types, {len(fs.vocab.crisis_plans)} crisis plans")
        st.stats = self.stats
        return {"types": len(fs.vocab.types), "pending_tickets": len(fs.gate.pending()),
                "cancelled_tickets": [t["id"] for t in self.cancelled]}

    async def _stop(self) -> None:
        fs, self.fs = self.fs, None
        self._closed = fs or self._closed  # a reload's new layer takes over its open tickets
        self.server.commands = None
        self.server.crisis = None
        await self._stop_watch()
        if self.poll is not None:  # the monitor stops on its own loop first
            await self.poll.safety.detach()
        if fs is not None:
            # leases persist with their end time; after a restart an expired one is only released, never
            # re-asserted, and the field side returns to local control by itself when the heartbeat stops
            await fs.aclose()

    @property
    def store_problems(self) -> list[str]:
        """Fail-safe stores that cannot be written (/health "failed")."""
        return list(self.stores.problems)

    async def aclose(self) -> None:
        await self.stores.aclose()
        await self._stop()
        if self.audit is not None:  # pending refusal summaries are written, never dropped
            self.audit.close()

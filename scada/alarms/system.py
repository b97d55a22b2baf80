"""System alarms: conditions the supervisory system raises itself (fail-safe layer, historian).

They are first-class ISA-18.2 alarms, exactly like the ones of ``alarms.yaml``: annunciated,
acknowledged, reset, journalled, restored after a restart, counted in the KPIs (priority-1 ones
cannot be shelved or suppressed). The trick is that each condition is a *tag* the server owns, and
each kind of condition is a built-in *rule* over those tags::

    fail-safe monitor / gate ──FailsafeAlarm(key, equipment, active)──┐
    historian buffer ─────────BufferAlarm(code, active)───────────────┤ SystemAlarmSink.raise_()
                                                                      ▼
            <equipment prefix>/failsafe/<code>   or   system/<source>/<code>      bool tag, 1 = present
                                                                      │ TagDatabase.apply (a change event)
                                                                      ▼
            AlarmEngine (built-in rules ``system.<...>``, compiled with the city's own rules)
                                                                      │
                                                                      ▼
            journal, WebSocket consoles, HMI, KPIs, historian (the tag is trended like any other)

Three shapes of condition:

- *steady*: the source says when it starts and when it ends (historian backend down, buffer above
  80 %, audit log unwritable).
- *latched at the source*: the field-safety monitor holds a conflicting-green observation until an
  operator resets it; the tag is the monitor's latch and the engine rule is latched too, so a reset
  from the alarm list resets the monitor first (:data:`MONITOR_CODES`), then the alarm.
- *pulse*: a one-off event (command not confirmed, points dropped or quarantined): the tag goes 1 then
  0 at once, which leaves the alarm returned-unacknowledged until an operator acknowledges it.

Built-in rule names start with ``system.`` (the configuration loader refuses that prefix in
``alarms.yaml``). A city without the fail-safe layer or the historian simply never sets the tags.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

from scada.config.model import CityConfig, TagDef
from scada.config.schema import AlarmRuleSpec
from scada.quality import Sample
from scada.tagdb import TagDatabase

log = logging.getLogger(__name__)

RESERVED_PREFIX = "system."
Scope = Literal["junction", "commandable", "system"]
Shape = Literal["steady", "latched", "pulse"]


@dataclass(frozen=True, slots=True)
class SystemAlarm:
    """One kind of system condition: where its tag lives and how its alarm behaves."""

    source: str  # failsafe | historian
    code: str  # the source's own name: conflicting_green, command_not_confirmed, buffer_high...
    scope: Scope  # junction: every junction the monitor watches; commandable: every equipment with a
    #               writable tag; system: one tag for the whole server
    priority: int
    shape: Shape
    message: str
    description: str
    #: the same abnormal condition read from the equipment itself (tag, values): when the city already has
    #: a discrete rule on it, this alarm is suppressed by design behind that rule (one annunciation per
    #: condition, ISA-18.2 rationalisation); it is still evaluated and journalled
    same_as: tuple[str, frozenset[int]] | None = None

    def tag(self, prefix: str | None = None) -> str:
        """The tag's full name (``prefix`` is the equipment's tag prefix for per-equipment scopes)."""
        if self.scope == "system":
            return f"system/{self.source}/{self.code}"
        return f"{prefix}/{self.source}/{self.code}"

    @property
    def local_tag(self) -> str:
        """The tag's name after the equipment prefix (per-equipment scopes)."""
        return f"{self.source}/{self.code}"


SYSTEM_ALARMS: tuple[SystemAlarm, ...] = (
    # field-safety monitor (failsafe.monitor): latched at the monitor until an operator resets it
    SystemAlarm("failsafe", "conflicting_green", "junction", 1, "latched",
                "Junction {id} ({commune}): conflicting green/yellow observed by the field-safety monitor",
                "field-safety monitor: conflicting green or yellow seen in one sample"),
    SystemAlarm("failsafe", "monitor_did_not_act", "junction", 1, "latched",
                "Junction {id} ({commune}): the cabinet conflict monitor did not act; flash requested",
                "field-safety monitor: the controller did not go to flash after a conflicting green"),
    SystemAlarm("failsafe", "fault_flash", "junction", 1, "latched",
                "Junction {id} ({commune}): controller in fault flash, local reset needed",
                "field-safety monitor: the controller reports fault flash",
                same_as=("unit_flash_status", frozenset({5, 6}))),  # faultMonitor(5), mmu(6)
    SystemAlarm("failsafe", "monitor_flash_failed", "junction", 1, "latched",
                "Junction {id} ({commune}): flash requested by the field-safety monitor did not succeed",
                "field-safety monitor: its flash request was refused or not confirmed"),
    # command gate (failsafe.gate): one-off events
    SystemAlarm("failsafe", "command_failed", "commandable", 3, "pulse",
                "{id} ({commune}): command failed (see the command history)",
                "command gate: a command could not be written"),
    SystemAlarm("failsafe", "command_not_confirmed", "commandable", 3, "pulse",
                "{id} ({commune}): command not confirmed by read-back (see the command history)",
                "command gate: the read-back did not show the commanded value"),
    SystemAlarm("failsafe", "command_rejected", "commandable", 3, "pulse",
                "{id} ({commune}): command rejected for this equipment (see the command history)",
                "command gate: a command was rejected for this target"),
    SystemAlarm("failsafe", "audit_unwritable", "system", 2, "steady",
                "Command audit log cannot be written: only safety-increasing commands are accepted",
                "command gate: the audit log cannot be written"),
    # historian store-and-forward buffer (historian.buffer)
    SystemAlarm("historian", "backend_down", "system", 3, "steady",
                "Historian database unavailable: values are buffered to disk and replayed later",
                "historian: the database does not answer"),
    SystemAlarm("historian", "buffer_high", "system", 2, "steady",
                "Historian buffer above 80 %: the database has been unavailable for a long time",
                "historian: store-and-forward buffer above its high level"),
    SystemAlarm("historian", "buffer_full", "system", 2, "pulse",
                "Historian buffer full: the oldest analogue values are being dropped",
                "historian: store-and-forward buffer full"),
    SystemAlarm("historian", "quarantine", "system", 3, "pulse",
                "Historian: points rejected by the database were quarantined (administrator action needed)",
                "historian: a batch rejected three times was set aside"),
)
BY_KEY: dict[tuple[str, str], SystemAlarm] = {(a.source, a.code): a for a in SYSTEM_ALARMS}
#: monitor codes whose reset from the alarm list must reset the field-safety monitor first
MONITOR_CODES = frozenset(a.code for a in SYSTEM_ALARMS if a.source == "failsafe" and a.shape == "latched")


def _junctions(config: CityConfig) -> list[str]:
    return [e.id for e in config.equipment.values() if e.template == "junction"]


def _commandable(config: CityConfig) -> list[str]:
    """Equipment with at least one writable tag (what the command gate can address)."""
    return list(dict.fromkeys(t.equipment for t in config.tags if t.equipment and "w" in t.access))


def _scopes(config: CityConfig) -> dict[str, list[str]]:
    """Scope → the equipment it covers (computed once: "commandable" reads every tag of the city)."""
    return {"junction": _junctions(config), "commandable": _commandable(config), "system": [""]}


def _instances(config: CityConfig) -> Iterator[tuple[SystemAlarm, str, str]]:
    """(condition, equipment id or "", tag name) of every system-alarm tag of the city."""
    scopes = _scopes(config)
    for a in SYSTEM_ALARMS:
        for eq_id in scopes[a.scope]:
            eq = config.equipment.get(eq_id)
            yield a, eq_id, a.tag(eq.prefix if eq is not None else None)


def system_tags(config: CityConfig) -> list[TagDef]:
    """The bool tags behind the system alarms (added to the tag database by the server)."""
    return [TagDef(name=name, equipment=eq_id, tag=a.local_tag if eq_id else name, template_tag=a.local_tag,
                   device="server", address=f"server:{a.source}/{a.code}", dtype="bool",
                   description=f"{eq_id}: {a.description}" if eq_id else a.description)
            for a, eq_id, name in _instances(config)]


def rule_name(alarm: SystemAlarm, template: str | None = None) -> str:
    """``system.junction.conflicting_green`` (per template) or ``system.historian.buffer_high``."""
    return f"{RESERVED_PREFIX}{template if alarm.scope != 'system' and template else alarm.source}.{alarm.code}"


def system_rules(config: CityConfig) -> list[AlarmRuleSpec]:
    """The built-in rules over :func:`system_tags`, one per (condition, equipment template).

    Per-equipment rules take the service the city's own rules give that template most often (a
    lighting cabinet's "command not confirmed" goes to the lighting operators); system ones go to
    the ``system`` service, area ``system``.
    """
    services: dict[str, Counter[str]] = {}
    for r in config.alarm_rules:
        if r.template is not None:
            services.setdefault(r.template, Counter())[r.service] += 1
    out: list[AlarmRuleSpec] = []
    scopes = _scopes(config)
    for a in SYSTEM_ALARMS:
        if a.scope == "system":
            out.append(AlarmRuleSpec(name=rule_name(a), tag=a.tag(), kind="discrete", value=True,
                                     priority=a.priority, latched=a.shape == "latched", message=a.message,
                                     service="system", area="system", description=a.description))
            continue
        for tmpl in dict.fromkeys(config.equipment[e].template for e in scopes[a.scope]):
            svc = services.get(tmpl)
            out.append(AlarmRuleSpec(name=rule_name(a, tmpl), template=tmpl, tag=a.local_tag, kind="discrete",
                                     value=True, priority=a.priority, latched=a.shape == "latched",
                                     message=a.message, service=svc.most_common(1)[0][0] if svc else "system",
                                     description=a.description, suppressed_by=_covering_rule(config, a, tmpl)))
    return out


def _covering_rule(config: CityConfig, alarm: SystemAlarm, template: str) -> str | None:
    """The city's own rule that already annunciates ``alarm``'s condition on ``template``, if any."""
    if alarm.same_as is None:
        return None
    tag, values = alarm.same_as
    for r in config.alarm_rules:
        wanted = set(r.values or []) | ({r.value} if r.value is not None else set())
        if r.template == template and r.tag == tag and r.kind == "discrete" and values & wanted:
            return r.name
    return None


def parse_rule(rule: str) -> SystemAlarm | None:
    """The system condition behind a built-in rule name (None for the city's own rules)."""
    if not rule.startswith(RESERVED_PREFIX):
        return None
    code = rule.rsplit(".", 1)[-1]
    return next((a for a in SYSTEM_ALARMS if a.code == code), None)


def held_at_source(rule: str) -> bool:
    """A built-in rule whose condition the field-safety monitor holds until a reset (Reset resets the monitor)."""
    a = parse_rule(rule)
    return a is not None and a.code in MONITOR_CODES


class SystemAlarmSink:
    """Turns the sources' raise/clear calls into tag values (the engine does the rest).

    Thread-safe as far as the tag database is: ``apply_samples`` takes its lock, and its subscribers
    (the alarm engine among them) lock themselves.
    """

    def __init__(self, config: CityConfig, db: TagDatabase) -> None:
        self.config = config
        self.db = db
        self.raised = 0
        self._by_source: dict[str, list[int]] = {}  # source → its tags' indices (for initialise)
        for a, _, name in _instances(config):
            i = db.index.get(name)
            if i is not None:
                self._by_source.setdefault(a.source, []).append(i)

    def tag_index(self, source: str, code: str, equipment: str = "") -> int | None:
        a = BY_KEY.get((source, code))
        if a is None:
            return None
        eq = self.config.equipment.get(equipment)
        if a.scope != "system" and eq is None:
            return None
        return self.db.index.get(a.tag(eq.prefix if eq is not None else None))

    def initialise(self, source: str) -> int:
        """Set every tag of ``source`` to 0 (good) when the source starts: "no condition" is known. A tag
        that already has a value (the source raised something first) is left alone."""
        fresh = [(i, Sample.good(0)) for i in self._by_source.get(source, []) if self.db.receive_ns[i] == 0]
        if fresh:
            self.db.apply_samples(fresh)
        return len(fresh)

    def raise_(self, source: str, code: str, equipment: str = "", active: bool = True) -> bool:
        """Set the condition (or clear it); a pulse-shaped condition is set and cleared at once.

        Returns False (and logs) when the condition has no tag: an unknown code, or equipment that
        is not in the city (nothing is lost: the source also logs and journals it).
        """
        i = self.tag_index(source, code, equipment)
        if i is None:
            log.warning("system alarm %s/%s on %r has no tag in this city", source, code, equipment or "system")
            return False
        a = BY_KEY[(source, code)]
        self.raised += 1
        if a.shape == "pulse":
            if active:
                self.db.apply_samples([(i, Sample.good(1))])
                self.db.apply_samples([(i, Sample.good(0))])
            return True
        self.db.apply_samples([(i, Sample.good(1 if active else 0))])
        return True


def codes_of(keys: Iterable[str]) -> list[tuple[str, str]]:
    """``failsafe/J001/conflicting_green`` → (J001, conflicting_green); ``failsafe/audit/unwritable`` →
    ("", audit_unwritable): the fail-safe layer's alarm keys mapped to (equipment, code)."""
    out: list[tuple[str, str]] = []
    for key in keys:
        parts = key.split("/")
        if len(parts) == 3 and parts[0] == "failsafe":
            if parts[1] == "audit":
                out.append(("", f"audit_{parts[2]}"))
            else:
                out.append((parts[1], parts[2]))
    return out


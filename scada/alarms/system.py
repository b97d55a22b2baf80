"""System alarms: conditions the supervisory system raises itself (fail-safe layer, comm loss, historian...).

They are first-class ISA-18.2 alarms, exactly like the ones of ``alarms.yaml``: annunciated,
acknowledged, reset, journalled, restored after a restart, counted in the KPIs (priority-1 ones
cannot be shelved or suppressed). The trick is that each condition is a *tag* the server owns, and
each kind of condition is a built-in *rule* over those tags::

    fail-safe monitor / gate / watch / stores ──FailsafeAlarm(key, equipment, active)──┐
    comm-loss watch (server.components.commwatch) ──comm_lost, device_comm_lost──────────┤
    historian buffer ─────────BufferAlarm(code, active)──────────────────────────────────┤ SystemAlarmSink
    server: health (failsafe_down, poll_down), reload_failed_<component>, login_burst ───┤   .raise_()
    work orders: sla_breach (open orders past their due time) ───────────────────────────┤
                                                                                         ▼
            <equipment prefix>/<source>/<code>, system/devices/<device>/<code> or system/<source>/<code>
            bool tag, 1 = present (a text tag for the conditions that say what was seen, below)
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

A condition that must say what was seen (``uncommanded_change``: "pattern flash, no lease from this
system") has a *text* tag instead of a bool one: present while it holds a text, the text is the
alarm's ``{value}`` (in its message, the API's alarm view and the journal's rows), cleared by an empty
text. Its rule is ``discrete`` with ``value: true``, which on a string tag means "any text".

Conditions the operator can end with a command name them (:func:`remedies_of`: the verbs of
commands.yaml the alarm offers, e.g. ``return_to_local`` and ``adopt`` for an uncommanded change).

One annunciation per condition: when two conditions describe one cause, one is suppressed by design
behind the other on the same equipment (``suppressed_by``: still evaluated and journalled, annunciated
again as soon as the other clears). A junction whose device is lost is P1 ``poll/comm_lost``, and its
``failsafe/monitor_blind`` waits behind it; a blind monitor with the junction's communication intact (the
safety loop stalled) is annunciated. The same holds for an equipment behind a lost shared device
(``comm_lost`` behind ``via_device_lost``) and a monitor fault flash behind the city's own rule.

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
from scada.i18n import N_, Lang, gettext_in, in_every_language
from scada.quality import Sample
from scada.tagdb import TagDatabase

log = logging.getLogger(__name__)

RESERVED_PREFIX = "system."
#: comm-loss priority per template (others: P3). A junction's comm loss blinds the field-safety monitor (P1);
#: a bollard that cannot be seen cannot be lowered for an emergency vehicle, a building's fire and intrusion
#: alarms are no longer received (P2); lighting, cameras, panels, car parks and vehicles wait for a crew (P3)
COMM_LOSS_PRIORITIES: tuple[tuple[str, int], ...] = (("junction", 1), ("bollard", 2), ("building", 2))
#: the ways out of an uncommanded change, per template: back to local control, or adopt it under a lease
UNCOMMANDED_REMEDIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("lighting_cabinet", ("return_to_schedule", "adopt")), ("", ("return_to_local", "adopt")))
Scope = Literal["junction", "commandable", "system", "polled", "shared_device"]
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
    #: per-template priorities overriding ``priority`` (comm loss: a junction is P1, a camera P3)
    priorities: tuple[tuple[str, int], ...] = ()
    #: per-equipment scopes: suppressed by design behind this other code's rule on the same template (any
    #: source: codes are unique), while that condition is present on the same equipment
    suppressed_by_code: str | None = None
    #: a text tag: present while it holds a text, which is the alarm's ``{value}`` (the detail seen)
    text: bool = False
    #: the commands.yaml verbs that end the condition, per template ("" = any other template)
    remedies: tuple[tuple[str, tuple[str, ...]], ...] = ()
    #: fields of ``message`` known when the rule is built (which component a reload failed in)
    fill: tuple[tuple[str, str], ...] = ()

    def messages(self, **fields: str) -> dict[Lang, str]:
        """The message in every catalogue language, ``fill`` and ``fields`` put in (the rule's per-language
        template: the rest, ``{id}``, ``{commune}``, ``{value}``, is filled per alarm and when shown)."""
        out: dict[Lang, str] = {}
        for lang, template in in_every_language(self.message).items():
            text = template
            for name, v in (*self.fill, *fields.items()):
                text = text.replace("{" + name + "}", v)
            out[lang] = text
        return out

    def remedies_for(self, template: str | None) -> tuple[str, ...]:
        table = dict(self.remedies)
        return table.get(template or "", table.get("", ()))

    def priority_for(self, template: str | None) -> int:
        return dict(self.priorities).get(template or "", self.priority)

    def tag(self, prefix: str | None = None) -> str:
        """The tag's full name (``prefix`` is the equipment's tag prefix for per-equipment scopes)."""
        if self.scope == "system":
            return f"system/{self.source}/{self.code}"
        if self.scope == "shared_device":  # prefix: the device's name
            return f"system/devices/{prefix}/{self.code}"
        return f"{prefix}/{self.source}/{self.code}"

    @property
    def local_tag(self) -> str:
        """The tag's name after the equipment prefix (per-equipment scopes)."""
        return f"{self.source}/{self.code}"


SYSTEM_ALARMS: tuple[SystemAlarm, ...] = (
    # field-safety monitor (failsafe.monitor): latched at the monitor until an operator resets it
    SystemAlarm("failsafe", "conflicting_green", "junction", 1, "latched",
                N_("Junction {id} ({commune}): conflicting green/yellow observed by the field-safety monitor"),
                "field-safety monitor: conflicting green or yellow seen in one sample"),
    SystemAlarm("failsafe", "monitor_did_not_act", "junction", 1, "latched",
                N_("Junction {id} ({commune}): the cabinet conflict monitor did not act; flash requested"),
                "field-safety monitor: the controller did not go to flash after a conflicting green"),
    SystemAlarm("failsafe", "fault_flash", "junction", 1, "latched",
                N_("Junction {id} ({commune}): controller in fault flash, local reset needed"),
                "field-safety monitor: the controller reports fault flash",
                same_as=("unit_flash_status", frozenset({5, 6}))),  # faultMonitor(5), mmu(6)
    SystemAlarm("failsafe", "monitor_flash_failed", "junction", 1, "latched",
                N_("Junction {id} ({commune}): flash requested by the field-safety monitor did not succeed"),
                "field-safety monitor: its flash request was refused or not confirmed"),
    SystemAlarm("failsafe", "conflicting_green_in_flash", "junction", 1, "latched",
                N_("Junction {id} ({commune}): controller reports flash but its greens conflict"),
                "field-safety monitor: conflicting greens in a sample whose status says flash"),
    # field-safety monitor, steady: they clear when the evidence goes away
    SystemAlarm("failsafe", "controller_frozen", "junction", 2, "steady",
                N_("Junction {id} ({commune}): controller status frozen, signal state unknown"),
                "field-safety monitor: the controller answers but its status stopped moving"),
    SystemAlarm("failsafe", "layout_refused", "junction", 1, "steady",
                N_("Junction {id} ({commune}): commands.yaml layout contradicts the controller's phase concurrency; "
                "commands refused"),
                "field-safety monitor: the layout declares compatible a pair the controller treats as conflicting"),
    # field-safety loop (server.components.safety): what blinds or stops the monitor, within a second
    # comm loss blinds the monitor too: the junction's comm_lost (P1) says it once, this one is then suppressed
    # by design behind it (still evaluated and journalled) and annunciates alone when the cause is another one
    # (the safety loop stalled, a junction silent on a device that answers)
    SystemAlarm("failsafe", "monitor_blind", "junction", 1, "steady",
                N_("Junction {id} ({commune}): field-safety monitor blind at {id} (no fresh status sample)"),
                "field-safety loop: the junction's last good sample is older than two scan periods (comm loss, "
                "or the safety loop stalled)", suppressed_by_code="comm_lost"),
    SystemAlarm("failsafe", "monitor_not_running", "system", 1, "steady",
                N_("Field-safety monitor not running: junctions are not checked for conflicting greens (see /health)"),
                "field-safety loop: no monitor runs on the junctions' samples (fail-safe layer not started, no "
                "command vocabulary, or a failed reload)"),
    SystemAlarm("failsafe", "layout_unverified", "junction", 2, "steady",
                N_("Junction {id} ({commune}): layout not verified against the field at {id}"),
                "field-safety monitor: the controller's phase concurrency cannot be read"),
    # what the field does that this system did not command (failsafe.watch): steady, they clear when the field
    # is back to local control or to what this system holds (the alarm offers both commands)
    SystemAlarm("failsafe", "uncommanded_change", "commandable", 2, "steady",
                N_("Uncommanded change at {id} ({commune}): {value}"),
                "uncommanded change: the field shows a request this system did not command (a write from outside)",
                text=True, remedies=UNCOMMANDED_REMEDIES),
    SystemAlarm("failsafe", "backup_time_zero", "junction", 2, "steady",
                N_("unitBackupTime 0 at {id} ({commune}): the controller would never fall back to local"),
                "uncommanded change: unitBackupTime set to 0 (the controller's own fallback is disabled)",
                remedies=(("", ("return_to_local", "adopt")),)),
    SystemAlarm("failsafe", "local_control", "commandable", 3, "steady",
                N_("{id} ({commune}): local control at the equipment (a technician); commands from this system "
                "do not apply"),
                "local control: the equipment reports local manual control (not an uncommanded change)"),
    # command gate (failsafe.gate): one-off events
    SystemAlarm("failsafe", "command_failed", "commandable", 3, "pulse",
                N_("{id} ({commune}): command failed (see the command history)"),
                "command gate: a command could not be written"),
    SystemAlarm("failsafe", "command_not_confirmed", "commandable", 3, "pulse",
                N_("{id} ({commune}): command not confirmed by read-back (see the command history)"),
                "command gate: the read-back did not show the commanded value"),
    SystemAlarm("failsafe", "command_rejected", "commandable", 3, "pulse",
                N_("{id} ({commune}): command rejected for this equipment (see the command history)"),
                "command gate: a command was rejected for this target"),
    # fail loud: what stops, degrades or blinds the fail-safe layer is P1 (raised within a second: the
    # fail-safe component probes its stores every 0.5 s, the health component watches the components)
    SystemAlarm("failsafe", "audit_unwritable", "system", 1, "steady",
                N_("Command audit log cannot be written: only safety-increasing commands are accepted"),
                "command gate: the audit log cannot be written"),
    # command audit log found damaged at start (failsafe.audit): a torn tail is cut aside (P2, one-off); any
    # other damage (a chain break, a bad MAC) leaves only safety-increasing commands accepted (P1, held)
    SystemAlarm("failsafe", "audit_damaged", "system", 1, "steady",
                N_("Command audit log damaged: commands refused except safety-increasing (run `scada audit verify`)"),
                "fail-safe layer: the command audit log's chain does not verify"),
    SystemAlarm("failsafe", "audit_repaired", "system", 2, "pulse",
                N_("Command audit log tail repaired: an interrupted write was cut aside at start (quarantine file)"),
                "fail-safe layer: a torn last entry of the audit log was set aside at start"),
    SystemAlarm("failsafe", "lease_store_unwritable", "system", 1, "steady",
                N_("Command lease store cannot be written: a restart would lose the leases in force"),
                "fail-safe layer: leases.json cannot be written"),
    SystemAlarm("failsafe", "lease_foreign_dropped", "system", 3, "pulse",
                N_("Lease from another configuration dropped, not re-applied (see the command audit log)"),
                "fail-safe layer: a persisted lease did not belong to this city's equipment"),
    SystemAlarm("server", "failsafe_down", "system", 1, "steady",
                N_("Fail-safe layer not running: commands refused, field-safety monitor stopped (see /health)"),
                "server: the fail-safe component failed to start or stopped"),
    SystemAlarm("server", "poll_down", "system", 1, "steady",
                N_("Poll scheduler not running: no field equipment is read, the field-safety monitor is blind"),
                "server: the poll component failed to start or stopped"),
    # communication loss (server.components.commwatch, from the poller's device status): one alarm per
    # equipment, or one per shared device (a bus, a BMS or fleet server) when the whole device is lost
    SystemAlarm("poll", "comm_lost", "polled", 3, "steady",
                N_("{id} ({commune}): communication lost, its state is unknown"),
                "poller: the equipment cannot be read (its device is lost or refuses us, or it alone is silent)",
                priorities=COMM_LOSS_PRIORITIES, suppressed_by_code="via_device_lost"),
    SystemAlarm("poll", "via_device_lost", "polled", 5, "steady",
                N_("{id} ({commune}): unreadable, its shared device is lost (annunciated once for the device)"),
                "poller: the shared device serving this equipment is lost"),
    SystemAlarm("poll", "device_comm_lost", "shared_device", 3, "steady",
                N_("Device {device}: communication lost, {count} equipment unknown ({templates})"),
                "poller: a device serving several equipment (bus, server) is lost or refuses us",
                priorities=COMM_LOSS_PRIORITIES),
    # historian store-and-forward buffer (historian.buffer)
    SystemAlarm("historian", "backend_down", "system", 3, "steady",
                N_("Historian database unavailable: values are buffered to disk and replayed later"),
                "historian: the database does not answer"),
    SystemAlarm("historian", "buffer_high", "system", 2, "steady",
                N_("Historian buffer above 80 %: the database has been unavailable for a long time"),
                "historian: store-and-forward buffer above its high level"),
    SystemAlarm("historian", "buffer_full", "system", 2, "pulse",
                N_("Historian buffer full: the oldest analogue values are being dropped"),
                "historian: store-and-forward buffer full"),
    SystemAlarm("historian", "quarantine", "system", 3, "pulse",
                N_("Historian: points rejected by the database were quarantined (administrator action needed)"),
                "historian: a batch rejected three times was set aside"),
    # work orders (server.components.workorders): open orders past their SLA due time (crews.yaml), present while
    # any is overdue; the text says how many and which come first
    SystemAlarm("workorders", "sla_breach", "system", 3, "steady",
                N_("Work orders past their SLA due time: {value}"),
                "work orders: open orders not done by the due time of their service's SLA (crews.yaml)", text=True),
    # the citizen intake's own listener (server.components.intake_http, settings intake.listen) could not start or
    # stopped by itself: the channels must use the main API meanwhile; the text says why
    SystemAlarm("workorders", "intake_down", "system", 2, "steady",
                N_("Citizen intake listener down: {value}"),
                "work orders: the citizen intake's own HTTP listener (settings intake.listen) is not serving",
                text=True),
    # failover pair (server.components.ha): etcd unreachable, so no server holds the field-write lease and the
    # field runs on its own; or a supervisor forced one server active without a lease (break-glass)
    SystemAlarm("ha", "no_coordination", "system", 1, "steady",
                N_("Failover pair: etcd unreachable, no server writes to the field (it runs on its own); "
                   "supervision goes on read-only"),
                "failover: the coordination service (etcd) does not answer this server"),
    SystemAlarm("ha", "forced_active", "system", 1, "steady",
                N_("Failover pair: this server was forced active without a lease (break-glass): {value}"),
                "failover: a supervisor forced this server to write to the field without the etcd lease", text=True),
    # an operator action answered after the bounded wait without the standby's copy (server.ha.replication), or
    # the pair cannot replicate (another configuration, a diverged journal): a takeover now would lose it
    SystemAlarm("ha", "not_in_sync", "system", 2, "steady",
                N_("Failover pair: standby not in sync: {value}"),
                "failover: the standby does not hold every operator action the active server answered", text=True),
    # an old active rejoined as standby with journal rows the new active never got: they were moved aside (kept in
    # a file, named with their count), the active's rows copied after the common point (server.ha.replication)
    SystemAlarm("ha", "set_aside", "system", 2, "pulse",
                N_("Failover pair: journal rows of the rejoining standby set aside: {value}"),
                "failover: an old active's own journal rows the new active never got were set aside at its rejoin",
                text=True),
    # edge pollers (server.components.edge, MQTT Sparkplug B): an edge on another tags.yaml than the server's (its
    # data refused until it reloads ours), or an edge's store-and-forward full (the oldest data dropped, counted);
    # present while any edge is in that state, the text names them
    SystemAlarm("edge", "config_mismatch", "system", 2, "steady",
                N_("Edge poller on another configuration, its data refused: {value}"),
                "edge: an edge's partition fingerprint (its tags.yaml) differs from the server's", text=True),
    SystemAlarm("edge", "store_full", "system", 2, "steady",
                N_("Edge store-and-forward full, oldest data dropped: {value}"),
                "edge: an edge's store-and-forward buffer is full, or dropped data while the server was away",
                text=True),
    # login throttling (server.auth): a burst of failed logins, raised by the server, cleared after a quiet minute
    SystemAlarm("auth", "login_burst", "system", 3, "steady",
                N_("Burst of failed logins (20 or more in 60 s for one account or one address): see the audit trail"),
                "login: many failed or refused logins in a short time (password guessing?)"),
    # configuration reload (server.app): validated and prepared, then a component failed to switch; every
    # component was rolled back to the running configuration (one code per component, so the alarm says which)
    *(SystemAlarm("server", f"reload_failed_{name}", "system", 1, "pulse",
                  N_("Configuration reload failed in {component}: rolled back to the running configuration "
                     "(the reason is in the journal and the audit trail)"),
                  f"server: a validated configuration reload failed in {name} and was rolled back",
                  fill=(("component", name),))
      for name in ("alarms", "historian", "poll", "edge", "failsafe", "stale", "health", "workorders", "hub")),
)
BY_KEY: dict[tuple[str, str], SystemAlarm] = {(a.source, a.code): a for a in SYSTEM_ALARMS}
BY_CODE: dict[str, SystemAlarm] = {a.code: a for a in SYSTEM_ALARMS}  # codes are unique across sources
#: monitor codes whose reset from the alarm list must reset the field-safety monitor first
MONITOR_CODES = frozenset(a.code for a in SYSTEM_ALARMS if a.source == "failsafe" and a.shape == "latched")


def _junctions(config: CityConfig) -> list[str]:
    return [e.id for e in config.equipment.values() if e.template == "junction"]


def _commandable(config: CityConfig) -> list[str]:
    """Equipment with at least one writable tag (what the command gate can address)."""
    return list(dict.fromkeys(t.equipment for t in config.tags if t.equipment and "w" in t.access))


def polled_equipment(config: CityConfig) -> list[str]:
    """Equipment read through a device of the city (what can lose communication)."""
    return [e.id for e in config.equipment.values() if e.device in config.devices]


def shared_devices(config: CityConfig) -> list[str]:
    """Devices that do not serve exactly one equipment (a bus, a BMS or fleet server): their loss is one
    alarm for the device, not one per equipment behind it."""
    return [name for name, d in config.devices.items() if len(set(d.equipment)) != 1]


def _scopes(config: CityConfig) -> dict[str, list[str]]:
    """Scope → the equipment (devices for ``shared_device``) it covers (computed once: "commandable" reads
    every tag of the city)."""
    return {"junction": _junctions(config), "commandable": _commandable(config), "system": [""],
            "polled": polled_equipment(config), "shared_device": shared_devices(config)}


def _instances(config: CityConfig) -> Iterator[tuple[SystemAlarm, str, str]]:
    """(condition, equipment id ("" for system, the device for shared_device), tag name) of every system-alarm tag."""
    scopes = _scopes(config)
    for a in SYSTEM_ALARMS:
        for eq_id in scopes[a.scope]:
            if a.scope == "shared_device":
                yield a, eq_id, a.tag(eq_id)
                continue
            eq = config.equipment.get(eq_id)
            yield a, eq_id, a.tag(eq.prefix if eq is not None else None)


def system_tags(config: CityConfig) -> list[TagDef]:
    """The bool tags behind the system alarms (added to the tag database by the server)."""
    out: list[TagDef] = []
    for a, key, name in _instances(config):
        eq_id = key if a.scope not in ("system", "shared_device") else ""
        out.append(TagDef(name=name, equipment=eq_id, tag=a.local_tag if eq_id else name, template_tag=a.local_tag,
                          device="server", address=f"server:{a.source}/{a.code}",
                          dtype="string" if a.text else "bool",
                          description=f"{key}: {a.description}" if key else a.description))
    return out


def rule_name(alarm: SystemAlarm, template: str | None = None) -> str:
    """``system.junction.conflicting_green`` (per template), ``system.historian.buffer_high`` or
    ``system.device.fleet-1.device_comm_lost`` (per shared device: ``template`` is the device's name)."""
    if alarm.scope == "shared_device":
        return f"{RESERVED_PREFIX}device.{template}.{alarm.code}"
    return f"{RESERVED_PREFIX}{template if alarm.scope != 'system' and template else alarm.source}.{alarm.code}"


def _priority(p: int) -> Literal[1, 2, 3, 4, "diagnostic"]:
    return "diagnostic" if p >= 5 else p  # type: ignore[return-value]  # 1..4 as the schema's literals


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
                                     priority=_priority(a.priority), latched=a.shape == "latched", message=a.messages(),
                                     service="system", area="system", description=a.description))
            continue
        if a.scope == "shared_device":
            out.extend(_device_rule(config, a, dev, services) for dev in scopes[a.scope])
            continue
        for tmpl in dict.fromkeys(config.equipment[e].template for e in scopes[a.scope]):
            svc = services.get(tmpl)
            covering = (rule_name(BY_CODE[a.suppressed_by_code], tmpl) if a.suppressed_by_code
                        else _covering_rule(config, a, tmpl))
            out.append(AlarmRuleSpec(name=rule_name(a, tmpl), template=tmpl, tag=a.local_tag, kind="discrete",
                                     value=True, priority=_priority(a.priority_for(tmpl)),
                                     latched=a.shape == "latched",
                                     message=a.messages(), service=svc.most_common(1)[0][0] if svc else "system",
                                     description=a.description, suppressed_by=covering))
    return out


def _device_rule(config: CityConfig, a: SystemAlarm, device: str,
                 services: dict[str, Counter[str]]) -> AlarmRuleSpec:
    """One rule per shared device: the most severe priority of what it serves, that equipment's service."""
    served = [config.equipment[e] for e in dict.fromkeys(config.devices[device].equipment) if e in config.equipment]
    templates = Counter(e.template for e in served)
    main = templates.most_common(1)[0][0] if templates else None
    svc = services.get(main or "")
    kinds = ", ".join(f"{n} {t}" for t, n in templates.most_common())
    message = {lang: text.replace("{templates}", kinds or gettext_in(lang, N_("none")))
               for lang, text in a.messages(device=device, count=str(len(served))).items()}
    return AlarmRuleSpec(name=rule_name(a, device), tag=a.tag(device), kind="discrete", value=True,
                         priority=_priority(min([a.priority_for(t) for t in templates] or [a.priority])),
                         message=message, service=svc.most_common(1)[0][0] if svc else "system", area="system",
                         description=f"{device}: {a.description}")


def city_rules(config: CityConfig) -> list[AlarmRuleSpec]:
    """The city's own rules, each ``bad_quality`` rule suppressed by design behind its equipment's comm-loss
    alarm (one annunciation per lost equipment, not one per tag; the rule still annunciates a bad quality
    that is not a comm loss). A rule that already names its own ``suppressed_by`` keeps it."""
    comm = BY_KEY[("poll", "comm_lost")]
    polled = {config.equipment[e].template for e in polled_equipment(config)}
    return [r.model_copy(update={"suppressed_by": rule_name(comm, r.template)})
            if r.kind == "bad_quality" and r.suppressed_by is None and r.template in polled else r
            for r in config.alarm_rules]


def all_rules(config: CityConfig) -> list[AlarmRuleSpec]:
    """What the alarm engine compiles: :func:`city_rules`, then the built-in :func:`system_rules`."""
    return [*city_rules(config), *system_rules(config)]


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


def remedies_of(rule: str) -> list[str]:
    """The commands that end a built-in rule's condition (``system.junction.uncommanded_change`` →
    ``["return_to_local", "adopt"]``); [] for the others and for the city's own rules."""
    a = parse_rule(rule)
    if a is None or not a.remedies:
        return []
    template = rule[len(RESERVED_PREFIX):].rsplit(".", 1)[0]
    return list(a.remedies_for(template))


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
        self._text: set[int] = set()  # text-shaped conditions' tags ("" = no condition)
        for a, _, name in _instances(config):
            i = db.index.get(name)
            if i is not None:
                self._by_source.setdefault(a.source, []).append(i)
                if a.text:
                    self._text.add(i)

    def tag_index(self, source: str, code: str, equipment: str = "") -> int | None:
        a = BY_KEY.get((source, code))
        if a is None:
            return None
        if a.scope == "shared_device":  # ``equipment`` names the device
            return self.db.index.get(a.tag(equipment))
        eq = self.config.equipment.get(equipment)
        if a.scope != "system" and eq is None:
            return None
        return self.db.index.get(a.tag(eq.prefix if eq is not None else None))

    def initialise(self, source: str) -> int:
        """Set every tag of ``source`` to 0 (good) when the source starts: "no condition" is known. A tag
        that already has a value (the source raised something first) is left alone."""
        fresh = [(i, Sample.good("" if i in self._text else 0)) for i in self._by_source.get(source, [])
                 if self.db.receive_ns[i] == 0]
        if fresh:
            self.db.apply_samples(fresh)
        return len(fresh)

    def raise_(self, source: str, code: str, equipment: str = "", active: bool = True, *, detail: str = "") -> bool:
        """Set the condition (or clear it); a pulse-shaped condition is set and cleared at once. A text-shaped
        one takes ``detail`` as its text (what was seen; a new detail while present updates the alarm's value).

        Returns False (and logs) when the condition has no tag: an unknown code, or equipment that
        is not in the city (nothing is lost: the source also logs and journals it).
        """
        return self.raise_many(source, [(code, equipment, active, detail)]) == 1

    def raise_many(self, source: str, changes: Iterable[tuple[str, str, bool, str]]) -> int:
        """``raise_`` for several conditions of ``source`` at once, each ``(code, equipment, active, detail)``:
        one tag-database batch, so one alarm-engine pass and one journal transaction for the lot (a city's
        start-up or a lost bus raises hundreds; one by one, each was a durable journal commit). The pulses'
        clearing values go in a second batch. A condition named twice splits the batch there, so the result
        is that of the calls one by one. Returns how many had a tag (the others are logged, as by ``raise_``).
        """
        sets: list[tuple[int, Sample]] = []
        clears: list[tuple[int, Sample]] = []  # the pulses' 0, after their 1
        in_batch: set[int] = set()
        done = 0
        for code, equipment, active, detail in changes:
            i = self.tag_index(source, code, equipment)
            if i is None:
                log.warning("system alarm %s/%s on %r has no tag in this city", source, code, equipment or "system")
                continue
            a = BY_KEY[(source, code)]
            self.raised += 1
            done += 1
            if a.shape == "pulse" and not a.text and not active:
                continue  # a pulse has no "clear"
            if i in in_batch:
                self._apply_batches(sets, clears)
                in_batch.clear()
            in_batch.add(i)
            if a.text:
                sets.append((i, Sample.good((detail or a.code) if active else "")))
            elif a.shape == "pulse":
                sets.append((i, Sample.good(1)))
                clears.append((i, Sample.good(0)))
            else:
                sets.append((i, Sample.good(1 if active else 0)))
        self._apply_batches(sets, clears)
        return done

    def _apply_batches(self, sets: list[tuple[int, Sample]], clears: list[tuple[int, Sample]]) -> None:
        for batch in (sets, clears):
            if batch:
                self.db.apply_samples(list(batch))
                batch.clear()


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


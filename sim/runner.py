"""The simulator runner: every model of a city, its protocol servers, a simulation clock, faults.

::

    CityConfig ──► models (template → class, one random.Random per equipment: seed + id)
        │              │ step(now_s) every tick on the simulation clock (× speed)
        │              ▼
        └──► endpoints (tags.yaml `endpoints:`) ──► one server per endpoint, bound to 127.0.0.1
                 snmp-traffic, snmp-cctv      sim.snmp_agent.SnmpAgent        {id: model}
                 modbus-1..6                  sim.modbus_server.ModbusGateway {unit: model}
                 opcua-bms, opcua-fleet       sim.opcua_server.OpcUaModelServer (publish() after each step)
                 panels-bus-1, parking-bus-1  sim.serial_server.SerialBus      {unit: model}, pty
                       │
                       ▼
              state_dir/endpoints.json   {"modbus-1": "127.0.0.1:40123", "panels-bus-1": "/dev/pts/7", ...}
                                         = load_city(..., endpoint_overrides=json.load(...))
              state_dir/control.json     {"url": "http://127.0.0.1:PORT"}  (the control API, sim.control_api)

Ports: ``ports="test"`` binds every TCP/UDP server on port 0 (the OS picks) and puts the serial
links in ``state_dir``; ``ports="demo"`` uses the fixed addresses of tags.yaml's ``endpoints:``.

Clock: ``now = start_time + elapsed_real × speed + jumps``. Its two origins are read at the same
instant, once :meth:`Simulator.start` has everything listening: the monotonic origin of
``elapsed_real`` and, when no ``start_time`` is given, the wall clock as ``start_time`` (so at speed ×1
the simulation clock IS the wall clock, whatever the start-up took; the models' first step and first
publish use the wall time read when start() began). Every model, every scenario action and every
server's source timestamps follow this one clock (``clock()`` / ``now``); a change made between two
steps (an injected fault) is stamped by the next step, at most ``tick_s`` after it happened.
``autostep=True`` steps every model each ``tick_s`` real seconds; with ``autostep=False`` time moves
only through :meth:`Simulator.advance` (tests: fully deterministic for a seed). Scenario actions fire
at their offset: the models are stepped to the action's instant, the action is applied, then
stepping continues.

Faults: :meth:`Simulator.inject` / :meth:`Simulator.clear` go to the model (device faults: each
model documents its names), :meth:`Simulator.comm_fault` to the server that serves the equipment
(drop / delay / corrupt / disconnect / None).

Crews: :class:`sim.crews.FieldCrews` runs after every step of the models: a vehicle on site for a
mission (its OPC UA ``mission`` node, written by the control room) repairs the equipment there and
drives back to its depot.

Servers whose module has not landed yet are skipped with one warning (their endpoints are then
missing from endpoints.json), and so are equipment whose model class is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import json
import logging
import os
import random
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scada.config import CityConfig, EquipmentDef
from scada.config.yamlsource import load_yaml
from sim.control_api import ControlApi
from sim.crews import FieldCrews

log = logging.getLogger(__name__)

#: template → model class ("module:Class"), per docs/contracts.md
MODEL_CLASSES: dict[str, str] = {
    "junction": "sim.junction:JunctionController",
    "camera": "sim.camera:Camera",
    "lighting_cabinet": "sim.lighting:LightingCabinet",
    "bollard": "sim.bollard:Bollard",
    "parking": "sim.parking:ParkingCounter",
    "panel": "sim.panel:InfoPanel",
    "building": "sim.building:Building",
    "vehicle": "sim.fleet:Vehicle",
}
#: protocol → server class
SERVER_CLASSES: dict[str, str] = {
    "snmp": "sim.snmp_agent:SnmpAgent",
    "modbus_tcp": "sim.modbus_server:ModbusGateway",
    "opcua": "sim.opcua_server:OpcUaModelServer",
    "serial_ascii": "sim.serial_server:SerialBus",
    "modbus_rtu": "sim.serial_server:SerialBus",
}
SERIAL_KINDS = {"serial_ascii": "panel_ascii", "modbus_rtu": "modbus_rtu"}
OPCUA_KINDS = {"building": "bms", "vehicle": "fleet"}
DEMO_CONTROL_PORT = 15080
#: SNMPv3 keys of the simulated controllers (the drivers read the same environment variables)
DEFAULT_SNMP_AUTH_KEY = "simulator-auth-key"
DEFAULT_SNMP_PRIV_KEY = "simulator-priv-key"


def _load(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr)


def _missing(exc: BaseException, spec: str) -> bool:
    """True when ``exc`` says that ``spec``'s own module (or attribute) is not there yet."""
    module_name = spec.partition(":")[0]
    if isinstance(exc, ModuleNotFoundError):
        return exc.name is not None and module_name.startswith(exc.name)
    return isinstance(exc, AttributeError)


def model_class(template: str) -> Any | None:
    """The model class for a template, or None when its module has not landed yet."""
    spec = MODEL_CLASSES.get(template)
    if spec is None:
        return None
    try:
        return _load(spec)
    except (ModuleNotFoundError, AttributeError) as exc:
        if _missing(exc, spec):
            return None
        raise


@dataclass
class EndpointPlan:
    """One logical endpoint: its protocol, configured address and the equipment it serves."""

    name: str
    protocol: str
    address: str  # from tags.yaml endpoints: ("127.0.0.1:15021" or a serial path)
    equipment: list[str] = field(default_factory=list)
    connection: dict[str, Any] = field(default_factory=dict)  # the shared device's connection (opcua path...)


def plan_endpoints(config: CityConfig) -> dict[str, EndpointPlan]:
    """Group the equipment by logical endpoint, reading the raw ``endpoints:``/``devices:`` of tags.yaml.

    CityConfig has the endpoints already resolved to host/port; the runner needs their names.
    """
    tags_file = config.files[0]
    tree, problems = load_yaml(tags_file)
    if tree is None:
        raise ValueError("; ".join(str(p) for p in problems))
    addresses = {str(k): str(v) for k, v in (tree.get("endpoints") or {}).items()}
    device_endpoint: dict[str, str] = {}
    for raw in tree.get("devices") or []:
        conn = raw.get("connection") or {}
        if "endpoint" in conn:
            device_endpoint[str(raw["name"])] = str(conn["endpoint"])
    plans: dict[str, EndpointPlan] = {}
    for eq in config.equipment.values():
        name = eq.params.get("endpoint") or device_endpoint.get(eq.device)
        if name is None:
            log.warning("%s: no logical endpoint (device %s); not simulated", eq.id, eq.device)
            continue
        protocol = config.templates[eq.template].protocol
        plan = plans.get(str(name))
        if plan is None:
            device = config.devices.get(eq.device)
            conn = dict(device.connection) if device is not None and eq.device != eq.id else {}
            plan = plans[str(name)] = EndpointPlan(str(name), protocol, addresses.get(str(name), ""), [], conn)
        elif plan.protocol != protocol:
            raise ValueError(f"endpoint {name}: serves both {plan.protocol} and {protocol} equipment ({eq.id})")
        plan.equipment.append(eq.id)
    return plans


def _port_of(address: str) -> int:
    _host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"not a host:port address: {address!r}")
    return int(port)


class Simulator:
    """The whole simulated city. Use ``async with Simulator(...) as sim:`` or start()/aclose().

    Public API:

    - ``Simulator(config, seed, speed=1.0, ports="test"|"demo", state_dir=Path, *, start_time=None,
      tick_s=1.0, autostep=True, control_port=<0 test / 15080 demo, None = off>, echo=False)``
    - ``await start()``, ``await aclose()``
    - ``now`` (simulation epoch seconds), ``endpoints`` (the endpoints.json dict), ``models``,
      ``servers``, ``server_of(equipment_id)``, ``skipped`` (what was not simulated and why),
      ``control_url``
    - ``inject(equipment_id, fault, **params)``, ``clear(equipment_id, fault=None, **params)``,
      ``await comm_fault(equipment_id, kind, **params)`` (kind None clears)
    - ``await advance(seconds)`` (jump the clock and step), ``await step()`` (one tick now)
    - ``play(scenario)`` (a :class:`sim.scenarios.Scenario`, starts now), ``await wait_scenario()``
    """

    def __init__(self, config: CityConfig, seed: int, speed: float = 1.0, ports: str = "test",
                 state_dir: Path | str = Path(".scada-sim"), *, start_time: float | None = None,
                 tick_s: float = 1.0, autostep: bool = True, control_port: int | None = -1,
                 echo: bool = False) -> None:
        if ports not in ("test", "demo"):
            raise ValueError(f"ports must be test or demo, got {ports!r}")
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self.config = config
        self.seed = seed
        self.speed = float(speed)
        self.ports = ports
        self.state_dir = Path(state_dir)
        self.tick_s = tick_s
        self.autostep = autostep
        self.control_port = (DEMO_CONTROL_PORT if ports == "demo" else 0) if control_port == -1 else control_port
        self.echo = echo
        self._start_time = start_time
        self.models: dict[str, Any] = {}
        self.servers: dict[str, Any] = {}
        self.plans: dict[str, EndpointPlan] = {}
        self.endpoints: dict[str, str] = {}
        self.skipped: dict[str, str] = {}
        self.control_url: str | None = None
        self.start_seconds = 0.0
        self.timings: dict[str, float] = {}  # start phases: models, first_step, server:<endpoint>, total
        self.steps = 0
        self.step_errors = 0
        self._server_by_eq: dict[str, Any] = {}
        self._t0_sim = 0.0
        self._t0_mono = 0.0
        self._jump = 0.0
        self._now = 0.0
        self._task: asyncio.Task[None] | None = None
        self._control: Any = None
        self._pending: list[tuple[float, int, Any]] = []  # (due sim time, order, action)
        self._order = 0
        self._scenario_done: asyncio.Event | None = None
        self._failing: set[str] = set()
        self._started = False
        self.crews: FieldCrews | None = None  # the vehicles' crews: missions repaired on site (sim.crews)

    # ------------------------------------------------------------------ clock
    @property
    def now(self) -> float:
        """Simulation time reached by the last step (epoch seconds)."""
        return self._now

    def clock(self) -> float:
        """What the simulation clock reads right now (ahead of :attr:`now` between steps)."""
        if not self.autostep:
            return self._t0_sim + self._jump
        return self._t0_sim + (time.monotonic() - self._t0_mono) * self.speed + self._jump

    # ------------------------------------------------------------------ building
    def build_models(self) -> None:
        """Instantiate every model the config describes (skipping templates whose class is missing)."""
        missing: dict[str, int] = defaultdict(int)
        for eq in self.config.equipment.values():
            cls = model_class(eq.template)
            if cls is None:
                missing[eq.template] += 1
                continue
            rng = random.Random(f"{self.seed}:{eq.id}")
            self.models[eq.id] = cls.from_equipment(eq, rng)
        for template, n in missing.items():
            reason = f"model {MODEL_CLASSES.get(template, '?')} not available"
            self.skipped[f"template:{template}"] = reason
            log.warning("%s: %d equipment not simulated (%s)", template, n, reason)
        self.crews = FieldCrews(self.models, self.config.equipment, self.clear)

    def _server_args(self, plan: EndpointPlan) -> tuple[str, dict[str, Any]] | None:
        """(server class spec, constructor kwargs) for an endpoint, or None if it has no model."""
        eqs: list[EquipmentDef] = [self.config.equipment[i] for i in plan.equipment if i in self.models]
        if not eqs:
            return None
        spec = SERVER_CLASSES.get(plan.protocol)
        if spec is None:
            raise ValueError(f"endpoint {plan.name}: no simulator server for protocol {plan.protocol}")
        serial = plan.protocol in SERIAL_KINDS
        port = 0
        if not serial:
            port = _port_of(plan.address) if self.ports == "demo" else 0
        kw: dict[str, Any]
        if plan.protocol == "snmp":
            kw = {"models": {e.id: self.models[e.id] for e in eqs}, "host": "127.0.0.1", "port": port,
                  "v3_auth_key": os.environ.get("SCADA_SNMP_AUTH_KEY", DEFAULT_SNMP_AUTH_KEY),
                  "v3_priv_key": os.environ.get("SCADA_SNMP_PRIV_KEY", DEFAULT_SNMP_PRIV_KEY)}
        elif plan.protocol == "modbus_tcp":
            kw = {"units": {int(e.params["unit"]): self.models[e.id] for e in eqs}, "host": "127.0.0.1",
                  "port": port}
        elif plan.protocol == "opcua":
            kinds = {OPCUA_KINDS.get(e.template) for e in eqs}
            if len(kinds) != 1 or None in kinds:
                raise ValueError(f"endpoint {plan.name}: OPC UA serves buildings or vehicles, "
                                 f"got {sorted(map(str, kinds))}")
            kw = {"kind": kinds.pop(), "models": {e.id: self.models[e.id] for e in eqs}, "host": "127.0.0.1",
                  "port": port, "path": str(plan.connection.get("path", "/")),
                  "security": str(plan.connection.get("security", "none")), "cert_dir": self.state_dir / "certs"}
        else:
            link = Path(plan.address) if self.ports == "demo" else self.state_dir / plan.name
            kw = {"kind": SERIAL_KINDS[plan.protocol], "link": link,
                  "devices": {int(e.params["unit"]): self.models[e.id] for e in eqs}}
        return spec, kw

    async def start(self) -> None:
        """Build the models, step them once, start every server, write endpoints.json, start ticking."""
        if self._started:
            return
        self._started = True
        t0 = time.perf_counter()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._t0_sim = self._start_time if self._start_time is not None else time.time()  # first step's instant
        self._now = self._t0_sim
        self.build_models()
        self.timings["models"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        self._step_models(self._t0_sim)
        self.timings["first_step"] = time.perf_counter() - t1
        self.plans = plan_endpoints(self.config)
        try:
            for plan in self.plans.values():
                t1 = time.perf_counter()
                await self._start_server(plan)
                if plan.name in self.servers:
                    self.timings[f"server:{plan.name}"] = time.perf_counter() - t1
            if self.control_port is not None:
                self._control = ControlApi(self, port=self.control_port)
                await self._control.start()
                self.control_url = self._control.url
        except BaseException:  # a failed or cancelled start closes what it opened, then re-raises
            await self.aclose()
            raise
        self._write_state()
        await self._publish()
        self.start_seconds = self.timings["total"] = time.perf_counter() - t0
        # the clock starts now, its two origins read together: the wall time read at the top of start()
        # paired with this monotonic reading put every source timestamp the start-up time (seconds) behind
        self._t0_mono = time.monotonic()
        if self._start_time is None:
            self._t0_sim = time.time()
        self._announce()
        if self.autostep:
            self._task = asyncio.create_task(self._run(), name="simulator-clock")

    async def _start_server(self, plan: EndpointPlan) -> None:
        args = self._server_args(plan)
        if args is None:
            self.skipped[plan.name] = "no simulated equipment"
            return
        spec, kw = args
        try:
            cls = _load(spec)
        except (ModuleNotFoundError, AttributeError) as exc:
            if not _missing(exc, spec):
                raise
            self.skipped[plan.name] = f"server {spec} not available"
            log.warning("%s: not served (%s not available yet)", plan.name, spec)
            return
        accepted = inspect.signature(cls).parameters
        if "cert_dir" in kw and "cert_dir" not in accepted:
            del kw["cert_dir"]
        if "seed" in accepted:  # servers with their own randomness (drop probability) follow the seed
            kw["seed"] = self.seed
        if "link" in kw:
            Path(kw["link"]).parent.mkdir(parents=True, exist_ok=True)
        server = cls(**kw)
        try:
            await server.start()
        except OSError as exc:
            where = plan.address if self.ports == "demo" else "port 0"
            raise OSError(exc.errno, f"{plan.name}: cannot listen on {where}: {exc.strerror or exc}") from exc
        self.servers[plan.name] = server
        self.endpoints[plan.name] = str(server.endpoint)
        for eq_id in plan.equipment:
            if eq_id in self.models:
                self._server_by_eq[eq_id] = server
        log.info("%s: %s serving %d equipment on %s", plan.name, plan.protocol, len(plan.equipment), server.endpoint)

    def _write_state(self) -> None:
        # atomic replace, endpoints first: a parent process polls control.json (its pid) then reads endpoints
        control = {"url": self.control_url, "pid": os.getpid(), "seed": self.seed, "speed": self.speed}
        for name, data in (("endpoints.json", dict(sorted(self.endpoints.items()))), ("control.json", control)):
            tmp = self.state_dir / f".{name}.tmp"
            tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
            os.replace(tmp, self.state_dir / name)

    def _announce(self) -> None:
        lines = [f"simulator: {len(self.models)} equipment, seed {self.seed}, speed ×{self.speed:g}, "
                 f"started in {self.start_seconds:.1f} s"]
        for name in sorted(self.endpoints):
            plan = self.plans[name]
            lines.append(f"  {name:<14} {plan.protocol:<12} {self.endpoints[name]:<28} {len(plan.equipment)} equipment")
        for name, reason in sorted(self.skipped.items()):
            lines.append(f"  {name:<14} skipped: {reason}")
        if self.control_url:
            lines.append(f"  control API    {self.control_url}  (POST /fault, /clear, /comm; GET /status)")
        lines.append(f"  endpoints file {self.state_dir / 'endpoints.json'}")
        for line in lines:
            if self.echo:
                print(line, flush=True)
            else:
                log.info("%s", line)

    async def aclose(self) -> None:
        """Stop ticking and close every server (idempotent)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._control is not None:
            control, self._control = self._control, None
            await control.aclose()
        servers, self.servers = self.servers, {}
        for name, server in reversed(list(servers.items())):
            try:
                await server.aclose()
            except Exception:  # one server's failing close must not leave the others open (logged)
                log.exception("%s: error while closing", name)

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ stepping
    def _step_models(self, t: float) -> None:
        for eq_id, model in self.models.items():
            try:
                model.step(t)
            except Exception:  # a model's bug must not stop the other equipment: counted, logged once
                self.step_errors += 1
                if eq_id not in self._failing:  # log once per equipment, not per tick
                    self._failing.add(eq_id)
                    log.exception("%s: model step failed", eq_id)
        if self.crews is not None:  # after the vehicles moved: who is on site, what is repaired
            self.crews.step(t)

    async def _publish(self) -> None:
        for name, server in list(self.servers.items()):
            publish = getattr(server, "publish", None)
            if publish is None:
                continue
            try:
                await publish(self._now)
            except Exception:  # one protocol server's failure must not stop the others' publishing (logged)
                log.exception("%s: publish failed", name)

    async def _advance_to(self, t: float) -> None:
        """Step to ``t``, firing due scenario actions at their own instants."""
        while self._pending and self._pending[0][0] <= t:
            due, _, action = self._pending.pop(0)
            if due > self._now:
                self._step_models(due)
                self._now = due
            await self._apply(action)
            if not self._pending and self._scenario_done is not None:
                self._scenario_done.set()
        if t > self._now:
            self._step_models(t)
            self._now = t
        self.steps += 1
        await self._publish()

    async def step(self) -> None:
        """One tick: step every model to the clock's current reading and publish."""
        await self._advance_to(max(self.clock(), self._now))

    async def advance(self, seconds: float) -> None:
        """Jump the simulation clock ``seconds`` ahead and step (works with and without autostep)."""
        if seconds < 0:
            raise ValueError(f"cannot go back in time, got {seconds}")
        self._jump += seconds
        await self.step()

    async def _run(self) -> None:
        next_tick = time.monotonic()
        while True:
            next_tick += self.tick_s
            try:
                await self.step()
            except Exception:  # the clock must keep ticking: logged, and on to the next tick
                log.exception("simulator: step at %.1f failed", self._now)
            delay = next_tick - time.monotonic()
            if delay < 0:  # overrun: do not try to catch up with a burst of ticks
                next_tick = time.monotonic()
                delay = 0
            await asyncio.sleep(delay)

    # ------------------------------------------------------------------ faults
    def _model(self, equipment_id: str) -> Any:
        model = self.models.get(equipment_id)
        if model is None:
            if equipment_id in self.config.equipment:
                raise KeyError(f"{equipment_id}: not simulated ({self.config.equipment[equipment_id].template} "
                               f"model not available)")
            raise KeyError(f"unknown equipment {equipment_id!r}")
        return model

    def server_of(self, equipment_id: str) -> Any:
        """The server serving ``equipment_id`` (KeyError if none)."""
        self._model(equipment_id)
        server = self._server_by_eq.get(equipment_id)
        if server is None:
            raise KeyError(f"{equipment_id}: its endpoint is not served")
        return server

    def inject(self, equipment_id: str, fault: str, **params: Any) -> None:
        """Inject a device fault into one equipment's model."""
        self._model(equipment_id).inject(fault, **params)
        log.info("%s: fault %s injected %s", equipment_id, fault, params or "")

    def clear(self, equipment_id: str, fault: str | None = None, **params: Any) -> None:
        """Clear one device fault (all if ``fault`` is None)."""
        self._model(equipment_id).clear(fault, **params)
        log.info("%s: fault %s cleared", equipment_id, fault or "(all)")

    async def comm_fault(self, equipment_id: str, kind: str | None, **params: Any) -> None:
        """Set (kind drop/delay/corrupt/disconnect) or clear (None) a communication fault."""
        result = self.server_of(equipment_id).set_comm_fault(equipment_id, kind, **params)
        if inspect.isawaitable(result):
            await result

    # ------------------------------------------------------------------ scenarios
    def play(self, scenario: Any, start: float | None = None) -> int:
        """Schedule a :class:`sim.scenarios.Scenario` from ``start`` (default now); return the action count."""
        begin = self._now if start is None else start
        actions = scenario.resolve(self.config, self.seed, set(self.models))
        for action in actions:
            self._order += 1
            self._pending.append((begin + action.at_s, self._order, action))
        self._pending.sort(key=lambda p: (p[0], p[1]))
        self._scenario_done = asyncio.Event()
        if not self._pending:
            self._scenario_done.set()
        log.info("scenario %s: %d actions over %.0f s of simulated time", scenario.name, len(actions),
                 max((a.at_s for a in actions), default=0.0))
        return len(actions)

    async def wait_scenario(self, timeout_s: float | None = None) -> None:
        """Wait until every scheduled scenario action has fired."""
        if self._scenario_done is None:
            return
        await asyncio.wait_for(self._scenario_done.wait(), timeout_s)

    @property
    def pending_actions(self) -> int:
        return len(self._pending)

    async def _apply(self, action: Any) -> None:
        for eq_id in action.equipment:
            try:
                if action.do == "inject":
                    self.inject(eq_id, action.fault, **action.params)
                elif action.do == "clear":
                    self.clear(eq_id, action.fault, **action.params)
                elif action.do == "comm_fault":
                    await self.comm_fault(eq_id, action.kind, **action.params)
                elif action.do == "clear_comm":
                    await self.comm_fault(eq_id, None)
            except (KeyError, ValueError, TypeError) as exc:
                log.warning("%s: scenario action at %s (%s) failed: %s", eq_id, action.source, action.do, exc)
            except Exception:  # an unexpected failure of one action must not end the scenario (logged)
                log.exception("%s: scenario action at %s (%s) failed", eq_id, action.source, action.do)

    # ------------------------------------------------------------------ introspection
    def status(self) -> dict[str, Any]:
        return {"sim_time": self._now, "speed": self.speed, "seed": self.seed, "steps": self.steps,
                "equipment": len(self.models), "endpoints": dict(self.endpoints), "skipped": dict(self.skipped),
                "pending_actions": len(self._pending), "step_errors": self.step_errors}

    def equipment_ids(self, ids: Iterable[str] | None = None) -> list[str]:
        return sorted(self.models if ids is None else ids)


__all__ = ["MODEL_CLASSES", "SERVER_CLASSES", "EndpointPlan", "Simulator", "model_class", "plan_endpoints"]

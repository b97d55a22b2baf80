"""Server settings: where to listen, TLS, data directory, historian backend, limits.

Read from an optional YAML file (``scada server --settings server.yaml``), then overridden by command
line options. Every field has a safe default except what must be chosen on purpose::

    listen: {host: 127.0.0.1, port: 8480}
    tls: {cert: /etc/scada/server.crt, key: /etc/scada/server.key}   # required unless host is loopback
    data_dir: scada-data            # users.sqlite, journal.sqlite, audit.sqlite, historian/, failsafe/, keys/,
                                    # server.json (scada.datadir)
    tags: tags.yaml
    alarms: alarms.yaml
    commands: null                  # command vocabulary (default: commands.yaml next to tags)
    endpoints_file: null            # the simulator's endpoints JSON (overrides tags.yaml `endpoints:`)
    token_ttl: 8h                   # absolute: a shift
    session: {idle_timeout: 30min, read_only_idle_timeout: 0}   # 0 = none (see server.auth)
    login: {max_failures: 5, window: 5min, lockout: 1min, max_lockout: 15min, max_per_hour: 100,
            address_max_failures: 20, burst_failures: 20}        # see scada.throttle
    historian: {backend: embedded}  # embedded | influxdb | none
    #   influxdb: {url: http://127.0.0.1:8086, org: city, bucket: scada, token_env: SCADA_INFLUX_TOKEN}
    websocket: {batch: 100ms, queue: 16}
    poll_thread: false              # true: poll scheduler + drivers in their own thread and event loop
    lang: null                      # fr | en: the API's texts and pushes (default: tags.yaml's site lang)
    intake: null                    # {listen: {host: 127.0.0.1, port: 8481}}: the citizen intake's own listener
                                    #   (its own thread and event loop; server.components.intake_http)
    ha: null                        # the failover pair: {role: primary|standby, name, etcd: [urls],
                                    #   lease_ttl_s: 3, margin: 0.5s, key: /scada/active, peer_url} (docs/ha.md)
    http:
      max_body: 1MiB                # request body limit, enforced before parsing (413 too_large)
      max_body_by_prefix: {}        # e.g. {/api/v1/photos: 10MiB}: the longest matching path prefix wins
      trusted_proxies: []           # reverse proxies (addresses or networks) whose X-Forwarded-For is believed

Plain HTTP is refused on anything but a loopback address: a control-room API is never served in
clear on a network (IEC 62443 FR4).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ByteSize, ConfigDict, Field, ValidationError, field_validator
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from scada.config.units import parse_duration
from scada.errors import ConfigError, ConfigProblem
from scada.i18n import Lang

Duration = Annotated[float, BeforeValidator(parse_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Listen(_Strict):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8480


class Tls(_Strict):
    cert: Path
    key: Path
    client_ca: Path | None = None  # require client certificates signed by this CA


class Login(_Strict):
    """Login throttling (:mod:`scada.throttle`) and the burst alarm (``system.auth.login_burst``)."""

    max_failures: Annotated[int, Field(ge=1)] = 5  # per account in ``window``, then a lock-out
    window: Duration = 300.0
    lockout: Duration = 60.0  # the first lock-out; doubled on each further one within an hour
    max_lockout: Annotated[Duration, Field(gt=0, le=900.0)] = 900.0  # ASVS V2.2: never more than ~15 min
    max_per_hour: Annotated[int, Field(ge=1, le=100)] = 100  # ASVS V2.2.1: failed attempts per account
    address_max_failures: Annotated[int, Field(ge=1)] = 20  # per address in ``window`` (spraying)
    burst_failures: Annotated[int, Field(ge=1)] = 20  # in 60 s, one account or one address: P3 system alarm


class SessionLimits(_Strict):
    """Idle-session timeout (each REST request refreshes it): for roles that can act (operator and above),
    and for read-only roles (viewer). 0 = none; the absolute ``token_ttl`` always applies."""

    idle_timeout: Annotated[Duration, Field(ge=0)] = 1800.0
    read_only_idle_timeout: Annotated[Duration, Field(ge=0)] = 0.0


class Influx(_Strict):
    """InfluxDB: version 2 (org, bucket, token from ``token_env``) or 1 (database = bucket, optional retention
    policy, user + password from ``password_env``). Secrets come from the environment, never from this file."""

    url: str
    org: str = ""
    bucket: str = "scada"
    token_env: str = "SCADA_INFLUX_TOKEN"  # noqa: S105 - the name of the variable holding it, not a secret
    version: Literal[1, 2] = 2
    retention_policy: str | None = None
    username: str | None = None
    password_env: str = "SCADA_INFLUX_PASSWORD"  # noqa: S105 - a variable name, not a secret


class Historian(_Strict):
    backend: Literal["embedded", "influxdb", "none"] = "embedded"
    influxdb: Influx | None = None


class WebSocket(_Strict):
    batch: Duration = 0.1
    queue: Annotated[int, Field(ge=1, le=1000)] = 16


class Http(_Strict):
    """HTTP hardening: body limits (server.middleware) and which peers may speak for a client (uvicorn's
    proxy headers). With no trusted proxy, the audit source is the TCP peer, whatever headers say."""

    max_body: Annotated[ByteSize, Field(ge=1024)] = ByteSize(1 << 20)
    max_body_by_prefix: dict[str, Annotated[ByteSize, Field(ge=1024)]] = {}
    trusted_proxies: tuple[str, ...] = ()

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for v in value:
            ipaddress.ip_network(v, strict=False)  # ValueError: "... does not appear to be an IPv4 or IPv6"
        return value


class IntakeHttp(_Strict):
    """The citizen intake's own HTTP listener (server.components.intake_http): the channels' routes served from
    their own thread and event loop, so a report is answered whatever the main loop is doing. Absent: the main
    API serves them only. TLS is the main API's (``tls``), and the same loopback-only rule for plain HTTP."""

    listen: Listen  # no default port: it must not be the main API's


class Ha(_Strict):
    """The failover pair (server.components.ha, docs/ha.md): who is active is a lease in etcd. Absent: a single
    server, which always writes (nothing changes)."""

    role: Literal["primary", "standby"] = "primary"  # at a joint start the primary takes the lease first
    name: Annotated[str, Field(min_length=1, max_length=64)]  # this server in the pair: "main room"...
    etcd: Annotated[tuple[str, ...], Field(min_length=1)]  # the etcd members' client URLs
    lease_ttl_s: Annotated[int, Field(ge=2, le=60)] = 3
    margin: Annotated[Duration, Field(ge=0.1, le=5.0)] = 0.5  # off every lease deadline, onto the takeover wait
    key: str = "/scada/active"
    peer_url: str | None = None  # the other server's API URL, named in the standby's refusals
    #: the pair's shared secret (a file, 0600, the same on both): the standby's replication stream from the
    #: active (server.ha.replication) authenticates with it. Absent: no replication, the standby polls itself
    secret_file: Path | None = None
    sync_timeout: Annotated[Duration, Field(ge=0.05, le=10.0)] = 1.0  # an operator action waits for the standby


class ServerSettings(_Strict):
    listen: Listen = Listen()
    tls: Tls | None = None
    data_dir: Path = Path("scada-data")
    tags: Path = Path("tags.yaml")
    alarms: Path | None = Path("alarms.yaml")
    commands: Path | None = None  # the command vocabulary; default commands.yaml next to the tags file
    endpoints_file: Path | None = None
    token_ttl: Duration = 8 * 3600.0
    session: SessionLimits = SessionLimits()
    login: Login = Login()
    historian: Historian = Historian()
    websocket: WebSocket = WebSocket()
    http: Http = Http()
    # the poll scheduler and drivers in their own thread + event loop: keeps the API answering when protocol
    # parsing saturates, but measured slower for polling itself (GIL hand-offs), so off by default
    poll_thread: bool = False
    # the language of the API's texts and pushes when a request names none (``?lang=``); None: the site's
    lang: Lang | None = None
    ha: Ha | None = None  # the failover pair; None: a single server
    intake: IntakeHttp | None = None  # the citizen intake's own listener; None: the main API only

    def problems(self) -> list[str]:
        """What makes these settings unusable (checked before anything starts)."""
        out: list[str] = []
        if self.tls is None and not is_loopback(self.listen.host):
            out.append(f"listen.host {self.listen.host!r} is not a loopback address: plain HTTP is only served on "
                       f"loopback; configure tls.cert and tls.key to listen on a network")
        if self.tls is None and self.intake is not None and not is_loopback(self.intake.listen.host):
            out.append(f"intake.listen.host {self.intake.listen.host!r} is not a loopback address: plain HTTP is "
                       f"only served on loopback; configure tls.cert and tls.key to listen on a network")
        if self.tls is not None:
            for label, path in (("tls.cert", self.tls.cert), ("tls.key", self.tls.key),
                                ("tls.client_ca", self.tls.client_ca)):
                if path is not None and not path.is_file():
                    out.append(f"{label}: file not found, got {str(path)!r}")
        if self.historian.backend == "influxdb" and self.historian.influxdb is None:
            out.append("historian.backend is influxdb but historian.influxdb {url, org, bucket} is missing")
        return out

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_settings(path: Path | None, overrides: dict[str, Any] | None = None) -> ServerSettings:
    """Settings from ``path`` (YAML, optional) with ``overrides`` (dotted keys) applied; ConfigError if bad."""
    data: dict[str, Any] = {}
    file = str(path) if path else "<command line>"
    if path is not None:
        try:
            loaded = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError([ConfigProblem(file, 0, "", f"cannot read settings: {exc.strerror}")]) from None
        except (YAMLError, ValueError, TypeError, RecursionError) as exc:  # as scada.config.yamlsource reads YAML
            raise ConfigError([ConfigProblem(file, 0, "", f"not valid YAML: {exc}")]) from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError([ConfigProblem(file, 1, "", "settings must be a mapping")])
        data = dict(loaded or {})
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        node = data
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    try:
        settings = ServerSettings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([ConfigProblem(file, 0, "settings", f"{'.'.join(map(str, e['loc']))}: {e['msg']}, "
                                                              f"got {e.get('input')!r}")
                           for e in exc.errors()]) from None
    bad = settings.problems()
    if bad:
        raise ConfigError([ConfigProblem(file, 0, "settings", p) for p in bad])
    return settings

"""OPC UA driver (asyncua 2.1.0): one session per server, data-change subscriptions by default.

    connection: {host, port, path}                 → opc.tcp://host:port/path  (or url: opc.tcp://...)
                security: none | basic256sha256     (Basic256Sha256 + SignAndEncrypt; "sign_encrypt" too)
                certificate / private_key           client certificate (DER/PEM) and key; generated
                                                    self-signed at connect when absent
                server_certificate                  pin the server's certificate (else taken from
                                                    GetEndpoints over an unsecured channel)
                application_uri                     must match the certificate's URI (default
                                                    urn:city:scada:<device>)
                mode: subscribe | poll              subscriptions (default) or polling Read
                publishing_ms: 250                  subscription publishing interval
                sampling_ms: 0                      monitored item sampling interval (0: fastest)
                read_chunk: 2000                    nodes per Read / CreateMonitoredItems call
                watchdog_s: max(2, timeout)         keep-alive probe period (a closed socket is seen at once)

Subscribe mode::

    read(points) ──first time──► Read (initial values) + CreateMonitoredItems (ClientHandle = point id)
                 ──afterwards──► latest notified sample of each point (a live subscription means the
                                 value is current), bad_comm once the session is lost
    server ── PublishResponse ──► _BatchSubscription.publish_callback: the DataChangeNotification
                                  is turned into samples in ONE pass and pushed to the sink (no task
                                  per item: this is what keeps >10k notifications/s on one core)
    connection lost ──► every point bad_comm (pushed at once); the poller calls connect() again,
                        which opens a new session and re-subscribes every point it has seen.

Source timestamps are kept (DataValue.SourceTimestamp; the server timestamp, then the receive
time, when absent). Status codes: BadNoCommunication-like codes → bad_comm (the server lost that
equipment), BadNodeIdUnknown-like → bad_config, other Bad → bad_device, Uncertain → uncertain.
A value the tag cannot hold (a DateTime, NodeId, LocalizedText, StatusCode, array... on a numeric
tag) is bad_config for that point only: the session, the other points and the rest of the
notification batch are untouched.

Errors, by where they happen::

    connect: OpenSecureChannel answered with a fault      AuthError "certificate refused" (security on:
             (a real server's answer to a client            our certificate is not trusted there, or the
              certificate it does not trust)                pinned server_certificate is not the server's)
             BadSecurityChecksFailed, BadCertificate*...    AuthError          (poller: device "refused")
             no answer, socket closed, timeout              CommError          (poller: device "lost")
    write:   value outside the node's type (70000 → UInt16) WriteNotAllowed before the wire, session kept
             the server's Bad status for the node           DeviceError "refused (BadXxx)", session kept
"""

from __future__ import annotations

import asyncio
import logging
import re
import tempfile
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.subscription import Subscription
from asyncua.crypto import security_policies
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaError, UaStatusCodeError
from cryptography.x509.oid import ExtendedKeyUsageOID

from drivers.base import Driver, DriverContext, describe, engineering, raw_number
from scada.config.model import DeviceDef, TagDef
from scada.errors import AuthError, CommError, DeviceError, WriteNotAllowed
from scada.quality import Quality, Sample, Value

log = logging.getLogger(__name__)


class _QuietClosedConnection(logging.Filter):
    """asyncua logs a traceback each second while its publish loop hits a closed connection; the
    poller already logs the loss once, so these records are dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith("Publish iteration crashed") and record.exc_info:
            return not isinstance(record.exc_info[1], ConnectionError)
        return True


logging.getLogger("asyncua.client.ua_session.UaSession").addFilter(_QuietClosedConnection())

_ADDRESS = re.compile(r"^(?:ns=(\d+)|nsu=([^;]+));([isgb])=(.+)$")
_SECURE = {"basic256sha256", "sign_encrypt", "basic256sha256_signandencrypt"}

_COMM_CODES = {
    StatusCodes.BadNoCommunication, StatusCodes.BadCommunicationError, StatusCodes.BadNotConnected,
    StatusCodes.BadServerNotConnected, StatusCodes.BadTimeout, StatusCodes.BadWaitingForInitialData,
    StatusCodes.BadOutOfService, StatusCodes.BadShutdown, StatusCodes.BadServerHalted,
}
_CONFIG_CODES = {
    StatusCodes.BadNodeIdUnknown, StatusCodes.BadNodeIdInvalid, StatusCodes.BadAttributeIdInvalid,
    StatusCodes.BadTypeMismatch, StatusCodes.BadNotReadable, StatusCodes.BadUserAccessDenied,
    StatusCodes.BadIndexRangeInvalid,
}
_AUTH_CODES = {
    StatusCodes.BadSecurityChecksFailed, StatusCodes.BadCertificateInvalid,
    StatusCodes.BadCertificateUntrusted, StatusCodes.BadSecurityPolicyRejected,
    StatusCodes.BadIdentityTokenRejected, StatusCodes.BadIdentityTokenInvalid,
    StatusCodes.BadUserAccessDenied, StatusCodes.BadCertificateUriInvalid,
    StatusCodes.BadCertificateTimeInvalid,
}
#: the range of each integer type: a value outside it cannot be encoded (asyncua raises while packing)
_INT_RANGES = {
    ua.VariantType.SByte: (-(2**7), 2**7 - 1), ua.VariantType.Byte: (0, 2**8 - 1),
    ua.VariantType.Int16: (-(2**15), 2**15 - 1), ua.VariantType.UInt16: (0, 2**16 - 1),
    ua.VariantType.Int32: (-(2**31), 2**31 - 1), ua.VariantType.UInt32: (0, 2**32 - 1),
    ua.VariantType.Int64: (-(2**63), 2**63 - 1), ua.VariantType.UInt64: (0, 2**64 - 1),
}
_FLOAT_MAX = 3.4028234663852886e38  # largest finite IEEE 754 single: the Float type's range


def quality_of(status: ua.StatusCode | None) -> Quality:
    if status is None:
        return Quality.GOOD
    code = status.value
    if code & 0x80000000:
        base = code & 0xFFFF0000
        if base in _COMM_CODES:
            return Quality.BAD_COMM
        if base in _CONFIG_CODES:
            return Quality.BAD_CONFIG
        return Quality.BAD_DEVICE
    if code & 0x40000000:
        return Quality.UNCERTAIN
    return Quality.GOOD


def _ns(dt: Any) -> int | None:
    if dt is None:
        return None
    try:
        return int(dt.timestamp() * 1_000_000) * 1000
    except (OverflowError, OSError, ValueError):  # MinDateTime and friends
        return None


class _SessionClient(Client):
    """asyncua's Client, remembering why the first OpenSecureChannel of a connect failed.

    A server that does not trust our certificate answers OpenSecureChannel with a fault (a ServiceFault
    BadSecurityChecksFailed, or an Error message): asyncua 2.1.0 cannot decode it as the response it
    waits for and raises a bare AssertionError (or the fault's status). Knowing that the channel
    exchange itself failed is what tells a refused certificate from a lost network.
    """

    channel_refused: BaseException | None = None

    async def open_secure_channel(self, renew: bool = False) -> None:
        try:
            await super().open_secure_channel(renew)
        except (ConnectionError, TimeoutError):
            raise  # no answer at all: a communication problem, not a refusal
        except Exception as exc:  # any other fault (asyncua has no common base): remembered as the refusal, re-raised
            if not renew:
                self.channel_refused = exc
            raise


class _NoHandler:
    """Subscription handler of a :class:`_BatchSubscription`: data changes never reach it."""

    def status_change_notification(self, status: ua.StatusChangeNotification) -> None:
        log.debug("subscription status change: %s", status.Status)


class _BatchSubscription(Subscription):
    """A subscription whose notifications are handed over in one batch per PublishResponse."""

    def __init__(self, session: Any, params: ua.CreateSubscriptionParameters, driver: OpcUaDriver) -> None:
        super().__init__(session, params, handler=_NoHandler())  # publish_callback is overridden below
        self._driver = driver

    async def publish_callback(self, publish_result: ua.PublishResult) -> None:
        self.last_publish_at = time.monotonic()
        message = publish_result.NotificationMessage
        if message.NotificationData is None:
            return
        self.last_sequence_number = int(message.SequenceNumber)
        for notif in message.NotificationData:
            if isinstance(notif, ua.DataChangeNotification):
                self._driver._on_datachange(notif.MonitoredItems)


class OpcUaDriver(Driver):
    protocol = "opcua"

    def __init__(self, device: DeviceDef, context: DriverContext | None = None) -> None:
        super().__init__(device, context)
        conn = device.connection
        self.url = str(conn.get("url") or f"opc.tcp://{conn['host']}:{conn['port']}{conn.get('path', '')}")
        self.security = str(conn.get("security", "none")).lower()
        if self.security not in _SECURE | {"none"}:
            raise ValueError(f"{device.name}: security must be none or basic256sha256, got {self.security!r}")
        self.mode = str(conn.get("mode", "subscribe")).lower()
        if self.mode not in ("subscribe", "poll"):
            raise ValueError(f"{device.name}: mode must be subscribe or poll, got {self.mode!r}")
        self.publishing_ms = float(conn.get("publishing_ms", 250))
        self.sampling_ms = float(conn.get("sampling_ms", 0))
        self.read_chunk = int(conn.get("read_chunk", 2000))
        self.application_uri = str(conn.get("application_uri", f"urn:city:scada:{device.name}"))
        self.notifications = 0
        self._client: _SessionClient | None = None
        self._sub: _BatchSubscription | None = None
        self._ns_index: dict[str, int] = {}
        self._nodeids: dict[str, ua.NodeId] = {}  # tag name → resolved NodeId (per session)
        self._handles: dict[str, int] = {}  # tag name → client handle (stable across sessions)
        self._points: list[TagDef] = []  # handle - 1 → point
        self._subscribed: set[int] = set()  # handles monitored in the current session
        self._latest: dict[int, Sample] = {}
        self._vtypes: dict[str, ua.VariantType] = {}
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._lock = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ connection
    async def connect(self) -> None:
        await self._drop()
        # the keep-alive probe must not call a busy-but-healthy loop dead: probe every max(2 s, timeout)
        watchdog = float(self.device.connection.get("watchdog_s", max(2.0, self.device.timeout_s)))
        client = _SessionClient(self.url, timeout=self.device.timeout_s, watchdog_intervall=watchdog)
        client.application_uri = self.application_uri
        client.name = f"city-scada {self.device.name}"
        client.connection_lost_callback = self._connection_lost
        try:
            if self.security in _SECURE:
                await self._set_security(client)
            await asyncio.wait_for(client.connect(), self.device.timeout_s * 2)
            ns_array = await client.get_namespace_array()
        except asyncio.CancelledError:
            await self._quiet_disconnect(client)
            raise
        except Exception as exc:  # noqa: BLE001 - asyncua raises undocumented exceptions: translated to DriverError at the boundary
            await self._quiet_disconnect(client)
            if client.channel_refused is not None and self.security in _SECURE:
                raise self.fail(self._refused(client.channel_refused)) from None
            raise self.fail(self._translate(exc, "connect")) from None
        self._client = client
        self._ns_index = {uri: i for i, uri in enumerate(ns_array)}
        self._nodeids.clear()
        self._subscribed.clear()
        self._connected = True
        self.requests += 2
        if self.mode == "subscribe" and self._points:
            try:
                await self._subscribe(list(self._points))
            except asyncio.CancelledError:
                await self._drop()
                raise
            except Exception as exc:  # noqa: BLE001 - asyncua's undocumented exceptions: translated to DriverError here
                await self._drop()
                raise self.fail(self._translate(exc, "re-subscribe")) from None
        log.debug("%s: connected to %s (%s, %s)", self.name, self.url, self.security, self.mode)

    async def _set_security(self, client: Client) -> None:
        conn = self.device.connection
        cert = conn.get("certificate")
        key = conn.get("private_key")
        if not cert or not key:
            cert, key = await self._self_signed()
        server_cert = conn.get("server_certificate")
        await client.set_security(security_policies.SecurityPolicyBasic256Sha256, str(cert), str(key),
                                  server_certificate=str(server_cert) if server_cert else None,
                                  mode=ua.MessageSecurityMode.SignAndEncrypt)

    async def _self_signed(self) -> tuple[Path, Path]:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix=f"scada-opcua-{self.name}-")
        folder = Path(self._tmp.name)
        key, cert = folder / "client-key.pem", folder / "client-cert.der"
        if not cert.exists():
            await setup_self_signed_certificate(
                key, cert, self.application_uri, "localhost", [ExtendedKeyUsageOID.CLIENT_AUTH],
                {"countryName": "FR", "organizationName": "city-scada", "commonName": f"scada-{self.name}"})
            log.info("%s: generated a self-signed client certificate in %s", self.name, folder)
        return cert, key

    async def _connection_lost(self, exc: Exception) -> None:
        if not self._connected:
            return
        self._connected = False
        self.last_error = CommError(f"{self.name}: connection to {self.url} lost ({describe(exc)})")
        self._latest.clear()
        # tear the dead session down now: asyncua's publish loop would otherwise retry every second
        client, self._client = self._client, None
        self._sub = None
        self._subscribed.clear()
        if client is not None:
            client.connection_lost_callback = None
            task = asyncio.create_task(self._quiet_disconnect(client))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        if self._sink is not None and self._points:
            bad = Sample.bad(Quality.BAD_COMM)
            self._sink([(p, bad) for p in self._points])

    async def _quiet_disconnect(self, client: Client) -> None:
        try:
            await asyncio.wait_for(client.disconnect(), 2.0)
        except Exception:  # noqa: BLE001 - closing a broken session must never raise (asyncua raises anything here)
            try:
                client.disconnect_socket()
            except Exception as exc:  # noqa: BLE001 - the socket may already be gone: nothing left to close
                log.debug("%s: closing the socket: %s", self.name, describe(exc))

    async def _drop(self) -> None:
        client, self._client = self._client, None
        self._sub = None
        self._connected = False
        self._subscribed.clear()
        self._latest.clear()
        if client is not None:
            client.connection_lost_callback = None
            await self._quiet_disconnect(client)

    async def aclose(self) -> None:
        await self._drop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    # ------------------------------------------------------------------ addressing
    def _handle(self, point: TagDef) -> int:
        h = self._handles.get(point.name)
        if h is None:
            self._points.append(point)
            h = len(self._points)
            self._handles[point.name] = h
        return h

    def _nodeid(self, point: TagDef) -> ua.NodeId:
        nid = self._nodeids.get(point.name)
        if nid is not None:
            return nid
        m = _ADDRESS.match(point.address)
        if not m:
            raise ValueError(f"not a node id: {point.address!r}")
        ns_num, ns_uri, kind, ident = m.groups()
        if ns_uri is not None:
            if ns_uri not in self._ns_index:
                raise ValueError(f"namespace {ns_uri!r} is not served by {self.url}")
            ns = self._ns_index[ns_uri]
        else:
            ns = int(ns_num)
        identifier: Any
        if kind == "i":
            identifier = int(ident)
        elif kind == "g":
            identifier = uuid.UUID(ident)
        elif kind == "b":
            identifier = ident.encode()
        else:
            identifier = ident
        nid = ua.NodeId(identifier, ua.Int16(ns))
        self._nodeids[point.name] = nid
        return nid

    # ------------------------------------------------------------------ read
    def _sample(self, point: TagDef, dv: ua.DataValue | None, receive_ns: int) -> Sample:
        if dv is None:
            return Sample(None, Quality.BAD_DEVICE, receive_ns, receive_ns)
        quality = quality_of(dv.StatusCode)
        raw = dv.Value.Value if dv.Value is not None else None
        src = _ns(dv.SourceTimestamp) or _ns(dv.ServerTimestamp) or receive_ns
        if quality.is_bad:
            return Sample(None, quality, src, receive_ns)
        if isinstance(raw, (list, tuple)):
            return Sample(None, Quality.BAD_CONFIG, src, receive_ns)
        if isinstance(raw, ua.LocalizedText) and point.dtype == "string":
            raw = raw.Text  # the text, not the structure's repr
        value, q = engineering(point, raw)  # a DateTime, NodeId... on a numeric tag: bad_config
        return Sample(value, max(q, quality), src, receive_ns)

    async def read(self, points: Sequence[TagDef]) -> list[Sample]:
        if not self._connected or self._client is None:
            return self.all_bad(points)
        if self.mode == "poll":
            return await self._read_service(points)
        handles = [self._handle(p) for p in points]
        new = [p for p, h in zip(points, handles, strict=True) if h not in self._subscribed]
        if new:
            try:
                async with self._lock:
                    fresh = await self._read_service(new)
                    for p, s in zip(new, fresh, strict=True):
                        self._latest.setdefault(self._handles[p.name], s)
                    if self._connected:
                        await self._subscribe(new)
            except asyncio.CancelledError:
                await self._drop()
                raise
            except Exception as exc:  # noqa: BLE001 - asyncua's undocumented exceptions: a DriverError, the points read bad
                self.fail(self._translate(exc, "subscribe"))
                await self._drop()
                return self.all_bad(points)
        if not self._connected:
            return self.all_bad(points)
        out: list[Sample] = []
        missing: list[int] = []
        for k, h in enumerate(handles):
            known = self._latest.get(h)
            if known is None:
                missing.append(k)
                out.append(Sample.bad(Quality.BAD_COMM))
            else:
                out.append(known)
        if missing:  # subscribed but nothing notified yet (or reset): read those once
            fresh = await self._read_service([points[k] for k in missing])
            for k, s in zip(missing, fresh, strict=True):
                out[k] = s
        return out

    async def _read_service(self, points: Sequence[TagDef]) -> list[Sample]:
        client = self._client
        if client is None:
            return self.all_bad(points)
        out: list[Sample] = [Sample.bad(Quality.BAD_CONFIG)] * len(points)
        ids: list[ua.NodeId] = []
        where: list[int] = []
        for k, p in enumerate(points):
            try:
                ids.append(self._nodeid(p))
                where.append(k)
            except ValueError as exc:
                log.debug("%s: %s: %s", self.name, p.name, exc)
        try:
            for start in range(0, len(ids), self.read_chunk):
                chunk = ids[start:start + self.read_chunk]
                self.requests += 1
                dvs = await client.uaclient.read_attributes(chunk, AttributeIds.Value)
                now = time.time_ns()
                for k, dv in zip(where[start:start + self.read_chunk], dvs, strict=True):
                    out[k] = self._sample(points[k], dv, now)
        except asyncio.CancelledError:
            await self._drop()
            raise
        except Exception as exc:  # noqa: BLE001 - asyncua's undocumented exceptions: a DriverError, the points read bad
            err = self.fail(self._translate(exc, "read"))
            if isinstance(err, CommError | AuthError):
                await self._drop()
                return self.all_bad(points)
            return self.all_bad(points, Quality.BAD_DEVICE)
        return out

    # ------------------------------------------------------------------ subscription
    async def _subscribe(self, points: Sequence[TagDef]) -> None:
        client = self._client
        if client is None:  # callers hold a live session; a lost one is a communication error, not a crash
            raise CommError(f"{self.name}: no session to subscribe on ({self.url})")
        if self._sub is None:
            params = ua.CreateSubscriptionParameters()
            params.RequestedPublishingInterval = self.publishing_ms
            params.RequestedLifetimeCount = 10000
            params.RequestedMaxKeepAliveCount = max(3, int(10_000 / max(self.publishing_ms, 1)))
            params.MaxNotificationsPerPublish = 0  # no limit
            params.PublishingEnabled = True
            params.Priority = 0
            sub = _BatchSubscription(client.uaclient.session, params, self)
            self.requests += 1
            await sub.init()
            self._sub = sub
        requests: list[ua.MonitoredItemCreateRequest] = []
        for p in points:
            h = self._handle(p)
            if h in self._subscribed:
                continue
            try:
                nid = self._nodeid(p)
            except ValueError:
                continue  # read() reports it bad_config
            rv = ua.ReadValueId()
            rv.NodeId = nid
            rv.AttributeId = AttributeIds.Value
            mparams = ua.MonitoringParameters()
            mparams.ClientHandle = h
            mparams.SamplingInterval = self.sampling_ms
            mparams.QueueSize = 1
            mparams.DiscardOldest = True
            mir = ua.MonitoredItemCreateRequest()
            mir.ItemToMonitor = rv
            mir.MonitoringMode = ua.MonitoringMode.Reporting
            mir.RequestedParameters = mparams
            requests.append(mir)
        for start in range(0, len(requests), self.read_chunk):
            chunk = requests[start:start + self.read_chunk]
            self.requests += 1
            results = await self._sub.create_monitored_items(chunk)
            for mir, result in zip(chunk, results, strict=True):
                h = mir.RequestedParameters.ClientHandle
                if isinstance(result, ua.StatusCode):
                    self._latest[h] = Sample.bad(quality_of(result))
                else:
                    self._subscribed.add(h)

    def _on_datachange(self, items: Iterable[ua.MonitoredItemNotification]) -> None:
        now = time.time_ns()
        batch: list[tuple[TagDef, Sample]] = []
        points = self._points
        latest = self._latest
        for item in items:
            h = item.ClientHandle
            if not 0 < h <= len(points):
                continue
            point = points[h - 1]
            s = self._sample(point, item.Value, now)
            latest[h] = s
            batch.append((point, s))
        self.notifications += len(batch)
        if batch and self._sink is not None:
            self._sink(batch)

    # ------------------------------------------------------------------ write
    async def write(self, point: TagDef, value: Value, *, tolerance: float | None = None) -> Sample:
        """Write one value and read it back. Only the fail-safe command gate may call this."""
        self.check_writable(point)
        if not self._connected or self._client is None:
            raise self.fail(CommError(f"{self.name}: not connected to {self.url}"))
        client = self._client
        try:
            nid = self._nodeid(point)
        except ValueError as exc:
            raise WriteNotAllowed(f"{point.name}: {exc}") from None
        try:
            vtype = self._vtypes.get(point.name)
            if vtype is None:
                self.requests += 1
                (current,) = await client.uaclient.read_attributes([nid], AttributeIds.Value)
                if current.Value is None or current.Value.VariantType == ua.VariantType.Null:
                    raise self.fail(DeviceError(f"{point.name}: the server reports no value type"))
                vtype = current.Value.VariantType
                self._vtypes[point.name] = vtype
            variant = ua.Variant(self._to_variant_value(point, value, vtype), vtype)
            self.requests += 1
            (status,) = await client.uaclient.write_attributes([nid], [ua.DataValue(variant)], AttributeIds.Value)
        except (WriteNotAllowed, DeviceError):
            raise
        except asyncio.CancelledError:
            await self._drop()
            raise
        except Exception as exc:  # noqa: BLE001 - asyncua's undocumented exceptions: translated to DriverError at the boundary
            raise self.fail(self._translate(exc, "write")) from None
        if not status.is_good():
            raise self.fail(DeviceError(f"{point.name}: the server refused the write ({status.name})"))
        (sample,) = await self._read_service([point])
        if sample.quality is Quality.BAD_COMM:
            raise self.fail(CommError(f"{point.name}: written, but the read-back got no answer"))
        if h := self._handles.get(point.name):
            self._latest[h] = sample
        return self.confirm(point, value, sample, tolerance)

    def _to_variant_value(self, point: TagDef, value: Value, vtype: ua.VariantType) -> Any:
        """The Python value asyncua encodes as ``vtype``; WriteNotAllowed when ``value`` does not fit the type."""
        if vtype == ua.VariantType.String:
            if point.dtype != "string":
                raise WriteNotAllowed(f"{point.name}: the node holds text, the tag is {point.dtype}")
            return str(value)
        number = raw_number(point, value)
        if vtype == ua.VariantType.Boolean:
            if number not in (0.0, 1.0):
                raise WriteNotAllowed(f"{point.name}: {value!r} is out of range for the node's Boolean (0/1)")
            return bool(number)
        bounds = _INT_RANGES.get(vtype)
        if bounds is not None:
            integer = round(number)
            if not bounds[0] <= integer <= bounds[1]:
                raise WriteNotAllowed(f"{point.name}: {value!r} is out of range for the node's {vtype.name} "
                                      f"({bounds[0]}..{bounds[1]})")
            return integer
        if vtype == ua.VariantType.Float and abs(number) > _FLOAT_MAX:
            raise WriteNotAllowed(f"{point.name}: {value!r} is out of range for the node's Float")
        return number

    # ------------------------------------------------------------------ errors
    def _refused(self, exc: BaseException) -> AuthError:
        """The server refused the secure channel (see :class:`_SessionClient`)."""
        pinned = self.device.connection.get("server_certificate")
        why = ("our client certificate is not trusted by the server, or the pinned server_certificate "
               f"{pinned} is not the server's" if pinned else "our client certificate is not trusted by the server")
        # asyncua's AssertionError carries no text: say what it means instead of its name
        answer = describe(exc) if isinstance(exc, UaStatusCodeError) else "a fault"
        return AuthError(f"{self.name}: certificate refused by {self.url}: the server answered OpenSecureChannel "
                         f"with {answer}: {why}")

    def _translate(self, exc: BaseException, what: str) -> CommError | AuthError | DeviceError:
        text = f"{self.name}: {what} {self.url}: {describe(exc)}"
        if isinstance(exc, UaStatusCodeError):
            code = exc.code & 0xFFFF0000
            if code in _AUTH_CODES:
                return AuthError(text)
            if code in _COMM_CODES or code in (StatusCodes.BadSessionIdInvalid, StatusCodes.BadSessionClosed,
                                               StatusCodes.BadSecureChannelIdInvalid):
                return CommError(text)
            return DeviceError(text)
        if isinstance(exc, UaError) and "endpoint" in str(exc).lower():
            return AuthError(text)  # no endpoint with the requested security policy
        return CommError(text)


__all__ = ["OpcUaDriver", "quality_of"]

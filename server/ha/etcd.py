"""etcd's v3 API through its JSON gateway (``/v3/...`` on every member's client URL), over httpx.

Why not a gRPC client (aetcd): the gateway is part of every etcd since 3.3 (Debian's 3.4 here), httpx
is already a dependency, and the five calls the election needs are plain JSON POSTs; a gRPC client
would add grpcio and protobuf for nothing the gateway lacks. Keys and values travel base64-encoded;
int64 fields (lease IDs, revisions, TTLs) travel as strings, and proto3 omits fields at their default
(``succeeded: false`` and ``TTL: 0`` are absent), which :func:`_int` reads as 0.

    grant(ttl_s)                     /v3/lease/grant      → lease id
    keepalive(lease)                 /v3/lease/keepalive  → remaining TTL (0: the lease is gone)
    revoke(lease)                    /v3/lease/revoke     (its keys are deleted with it)
    create_if_absent(key, v, lease)  /v3/kv/txn           compare create_revision == 0 → put with the lease,
                                                          else range: (won, current value, its lease)
    get(key)                         /v3/kv/range         → (value, lease) or None
    held(key)                        /v3/kv/range         → (value, lease, create revision) or None
    wait_change(key, timeout)        /v3/watch            (streamed) returns on the first event or the timeout

Every request has a short timeout and goes to the member that last answered, then to the others in
turn: any member forwards to the raft leader, and a lost member must not stall the election longer
than one request timeout. :class:`EtcdUnavailable` when none answers.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Sequence
from typing import Any

import httpx

from scada.errors import ScadaError

log = logging.getLogger(__name__)


class EtcdUnavailable(ScadaError):
    """No etcd member answered (or every answer was an error)."""


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _text(b64: str | None) -> str:
    return base64.b64decode(b64 or "").decode(errors="replace")


def _int(body: dict[str, Any], key: str) -> int:
    return int(body.get(key) or 0)


class EtcdClient:
    """The etcd calls of the election, over the members' JSON gateways (see the module docstring)."""

    def __init__(self, urls: Sequence[str], timeout_s: float = 1.0) -> None:
        if not urls:
            raise ValueError("EtcdClient needs at least one member URL")
        self.urls = [u.rstrip("/") for u in urls]
        self._client = httpx.AsyncClient(timeout=timeout_s)
        self._current = 0  # the member that last answered: tried first

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        errors: list[str] = []
        for k in range(len(self.urls)):
            i = (self._current + k) % len(self.urls)
            try:
                r = await self._client.post(self.urls[i] + path, json=body)
            except httpx.HTTPError as exc:
                errors.append(f"{self.urls[i]}: {exc!r}")
                continue
            if r.status_code != 200:  # e.g. 503 "etcdserver: no leader" from a member cut off from the others
                errors.append(f"{self.urls[i]}: HTTP {r.status_code} {r.text[:200]}")
                continue
            self._current = i
            out: dict[str, Any] = r.json()
            if "error" in out:  # a gateway error in a 200 (the streamed calls)
                errors.append(f"{self.urls[i]}: {out['error']}")
                continue
            return out
        raise EtcdUnavailable("; ".join(errors))

    async def grant(self, ttl_s: int) -> int:
        return _int(await self._post("/v3/lease/grant", {"TTL": ttl_s}), "ID")

    async def keepalive(self, lease: int) -> int:
        """The lease's remaining TTL in seconds after this refresh; 0 if etcd no longer has it."""
        body = await self._post("/v3/lease/keepalive", {"ID": str(lease)})
        return _int(body.get("result", {}), "TTL")

    async def revoke(self, lease: int) -> None:
        await self._post("/v3/lease/revoke", {"ID": str(lease)})

    async def create_if_absent(self, key: str, value: str, lease: int) -> tuple[bool, str, int]:
        """Put ``key`` = ``value`` bound to ``lease`` only if the key does not exist (one txn).
        Returns (won, the key's value now, its lease)."""
        body = await self._post("/v3/kv/txn", {
            "compare": [{"key": _b64(key), "target": "CREATE", "create_revision": "0"}],
            "success": [{"request_put": {"key": _b64(key), "value": _b64(value), "lease": str(lease)}}],
            "failure": [{"request_range": {"key": _b64(key)}}]})
        if body.get("succeeded"):
            return True, value, lease
        kvs = (body.get("responses") or [{}])[0].get("response_range", {}).get("kvs") or []
        if not kvs:  # deleted between the compare and now: nobody holds it; the next round takes it
            return False, "", 0
        return False, _text(kvs[0].get("value")), _int(kvs[0], "lease")

    async def get(self, key: str) -> tuple[str, int] | None:
        kvs = (await self._post("/v3/kv/range", {"key": _b64(key)})).get("kvs") or []
        return (_text(kvs[0].get("value")), _int(kvs[0], "lease")) if kvs else None

    async def held(self, key: str) -> tuple[str, int, int] | None:
        """(value, lease, create revision) of ``key``, None if absent. The create revision is the holder's term:
        etcd's revisions only grow, so whoever wins the key after it is always above (the edges' host epoch)."""
        kvs = (await self._post("/v3/kv/range", {"key": _b64(key)})).get("kvs") or []
        return (_text(kvs[0].get("value")), _int(kvs[0], "lease"), _int(kvs[0], "create_revision")) if kvs else None

    async def delete_if(self, key: str, lease: int) -> bool:
        """Delete ``key`` only if it is still bound to ``lease`` (one txn); True if it was."""
        body = await self._post("/v3/kv/txn", {
            "compare": [{"key": _b64(key), "target": "LEASE", "lease": str(lease)}],
            "success": [{"request_delete_range": {"key": _b64(key)}}], "failure": []})
        return bool(body.get("succeeded"))

    async def wait_change(self, key: str, timeout_s: float) -> bool:
        """Watch ``key`` until its first event (True) or ``timeout_s`` (False); EtcdUnavailable if the watch
        cannot be opened. The standby uses it to try the key as soon as the active's lease lets it go."""
        url = self.urls[self._current] + "/v3/watch"
        try:
            async with self._client.stream("POST", url, json={"create_request": {"key": _b64(key)}},
                                           timeout=httpx.Timeout(1.0, read=timeout_s)) as r:
                async for line in r.aiter_lines():
                    if not line.strip():
                        continue
                    result = json.loads(line).get("result", {})
                    if result.get("events"):
                        return True
        except httpx.ReadTimeout:
            return False
        except (httpx.HTTPError, json.JSONDecodeError, ValueError) as exc:
            raise EtcdUnavailable(f"{url}: watch: {exc!r}") from exc
        return False

"""The published API only grows: /openapi.json must be a superset of the committed snapshot.

``snapshots/openapi-2d202be.json`` is ``json.dumps(create_app(SimpleNamespace()).openapi(), indent=1,
sort_keys=True)`` of the API at 2d202be. Allowed: new paths, new operations, new optional parameters, new
properties (not required), new responses, new schemas, new documentation keys. Anything removed or changed
(a path, a method, a parameter, a required field, a response schema, an operationId, a constraint) fails,
listing every difference.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from scada.errors import Refusal
from server.api import create_app
from server.routes.errors import STATUS

SNAPSHOT = Path(__file__).parent / "snapshots" / "openapi-2d202be.json"

#: dicts whose entries are named things: a new entry is an addition
COLLECTIONS = {"paths", "properties", "responses", "schemas", "content", "securitySchemes", "components", "headers"}
#: keys that only document: may appear where they were not
DOC_KEYS = {"description", "summary", "title", "example", "examples", "externalDocs"}
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def _where(path: tuple[str, ...]) -> str:
    return "/".join(path) or "(root)"


def _is_collection(path: tuple[str, ...]) -> bool:
    if not path:
        return True  # the document: new top-level sections are additions
    if len(path) >= 2 and path[-2] == "properties":
        return False  # a property's own schema, even if the property is named "responses" or "content"
    return path[-1] in COLLECTIONS or (len(path) == 2 and path[0] == "paths")  # path item: its methods


def superset_differences(old: Any, new: Any, path: tuple[str, ...] = ()) -> list[str]:
    """Every way ``new`` is not ``old`` plus additions (empty when the API only grew)."""
    where = _where(path)
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(old):
            if key not in new:
                out.append(f"{where}: {key!r} removed")
            elif key == "parameters" and isinstance(old[key], list) and isinstance(new[key], list):
                out += _parameters(old[key], new[key], (*path, key))
            elif key == "required" and isinstance(old[key], list) and isinstance(new[key], list):
                if set(old[key]) != set(new[key]):
                    out.append(f"{where}: required fields changed from {sorted(old[key])} to {sorted(new[key])}")
            else:
                out += superset_differences(old[key], new[key], (*path, key))
        if not _is_collection(path):
            out += [f"{where}: {key!r} added ({new[key]!r})" for key in sorted(set(new) - set(old))
                    if key not in DOC_KEYS]
        return out
    if isinstance(old, list) and isinstance(new, list):
        if len(old) != len(new):
            return [f"{where}: {old!r} changed to {new!r}"]
        return [d for i, (o, n) in enumerate(zip(old, new, strict=True))
                for d in superset_differences(o, n, (*path, str(i)))]
    if type(old) is not type(new) or old != new:
        return [f"{where}: {old!r} changed to {new!r}"]
    return []


def _parameters(old: list[Any], new: list[Any], path: tuple[str, ...]) -> list[str]:
    """Parameters match by (in, name), whatever their order; a new one must be optional."""
    where = _where(path)
    by_key = {(p.get("in"), p.get("name")): p for p in new}
    out: list[str] = []
    for p in old:
        key = (p.get("in"), p.get("name"))
        if key not in by_key:
            out.append(f"{where}: {key[0]} parameter {key[1]!r} removed")
        else:
            out += superset_differences(p, by_key[key], (*path, f"{key[0]}:{key[1]}"))
    known = {(p.get("in"), p.get("name")) for p in old}
    out += [f"{where}: required {p.get('in')} parameter {p.get('name')!r} added" for p in new
            if (p.get("in"), p.get("name")) not in known and p.get("required")]
    return out


def test_the_api_only_grows() -> None:
    old = json.loads(SNAPSHOT.read_text())
    app = create_app(SimpleNamespace())  # type: ignore[arg-type]  # building the app reads nothing of the server
    new = json.loads(json.dumps(app.openapi()))
    differences = superset_differences(old, new)
    assert not differences, f"{len(differences)} difference(s) with {SNAPSHOT.name}:\n" + "\n".join(differences)
    operations = [op for item in new["paths"].values() for m, op in item.items() if m in METHODS]
    assert len({op["operationId"] for op in operations}) == len(operations)  # FastAPI names them: no clash


def test_the_check_sees_removals_and_changes() -> None:
    """The comparison itself: additions pass, every kind of removal or change is reported."""
    old = json.loads(SNAPSHOT.read_text())
    assert superset_differences(old, old) == []

    grown = json.loads(SNAPSHOT.read_text())
    grown["paths"]["/api/v1/new"] = {"get": {"operationId": "new_get"}}
    grown["paths"]["/api/v1/tags"]["post"] = {"operationId": "tags_post"}
    grown["paths"]["/api/v1/tags"]["get"]["parameters"].append({"in": "query", "name": "x", "required": False})
    grown["paths"]["/api/v1/tags"]["get"]["responses"]["418"] = {"description": "teapot"}
    grown["components"]["schemas"]["TagRow"]["properties"]["extra"] = {"type": "string"}
    grown["components"]["schemas"]["Brand_new"] = {"type": "object"}
    assert superset_differences(old, grown) == []

    def changed(edit: Any) -> list[str]:
        new = json.loads(SNAPSHOT.read_text())
        edit(new)
        return superset_differences(old, new)

    assert any("'/api/v1/backup' removed" in d for d in changed(lambda d: d["paths"].pop("/api/v1/backup")))
    assert any("'delete' removed" in d for d in changed(lambda d: d["paths"]["/api/v1/users/{name}"].pop("delete")))
    assert any("operationId" in d for d in changed(
        lambda d: d["paths"]["/api/v1/auth/me"]["get"].update(operationId="whoami")))
    assert any("parameter 'pattern' removed" in d for d in changed(
        lambda d: d["paths"]["/api/v1/tags"]["get"].update(parameters=[
            p for p in d["paths"]["/api/v1/tags"]["get"]["parameters"] if p["name"] != "pattern"])))
    assert any("required query parameter 'x' added" in d for d in changed(
        lambda d: d["paths"]["/api/v1/tags"]["get"]["parameters"].append(
            {"in": "query", "name": "x", "required": True, "schema": {"type": "string"}})))
    assert any("required fields changed" in d for d in changed(
        lambda d: d["components"]["schemas"]["LoginIn"]["required"].append("otp")))
    assert any("maxLength" in d for d in changed(
        lambda d: d["components"]["schemas"]["LoginIn"]["properties"]["user"].update(maxLength=32)))
    assert any("'$ref' removed" in d for d in changed(
        lambda d: d["paths"]["/api/v1/tags"]["get"]["responses"]["200"]["content"]["application/json"].update(
            schema={"type": "object"})))
    assert any("'ErrorBody' removed" in d for d in changed(lambda d: d["components"]["schemas"].pop("ErrorBody")))


def test_every_refusal_has_a_status() -> None:
    assert set(STATUS) == set(Refusal)
    assert all(400 <= s < 600 for s in STATUS.values())

"""Equipment inventory files (CSV or GeoJSON) → instance records with their source row.

CSV columns: ``id, type, commune, latitude, longitude`` are required; ``name, manufacturer, model,
install_date, address, serial, road_class`` (and any column named ``identity.<field>``) go to the
identity sheet; every other column is a template parameter (``host``, ``port``, ``unit``, ``luminaires``...).
Integer-looking parameter values become ints.

``lamp_positions`` (lighting cabinets): where each luminaire stands, ``lat lon;lat lon;...`` in lamp
order (lamp_01 first), one pair per luminaire — the console draws the lamps there. Checked here: pairs
of numbers, as many as ``luminaires`` when both are given; the row's parameter holds the parsed pairs.

GeoJSON: a FeatureCollection of Point features; ``geometry.coordinates`` = [lon, lat];
``properties`` holds the same fields as the CSV columns.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scada.errors import ConfigProblem

IDENTITY_FIELDS = ("name", "manufacturer", "model", "install_date", "address", "serial", "road_class")
REQUIRED = ("id", "type", "commune", "latitude", "longitude")
LAMP_POSITIONS = "lamp_positions"


def format_lamp_positions(points: list[tuple[float, float]]) -> str:
    """``lat lon;lat lon;...`` (5 decimals: ~1 m, finer than a lamp's spacing)."""
    return ";".join(f"{lat:.5f} {lon:.5f}" for lat, lon in points)


def parse_lamp_positions(value: Any) -> list[tuple[float, float]]:
    """The (lat, lon) pairs of a ``lamp_positions`` value (its text, or the pairs an inventory file's row
    already holds after loading); ValueError names the first bad pair."""
    if value in (None, ""):
        return []
    if isinstance(value, (list, tuple)):
        return [(float(lat), float(lon)) for lat, lon in value]
    out: list[tuple[float, float]] = []
    for n, pair in enumerate(str(value).split(";"), start=1):
        parts = pair.split()
        try:
            if len(parts) != 2:
                raise ValueError
            lat, lon = float(parts[0]), float(parts[1])
        except ValueError:
            raise ValueError(f"pair {n} must be 'latitude longitude', got {pair.strip()!r}") from None
        if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
            raise ValueError(f"pair {n} is not a latitude and longitude, got {pair.strip()!r}")
        out.append((lat, lon))
    return out


@dataclass(slots=True)
class InventoryRow:
    source: str  # "inventory/demo.csv:14"
    file: str
    line: int
    data: dict[str, Any]  # shaped like an InstanceSpec


def _param(value: str) -> Any:
    text = value.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    return text


def _shape(raw: dict[str, Any], file: str, line: int, problems: list[ConfigProblem]) -> dict[str, Any] | None:
    missing = [k for k in REQUIRED if raw.get(k) in (None, "")]
    who = f"row {raw.get('id') or '?'}"
    if missing:
        problems.append(ConfigProblem(file, line, who, f"missing column value(s) {', '.join(missing)}"))
        return None
    identity: dict[str, Any] = {}
    params: dict[str, Any] = {}
    for key, value in raw.items():
        if key in REQUIRED or value in (None, ""):
            continue
        if key in IDENTITY_FIELDS:
            identity[key] = value
        elif key.startswith("identity."):
            identity[key[len("identity."):]] = value
        else:
            params[key] = _param(value) if isinstance(value, str) else value
    if LAMP_POSITIONS in params:
        try:
            lamps = parse_lamp_positions(params[LAMP_POSITIONS])
        except ValueError as exc:
            problems.append(ConfigProblem(file, line, who, f"'{LAMP_POSITIONS}': {exc}"))
            return None
        count = params.get("luminaires")
        if isinstance(count, int) and count != len(lamps):
            problems.append(ConfigProblem(file, line, who, f"'{LAMP_POSITIONS}' must give one position per "
                                                           f"luminaire ({count}), got {len(lamps)}"))
            return None
        params[LAMP_POSITIONS] = tuple(lamps)  # parsed once here, not on every GET /equipment
    return {
        "id": str(raw["id"]).strip(),
        "template": str(raw["type"]).strip(),
        "commune": str(raw["commune"]).strip(),
        "lat": raw["latitude"],
        "lon": raw["longitude"],
        "identity": identity,
        "params": params,
    }


def read_inventory(path: Path, display: str) -> tuple[list[InventoryRow], list[ConfigProblem]]:
    """Rows of a CSV or GeoJSON inventory; problems carry ``file:row``."""
    problems: list[ConfigProblem] = []
    rows: list[InventoryRow] = []
    if not path.exists():
        return rows, [ConfigProblem(display, 0, "", "inventory file not found")]
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            absent = [c for c in REQUIRED if c not in header]
            if absent:
                got = ", ".join(header) or "nothing"
                what = f"header must have columns {', '.join(REQUIRED)}, got {got}"
                return rows, [ConfigProblem(display, 1, "", what)]
            for raw in reader:
                line = reader.line_num
                if None in raw:  # more cells than header columns
                    cells = len(header) + len(raw[None])
                    problems.append(ConfigProblem(display, line, f"row {raw.get('id') or '?'}",
                                                  f"{cells} cells for {len(header)} columns"))
                    continue
                shaped = _shape(raw, display, line, problems)
                if shaped is not None:
                    rows.append(InventoryRow(f"{display}:{line}", display, line, shaped))
    elif suffix in (".geojson", ".json"):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            line = getattr(exc, "lineno", 0)
            return rows, [ConfigProblem(display, line, "", f"invalid JSON: {exc}")]
        feats = doc.get("features") if isinstance(doc, dict) else None
        if not isinstance(feats, list):
            return rows, [ConfigProblem(display, 1, "", "must be a GeoJSON FeatureCollection with 'features'")]
        for n, feat in enumerate(feats, start=1):
            try:
                props = dict(feat["properties"])
                lon, lat = feat["geometry"]["coordinates"][:2]
            except (KeyError, TypeError, ValueError):
                problems.append(ConfigProblem(display, n, f"feature {n}", "must be a Point feature with properties"))
                continue
            props["longitude"], props["latitude"] = lon, lat
            shaped = _shape(props, display, n, problems)
            if shaped is not None:
                rows.append(InventoryRow(f"{display}:feature {n}", display, n, shaped))
    else:
        problems.append(ConfigProblem(display, 0, "", f"inventory must be .csv or .geojson, got '{path.suffix}'"))
    return rows, problems

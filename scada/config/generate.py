"""Equipment inventory generator: the demo slice and the full-scale métropole.

``scada config generate --scale dijon --out DIR`` writes ``DIR/tags.yaml`` (the shipped templates
pointing at ``DIR/inventory.csv``), ``DIR/alarms.yaml`` and the inventory (34,000 luminaires in
~1,100 cabinets, 113 junctions, 180 buildings, 269 cameras, 25 panels, 205 vehicles, 26 bollard
sites, parking counters). Deterministic for a given seed. The shipped ``inventory/demo.csv`` is
``--scale demo --seed 42``.

Placement: each equipment is put near its commune's centre (real names, approximate real
coordinates), with more equipment in Dijon itself, as in the real city.
"""

from __future__ import annotations

import csv
import random
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from scada.config.units import slug

#: The 23 communes of Dijon métropole: name, latitude, longitude, weight (share of equipment).
COMMUNES: list[tuple[str, float, float, float]] = [
    ("Dijon", 47.3220, 5.0415, 10.0), ("Chenôve", 47.2930, 5.0060, 1.4), ("Talant", 47.3370, 5.0040, 1.0),
    ("Fontaine-lès-Dijon", 47.3430, 5.0210, 0.9), ("Quetigny", 47.3150, 5.1060, 1.0),
    ("Chevigny-Saint-Sauveur", 47.3000, 5.1350, 1.0), ("Longvic", 47.2870, 5.0640, 0.9),
    ("Saint-Apollinaire", 47.3330, 5.0830, 0.7), ("Marsannay-la-Côte", 47.2720, 4.9900, 0.5),
    ("Plombières-lès-Dijon", 47.3370, 4.9650, 0.3), ("Ahuy", 47.3680, 5.0230, 0.1),
    ("Daix", 47.3520, 5.0030, 0.1), ("Hauteville-lès-Dijon", 47.3650, 4.9960, 0.1),
    ("Bretenière", 47.2400, 5.1110, 0.1), ("Corcelles-les-Monts", 47.3000, 4.9410, 0.1),
    ("Flavignerot", 47.2840, 4.9150, 0.05), ("Fénay", 47.2370, 5.0600, 0.1),
    ("Magny-sur-Tille", 47.2830, 5.1830, 0.1), ("Neuilly-Crimolois", 47.2720, 5.1180, 0.2),
    ("Ouges", 47.2610, 5.0790, 0.1), ("Perrigny-lès-Dijon", 47.2670, 5.0050, 0.1),
    ("Sennecey-lès-Dijon", 47.2900, 5.1030, 0.2), ("Bressey-sur-Tille", 47.3110, 5.1850, 0.05),
]

COLUMNS = ["id", "type", "commune", "latitude", "longitude", "manufacturer", "model", "install_date",
           "road_class", "endpoint", "unit", "snmp_version", "layout", "luminaires", "fire_zones", "doors"]

#: Junction layouts (the simulator builds the controller from it; the fail-safe monitor takes the
#: compatibility matrix of the same name from commands.yaml), with their share of the city.
LAYOUTS = (("cross4", 5), ("nema8", 3), ("tee", 2))
_EXPLICIT_JUNCTION = re.compile(r"^  J\d{3}: \w+\s*$")


@dataclass(frozen=True)
class Scale:
    junctions: int
    cabinets: int
    luminaires: int
    bollards: int
    buildings: int
    cameras: int
    panels: int
    parking: int
    vehicles: int
    # The shipped demo keeps the layouts listed per junction in commands.yaml (what the simulator draws
    # for seed 42); a generated city carries a `layout` column instead, read by simulator and monitor.
    junction_layouts: bool = True


SCALES = {
    "demo": Scale(junctions=24, cabinets=12, luminaires=360, bollards=6, buildings=10, cameras=16, panels=5,
                  parking=6, vehicles=12, junction_layouts=False),
    "dijon": Scale(junctions=113, cabinets=1100, luminaires=34000, bollards=26, buildings=180, cameras=269,
                   panels=25, parking=30, vehicles=205),
}

MODBUS_UNITS_PER_ENDPOINT = 200  # unit ids 1..200 per gateway endpoint (Modbus allows 1..247)
MODBUS_ENDPOINTS = 6


def _commune(rng: random.Random, dijon_share: float | None = None) -> tuple[str, float, float]:
    names = [c for c in COMMUNES]
    weights = [c[3] for c in COMMUNES]
    name, lat, lon, _ = rng.choices(names, weights=weights)[0]
    spread = 0.012 if name == "Dijon" else 0.006
    return name, round(lat + rng.gauss(0, spread), 6), round(lon + rng.gauss(0, spread * 1.4), 6)


def _install_date(rng: random.Random) -> str:
    return f"{rng.randint(2008, 2025)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def rows(scale: Scale, seed: int) -> Iterator[dict[str, object]]:
    """Inventory rows, deterministic for ``seed``."""
    rng = random.Random(seed)
    layout_rng = random.Random(seed + 1)  # its own stream: the other columns stay as they were
    modbus_slot = 0

    def modbus_addr() -> tuple[str, int]:
        nonlocal modbus_slot
        endpoint = modbus_slot // MODBUS_UNITS_PER_ENDPOINT + 1
        if endpoint > MODBUS_ENDPOINTS:
            raise ValueError("too many Modbus devices for the declared endpoints")
        unit = modbus_slot % MODBUS_UNITS_PER_ENDPOINT + 1
        modbus_slot += 1
        return f"modbus-{endpoint}", unit

    for n in range(1, scale.junctions + 1):
        commune, lat, lon = _commune(rng)
        row: dict[str, object] = {
            "id": f"J{n:03d}", "type": "junction", "commune": commune, "latitude": lat, "longitude": lon,
            "manufacturer": rng.choice(["Aximum", "Fareco", "Lacroix City"]), "model": "ATC-1202",
            "install_date": _install_date(rng), "endpoint": "snmp-traffic", "snmp_version": "v2c"}
        if scale.junction_layouts:
            row["layout"] = layout_rng.choices([name for name, _ in LAYOUTS], [w for _, w in LAYOUTS])[0]
        yield row
    remaining = scale.luminaires
    for n in range(1, scale.cabinets + 1):
        commune, lat, lon = _commune(rng)
        count = remaining // (scale.cabinets - n + 1)
        remaining -= count
        endpoint, unit = modbus_addr()
        yield {"id": f"C{n:04d}", "type": "lighting_cabinet", "commune": commune, "latitude": lat,
               "longitude": lon, "manufacturer": "Citelum", "model": "LCU-30", "install_date": _install_date(rng),
               "road_class": rng.choice(["M3", "M4", "M5", "P2", "P3"]), "endpoint": endpoint, "unit": unit,
               "luminaires": count}
    for n in range(1, scale.bollards + 1):
        commune, lat, lon = _commune(rng)
        endpoint, unit = modbus_addr()
        yield {"id": f"BL{n:02d}", "type": "bollard", "commune": commune, "latitude": lat, "longitude": lon,
               "manufacturer": "Urbaco", "model": "AUTOMATIC 275", "install_date": _install_date(rng),
               "endpoint": endpoint, "unit": unit}
    for n in range(1, scale.buildings + 1):
        commune, lat, lon = _commune(rng)
        yield {"id": f"B{n:03d}", "type": "building", "commune": commune, "latitude": lat, "longitude": lon,
               "manufacturer": "Siemens", "model": "Cerberus", "install_date": _install_date(rng),
               "fire_zones": rng.randint(2, 6), "doors": rng.randint(1, 4)}
    for n in range(1, scale.cameras + 1):
        commune, lat, lon = _commune(rng)
        yield {"id": f"CAM{n:03d}", "type": "camera", "commune": commune, "latitude": lat, "longitude": lon,
               "manufacturer": "Axis", "model": "Q6135-LE", "install_date": _install_date(rng),
               "endpoint": "snmp-cctv", "snmp_version": "v2c"}
    for n in range(1, scale.panels + 1):
        commune, lat, lon = _commune(rng)
        yield {"id": f"P{n:02d}", "type": "panel", "commune": commune, "latitude": lat, "longitude": lon,
               "manufacturer": "Lumiplan", "model": "VMS-3L", "install_date": _install_date(rng), "unit": n}
    for n in range(1, scale.parking + 1):
        commune, lat, lon = _commune(rng)
        yield {"id": f"PK{n:02d}", "type": "parking", "commune": commune, "latitude": lat, "longitude": lon,
               "manufacturer": "Nedap", "model": "SENSIT", "install_date": _install_date(rng), "unit": n}
    for n in range(1, scale.vehicles + 1):
        commune, lat, lon = _commune(rng)
        yield {"id": f"V{n:03d}", "type": "vehicle", "commune": commune, "latitude": lat, "longitude": lon,
               "manufacturer": "Renault", "model": "Kangoo E-Tech", "install_date": _install_date(rng)}


def count_rows(scale: Scale) -> int:
    return (scale.junctions + scale.cabinets + scale.bollards + scale.buildings + scale.cameras + scale.panels
            + scale.parking + scale.vehicles)


def write_inventory(path: Path, scale: Scale, seed: int, progress: Callable[[int], None] | None = None) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows(scale, seed):
            writer.writerow(row)
            n += 1
            if progress is not None:
                progress(1)
    return n


def generate(out: Path, scale_name: str, seed: int, root: Path,
             progress: Callable[[int], None] | None = None) -> Path:
    """Write ``out/tags.yaml``, ``alarms.yaml``, ``commands.yaml`` and ``inventory.csv``; return the tags path."""
    scale = SCALES[scale_name]
    out.mkdir(parents=True, exist_ok=True)
    write_inventory(out / "inventory.csv", scale, seed, progress)
    text = (root / "tags.yaml").read_text(encoding="utf-8")
    text = text.replace("  - file: inventory/demo.csv", "  - file: inventory.csv")
    (out / "tags.yaml").write_text(text, encoding="utf-8")
    shutil.copyfile(root / "alarms.yaml", out / "alarms.yaml")
    commands = (root / "commands.yaml").read_text(encoding="utf-8").splitlines(keepends=True)
    if scale.junction_layouts:  # layouts come from the inventory's column, not the demo's per-junction list
        commands = [line for line in commands if not _EXPLICIT_JUNCTION.match(line)]
    (out / "commands.yaml").write_text("".join(commands), encoding="utf-8")
    return out / "tags.yaml"


__all__ = ["COMMUNES", "SCALES", "count_rows", "generate", "rows", "slug", "write_inventory"]

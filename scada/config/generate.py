"""Equipment inventory generator: the demo slice and the full-scale métropole.

``scada config generate --scale dijon --out DIR`` writes ``DIR/tags.yaml`` (the shipped templates
pointing at ``DIR/inventory.csv``), ``DIR/alarms.yaml`` and the inventory (34,000 luminaires in
~1,100 cabinets, 113 junctions, 180 buildings, 269 cameras, 25 panels, 205 vehicles, 26 bollard
sites, parking counters). Deterministic for a given seed. The shipped ``inventory/demo.csv`` is
``--scale demo --seed 42``.

Three random streams, so that a new column never reshuffles the others:

    seed      commune (weighted: most equipment in Dijon, as in the real city), the first position
              proposal around the commune's centre, manufacturer, dates, sizes ...
    seed + 1  junction layouts
    seed + 2  geography: a proposal outside the commune's real outline (scada.geo) is drawn again
              around the centre, then uniformly inside the outline; each cabinet's street bearing
    seed + 3  names and addresses (real Dijon streets in Dijon, common French street names elsewhere)

Every equipment lies inside its commune's outline. A cabinet's luminaires stand along its street
(every 22 m, alternating sides 7 m off the axis, both ways from the cabinet; the bearing is chosen so
they stay in the commune), written as the ``lamp_positions`` column (``lat lon;lat lon;...``, one pair
per luminaire in lamp order, see scada.config.inventory): the console draws them where the inventory
says, it does not invent them.

The maintenance crews (``crews.yaml``, scada.workorders.crews): the demo scale keeps the shipped, hand-written
one (its vehicles are V001..V012 whatever the seed); a full-scale city gets its own from :func:`crews_yaml`:
the shipped file's services and SLAs, and crews of two or three vehicles, each crew from the vehicles based in
one commune (its vehicles' inventory commune), the vehicles shared out among the services by their share of the
maintenance work (:data:`CREW_SHARES`), with the services' usual shifts (:data:`SHIFTS`).
"""

from __future__ import annotations

import csv
import math
import random
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely

from scada import geo
from scada.config.inventory import LAMP_POSITIONS, format_lamp_positions
from scada.config.units import slug

#: The 23 communes of Dijon métropole: name, latitude, longitude of its town centre (inside its outline,
#: where equipment concentrates), weight (share of equipment).
COMMUNES: list[tuple[str, float, float, float]] = [
    ("Dijon", 47.3220, 5.0415, 10.0), ("Chenôve", 47.2930, 5.0060, 1.4), ("Talant", 47.3370, 5.0040, 1.0),
    ("Fontaine-lès-Dijon", 47.3430, 5.0210, 0.9), ("Quetigny", 47.3150, 5.1060, 1.0),
    ("Chevigny-Saint-Sauveur", 47.3000, 5.1350, 1.0), ("Longvic", 47.2870, 5.0640, 0.9),
    ("Saint-Apollinaire", 47.3330, 5.0830, 0.7), ("Marsannay-la-Côte", 47.2720, 4.9900, 0.5),
    ("Plombières-lès-Dijon", 47.3370, 4.9650, 0.3), ("Ahuy", 47.3680, 5.0230, 0.1),
    ("Daix", 47.3520, 5.0030, 0.1), ("Hauteville-lès-Dijon", 47.3650, 4.9960, 0.1),
    ("Bretenière", 47.2400, 5.1110, 0.1), ("Corcelles-les-Monts", 47.3000, 4.9410, 0.1),
    ("Flavignerot", 47.2840, 4.9150, 0.05), ("Fénay", 47.2370, 5.0600, 0.1),
    ("Magny-sur-Tille", 47.2850, 5.1720, 0.1), ("Neuilly-Crimolois", 47.2720, 5.1180, 0.2),
    ("Ouges", 47.2610, 5.0790, 0.1), ("Perrigny-lès-Dijon", 47.2670, 5.0050, 0.1),
    ("Sennecey-lès-Dijon", 47.2900, 5.1030, 0.2), ("Bressey-sur-Tille", 47.3110, 5.1850, 0.05),
]

# name, address and lamp_positions come last: scripts and tests that edit rows by column position keep working
COLUMNS = ["id", "type", "commune", "latitude", "longitude", "manufacturer", "model", "install_date",
           "road_class", "endpoint", "unit", "snmp_version", "layout", "luminaires", "fire_zones", "doors",
           "name", "address", LAMP_POSITIONS]

#: Real streets and places of Dijon (its equipment's addresses).
DIJON_STREETS = (
    "rue de la Liberté", "rue Chabot-Charny", "boulevard de Sévigné", "avenue du Drapeau", "boulevard Carnot",
    "rue Monge", "avenue Jean-Jaurès", "rue d'Auxonne", "avenue Victor-Hugo", "boulevard de la Trémouille",
    "rue de la Préfecture", "place Darcy", "place de la République", "place Wilson", "rue des Godrans",
    "avenue de Langres", "boulevard Clemenceau", "avenue Aristide-Briand", "rue de Mirande", "boulevard Mansart",
    "avenue du Lac", "rue Devosge", "boulevard de Strasbourg", "avenue Maréchal-Foch", "rue Berbisey",
    "boulevard Voltaire", "avenue de Stalingrad", "rue d'Estienne-d'Orves", "rue de Jouvence", "rue Jeannin",
    "boulevard de Champagne", "avenue Garibaldi", "rue du Transvaal", "boulevard des Allobroges",
    "rue de Longvic", "avenue Raymond-Poincaré", "place du Théâtre", "rue Charrue", "rue Vauban", "rue Turgot",
)
#: Common French street names: plausible in any commune of the métropole.
COMMON_STREETS = (
    "Grande Rue", "rue de la Mairie", "rue de l'Église", "avenue de la République", "rue Jean-Moulin",
    "rue Pasteur", "rue Victor-Hugo", "rue du Stade", "rue des Écoles", "allée des Tilleuls", "rue de la Gare",
    "place de la Mairie", "avenue Charles-de-Gaulle", "rue des Vignes", "rue du Moulin", "rue de Dijon",
    "rue des Champs", "rue Jules-Ferry", "avenue du 8-Mai-1945", "rue du Général-Leclerc", "chemin des Vergers",
    "rue de la Fontaine", "rue des Lilas", "impasse des Acacias", "rue Gustave-Eiffel", "rue de Bourgogne",
)
BUILDING_KINDS = ("Groupe scolaire", "Gymnase", "Médiathèque", "Centre social", "Piscine", "Salle des fêtes",
                  "Crèche", "Maison de quartier", "Centre technique", "Conservatoire")
BUILDING_PATRONS = ("Jules-Ferry", "Jean-Moulin", "Victor-Hugo", "Pasteur", "Champollion", "Colette",
                    "Marie-Curie", "Louis-Aragon", "Gustave-Eiffel", "Simone-Veil", "Jean-Zay", "Lamartine")

#: Luminaires along their cabinet's street: spacing along the axis and offset to either side (metres).
LAMP_SPACING_M = 22.0
LAMP_SIDE_M = 7.0
LAMP_BEARING_TRIES = 12
CABINET_SITE_TRIES = 20

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


def _centre(name: str) -> tuple[float, float, float]:
    """(lat, lon, spread in degrees) of a commune's town centre: equipment gathers around it."""
    lat0, lon0 = next((c[1], c[2]) for c in COMMUNES if c[0] == name)
    return lat0, lon0, 0.012 if name == "Dijon" else 0.006


def _commune(rng: random.Random, geo_rng: random.Random) -> tuple[str, float, float]:
    name = rng.choices(COMMUNES, weights=[c[3] for c in COMMUNES])[0][0]
    lat0, lon0, spread = _centre(name)
    # the first proposal comes from the main stream, as it always did: the other columns keep their values
    lat, lon = lat0 + rng.gauss(0, spread), lon0 + rng.gauss(0, spread * 1.4)
    lat, lon = _inside(name, lat, lon, geo_rng)
    return name, round(lat, 6), round(lon, 6)


def _inside(name: str, lat: float, lon: float, geo_rng: random.Random) -> tuple[float, float]:
    """(lat, lon) if inside ``name``'s outline, else another draw around the centre, else uniform inside."""
    commune = geo.communes()[name]
    lat0, lon0, spread = _centre(name)
    for _ in range(50):
        if commune.contains(round(lat, 6), round(lon, 6)):
            return lat, lon
        lat, lon = lat0 + geo_rng.gauss(0, spread), lon0 + geo_rng.gauss(0, spread * 1.4)
    x0, y0, x1, y1 = commune.outline.bounds
    while True:  # a commune fills a good share of its bounding box: this ends within a few draws
        lat, lon = geo_rng.uniform(y0, y1), geo_rng.uniform(x0, x1)
        if commune.contains(round(lat, 6), round(lon, 6)):
            return lat, lon


def lamp_offsets(count: int, bearing: float) -> tuple[geo.F64, geo.F64]:
    """(east, north) metres of luminaires 1..count from their cabinet along a street of ``bearing`` radians.

    Lamps go 1 ahead, 2 behind, 3 two ahead ... every LAMP_SPACING_M, two on one side, two on the other.
    """
    k = np.arange(1, count + 1)
    step = (k + 1) // 2 * np.where(k % 2 == 1, 1, -1)
    side = np.where((k // 2) % 2 == 0, 1.0, -1.0) * LAMP_SIDE_M
    east = math.cos(bearing) * step * LAMP_SPACING_M - math.sin(bearing) * side
    north = math.sin(bearing) * step * LAMP_SPACING_M + math.cos(bearing) * side
    return east, north


def _lamps(commune: str, lat: float, lon: float, count: int,
           geo_rng: random.Random) -> tuple[int, list[tuple[float, float]]]:
    """(how many inside, positions) of luminaires along the cabinet's street, for the bearing (of a few
    tried) that keeps the most of them in the commune."""
    outline = geo.communes()[commune].outline
    best: tuple[int, geo.F64, geo.F64] | None = None
    kx = geo.M_PER_DEG_LON_EQ * math.cos(math.radians(lat))
    for _ in range(LAMP_BEARING_TRIES):
        east, north = lamp_offsets(count, geo_rng.uniform(0.0, math.pi))
        # rounded as written (format_lamp_positions), so what is checked is what the inventory says
        lats = np.round(lat + north / geo.M_PER_DEG_LAT, 5)
        lons = np.round(lon + east / kx, 5)
        inside = int(np.count_nonzero(shapely.contains_xy(outline, lons, lats)))
        if best is None or inside > best[0]:
            best = (inside, lats, lons)
        if inside == count:
            break
    if best is None:
        return 0, []
    return best[0], list(zip(best[1].tolist(), best[2].tolist(), strict=True))


def _cabinet_site(commune: str, lat: float, lon: float, count: int,
                  geo_rng: random.Random) -> tuple[float, float, list[tuple[float, float]]]:
    """A cabinet's position and its luminaires, all inside the commune.

    A cabinet so close to the border that no street bearing keeps its lamps inside moves to another
    site of its commune (the best site found is kept if none fits, which the outlines never require).
    """
    inside, lamps = _lamps(commune, lat, lon, count, geo_rng)
    best = (inside, lat, lon, lamps)
    lat0, lon0, spread = _centre(commune)
    for _ in range(CABINET_SITE_TRIES):
        if best[0] == count:
            break
        lat, lon = _inside(commune, lat0 + geo_rng.gauss(0, spread), lon0 + geo_rng.gauss(0, spread * 1.4), geo_rng)
        lat, lon = round(lat, 6), round(lon, 6)
        inside, lamps = _lamps(commune, lat, lon, count, geo_rng)
        if inside > best[0]:
            best = (inside, lat, lon, lamps)
    return best[1], best[2], best[3]


class _Namer:
    """Plausible names and addresses, from their own random stream."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def street(self, commune: str) -> str:
        return self.rng.choice(DIJON_STREETS if commune == "Dijon" else COMMON_STREETS)

    def address(self, commune: str) -> tuple[str, str]:
        street = self.street(commune)
        return street, f"{self.rng.randint(1, 120)} {street}"

    def junction(self, commune: str) -> tuple[str, str]:
        a = self.street(commune)
        b = self.street(commune)
        while b == a:
            b = self.street(commune)
        return f"Carrefour {a} / {b}", f"angle {a} et {b}"

    def building(self, commune: str) -> tuple[str, str]:
        kind = self.rng.choice(BUILDING_KINDS)
        _, address = self.address(commune)
        return f"{kind} {self.rng.choice(BUILDING_PATRONS)}", address


def _install_date(rng: random.Random) -> str:
    return f"{rng.randint(2008, 2025)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def rows(scale: Scale, seed: int) -> Iterator[dict[str, object]]:
    """Inventory rows, deterministic for ``seed`` (see the module docstring for the streams)."""
    rng = random.Random(seed)
    layout_rng = random.Random(seed + 1)  # its own stream: the other columns stay as they were
    geo_rng = random.Random(seed + 2)
    namer = _Namer(seed + 3)
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
        commune, lat, lon = _commune(rng, geo_rng)
        name, address = namer.junction(commune)
        row: dict[str, object] = {
            "id": f"J{n:03d}", "type": "junction", "commune": commune, "latitude": lat, "longitude": lon,
            "manufacturer": rng.choice(["Aximum", "Fareco", "Lacroix City"]), "model": "ATC-1202",
            "install_date": _install_date(rng), "endpoint": "snmp-traffic", "snmp_version": "v2c",
            "name": name, "address": address}
        if scale.junction_layouts:
            row["layout"] = layout_rng.choices([name for name, _ in LAYOUTS], [w for _, w in LAYOUTS])[0]
        yield row
    remaining = scale.luminaires
    for n in range(1, scale.cabinets + 1):
        commune, lat, lon = _commune(rng, geo_rng)
        count = remaining // (scale.cabinets - n + 1)
        remaining -= count
        endpoint, unit = modbus_addr()
        street, address = namer.address(commune)
        lat, lon, lamps = _cabinet_site(commune, lat, lon, count, geo_rng)
        yield {"id": f"C{n:04d}", "type": "lighting_cabinet", "commune": commune, "latitude": lat,
               "longitude": lon, "manufacturer": "Citelum", "model": "LCU-30", "install_date": _install_date(rng),
               "road_class": rng.choice(["M3", "M4", "M5", "P2", "P3"]), "endpoint": endpoint, "unit": unit,
               "luminaires": count, "name": f"Armoire EP {street}", "address": address,
               LAMP_POSITIONS: format_lamp_positions(lamps)}
    for n in range(1, scale.bollards + 1):
        commune, lat, lon = _commune(rng, geo_rng)
        endpoint, unit = modbus_addr()
        street, address = namer.address(commune)
        yield {"id": f"BL{n:02d}", "type": "bollard", "commune": commune, "latitude": lat, "longitude": lon,
               "manufacturer": "Urbaco", "model": "AUTOMATIC 275", "install_date": _install_date(rng),
               "endpoint": endpoint, "unit": unit, "name": f"Bornes {street}", "address": address}
    for n in range(1, scale.buildings + 1):
        commune, lat, lon = _commune(rng, geo_rng)
        name, address = namer.building(commune)
        yield {"id": f"B{n:03d}", "type": "building", "commune": commune, "latitude": lat, "longitude": lon,
               "manufacturer": "Siemens", "model": "Cerberus", "install_date": _install_date(rng),
               "fire_zones": rng.randint(2, 6), "doors": rng.randint(1, 4), "name": name, "address": address}
    for n in range(1, scale.cameras + 1):
        commune, lat, lon = _commune(rng, geo_rng)
        street, address = namer.address(commune)
        yield {"id": f"CAM{n:03d}", "type": "camera", "commune": commune, "latitude": lat, "longitude": lon,
               "manufacturer": "Axis", "model": "Q6135-LE", "install_date": _install_date(rng),
               "endpoint": "snmp-cctv", "snmp_version": "v2c", "name": f"Caméra {street}", "address": address}
    for n in range(1, scale.panels + 1):
        commune, lat, lon = _commune(rng, geo_rng)
        street, address = namer.address(commune)
        yield {"id": f"P{n:02d}", "type": "panel", "commune": commune, "latitude": lat, "longitude": lon,
               "manufacturer": "Lumiplan", "model": "VMS-3L", "install_date": _install_date(rng), "unit": n,
               "name": f"Panneau {street}", "address": address}
    for n in range(1, scale.parking + 1):
        commune, lat, lon = _commune(rng, geo_rng)
        street, address = namer.address(commune)
        yield {"id": f"PK{n:02d}", "type": "parking", "commune": commune, "latitude": lat, "longitude": lon,
               "manufacturer": "Nedap", "model": "SENSIT", "install_date": _install_date(rng), "unit": n,
               "name": f"Stationnement {street}", "address": address}
    for n in range(1, scale.vehicles + 1):
        commune, lat, lon = _commune(rng, geo_rng)
        _, address = namer.address(commune)
        # a vehicle moves: its address is its base (where the inventory's position puts it)
        yield {"id": f"V{n:03d}", "type": "vehicle", "commune": commune, "latitude": lat, "longitude": lon,
               "manufacturer": "Renault", "model": "Kangoo E-Tech", "install_date": _install_date(rng),
               "name": f"Véhicule de service {n:03d}", "address": f"base : {address}"}


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
    """Write ``out/tags.yaml``, ``alarms.yaml``, ``commands.yaml``, ``crews.yaml`` and ``inventory.csv``; return the
    tags path."""
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
    if scale_name == "demo":  # the demo keeps its own crews (vehicle ids V001..V012 exist at any seed)
        shutil.copyfile(root / "crews.yaml", out / "crews.yaml")
    else:
        with (out / "inventory.csv").open(newline="", encoding="utf-8") as fh:
            vehicles = [(r["id"], r["commune"]) for r in csv.DictReader(fh) if r["type"] == "vehicle"]
        text = crews_yaml((root / "crews.yaml").read_text(encoding="utf-8"), vehicles, seed)
        (out / "crews.yaml").write_text(text, encoding="utf-8")
    return out / "tags.yaml"


#: the vehicles' share per service (its part of the maintenance work: lighting's 1,100 cabinets lead)
CREW_SHARES = {"lighting": 0.40, "traffic": 0.18, "buildings": 0.15, "cctv": 0.10, "bollards": 0.06, "panels": 0.05,
               "parking": 0.06}
WEEK = "[mon, tue, wed, thu, fri]"
ALL_WEEK = "[mon, tue, wed, thu, fri, sat, sun]"
#: service → the shifts its crews take in turn (crew k gets entry k mod n); [] is on call around the clock
SHIFTS: dict[str, list[list[str]]] = {
    "lighting": [[f'{{days: {WEEK}, start: "07:00", end: "15:00"}}'],
                 [f'{{days: {ALL_WEEK}, start: "18:00", end: "02:00"}}'], []],
    "traffic": [[f'{{days: {WEEK}, start: "06:00", end: "14:00"}}', f'{{days: {WEEK}, start: "14:00", end: "22:00"}}'],
                [f'{{days: {ALL_WEEK}, start: "22:00", end: "06:00"}}'], []],
    "buildings": [[f'{{days: {WEEK}, start: "08:00", end: "17:00"}}'], []],
    "cctv": [[f'{{days: {WEEK}, start: "08:00", end: "17:00"}}'], []],
    "bollards": [[]],
    "panels": [[f'{{days: {WEEK}, start: "08:00", end: "17:00"}}']],
    "parking": [[f'{{days: {WEEK}, start: "08:00", end: "17:00"}}']],
}


def crews_yaml(shipped: str, vehicles: list[tuple[str, str]], seed: int) -> str:
    """``crews.yaml`` for a generated city: ``shipped``'s settings and services (the SLAs, kept as written), then
    crews of 2-3 vehicles of one commune each; ``vehicles`` are (id, commune) from the inventory."""
    lines = shipped.splitlines()
    start = next(i for i, line in enumerate(lines) if line and not line.startswith("#"))
    end = next(i for i, line in enumerate(lines) if line.startswith("crews:"))
    rng = random.Random(seed + 4)  # its own stream: the inventory's are untouched
    shuffled = vehicles[:]
    rng.shuffle(shuffled)
    # largest remainder: every service gets its share of the vehicles, at least two (one crew)
    services = list(CREW_SHARES)
    counts = {s: max(2, int(len(shuffled) * CREW_SHARES[s])) for s in services}
    left = max(0, len(shuffled) - sum(counts.values()))
    for s in sorted(services, key=lambda s: (len(shuffled) * CREW_SHARES[s]) % 1, reverse=True)[:left]:
        counts[s] += 1
    out = ["# Maintenance crews of the generated city (scada.config.generate.crews_yaml): each crew drives vehicles",
           "# based in its commune; services and SLAs as the shipped crews.yaml. Validated by `scada check`.", "",
           *lines[start:end], "crews:"]
    taken = 0
    for service in services:
        mine = sorted(shuffled[taken:taken + counts[service]], key=lambda v: (v[1], v[0]))
        taken += counts[service]
        by_commune: dict[str, list[str]] = {}
        for vid, commune in mine:
            by_commune.setdefault(commune, []).append(vid)
        k = 0
        for commune, ids in by_commune.items():
            # crews of 3, the last of 2 or 3 (a commune's lone vehicle is a crew of one)
            groups = [ids[i:i + 3] for i in range(0, len(ids), 3)]
            if len(groups) > 1 and len(groups[-1]) == 1:
                groups[-2:] = [groups[-2][:2], groups[-2][2:] + groups[-1]]
            for n, group in enumerate(groups, 1):
                crew = f"{service}-{slug(commune)}-{n}"
                shifts = SHIFTS[service][k % len(SHIFTS[service])]
                k += 1
                out += [f"  - id: {crew}", f"    service: {service}", f"    vehicles: [{', '.join(group)}]",
                        f"    accounts: [crew.{crew}]", f'    description: "based in {commune}"']
                if shifts:
                    out.append(f"    shifts: [{', '.join(shifts)}]")
    return "\n".join(out) + "\n"


__all__ = ["COMMUNES", "SCALES", "count_rows", "crews_yaml", "generate", "rows", "slug", "write_inventory"]

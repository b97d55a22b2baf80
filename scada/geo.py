"""The métropole's real geography: the 23 commune outlines, point-in-commune and label points.

    scada/data/dijon-metropole-communes.geojson        (IGN Admin Express COG 2018, Licence Ouverte;
      24 polygons, WGS 84 lon/lat                        see scada/data/README.md)
        │  grouped by the ``commune`` property: Neuilly-Crimolois (2019) = Neuilly-lès-Dijon ∪ Crimolois
        ▼
    communes()  {name: Commune(outline, label lat/lon)}   loaded once per process (cached)
        ├── contains(name, lat, lon)    the generator's placement, ``scada check``'s outside-commune warning
        ├── commune_at(lat, lon)        which commune a point is in (None: outside the métropole)
        ├── outside_commune(equipment)  ``scada check``'s warnings: ``file:line: equipment 'X': warning: ...``
        └── Commune.rings()             exterior and hole rings as lon/lat arrays, for the console's map

Shapely does the geometry (prepared polygons: a point test costs microseconds). A commune's label
point is the pole of inaccessibility (``polylabel``) computed in a locally isotropic frame (longitudes
scaled by cos(latitude)), so it lies well inside the outline even for a crescent-shaped commune — unlike
the centroid or the bounding-box centre. Communes not in the file (a city other than Dijon) are simply
unknown here: callers treat "no outline" as "nothing to check".
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt
import shapely
from shapely import affinity
from shapely.geometry import MultiPolygon, Polygon, shape
from shapely.geometry.base import BaseGeometry
from shapely.ops import polylabel

from scada.errors import ConfigProblem

DATA = Path(__file__).with_name("data") / "dijon-metropole-communes.geojson"
#: The credit line the licence asks for wherever the outlines are shown (see scada/data/README.md).
ATTRIBUTION = "Contours des communes : IGN Admin Express COG 2018, Licence Ouverte"

F64 = npt.NDArray[np.float64]
#: Metres per degree of latitude, and of longitude at the equator (times cos(latitude) elsewhere): the
#: local flat-earth frame of a city map, good to a few metres across the métropole.
M_PER_DEG_LAT = 110_540.0
M_PER_DEG_LON_EQ = 111_320.0


@dataclass(frozen=True, slots=True)
class Commune:
    name: str
    insee_2018: tuple[str, ...]  # the source's codes (two for Neuilly-Crimolois)
    outline: Polygon | MultiPolygon  # x = longitude, y = latitude
    label_lat: float
    label_lon: float

    def contains(self, lat: float, lon: float) -> bool:
        return bool(shapely.contains_xy(self.outline, lon, lat))

    def polygons(self) -> list[Polygon]:
        return list(self.outline.geoms) if isinstance(self.outline, MultiPolygon) else [self.outline]

    def rings(self) -> Iterator[tuple[F64, F64]]:
        """(longitudes, latitudes) of every ring: each polygon's exterior, then its holes."""
        for poly in self.polygons():
            for ring in (poly.exterior, *poly.interiors):
                xy = np.asarray(ring.coords, dtype=np.float64)
                yield xy[:, 0], xy[:, 1]


def _label_point(outline: Polygon | MultiPolygon) -> tuple[float, float]:
    """(lat, lon) of the pole of inaccessibility of the largest part, in a frame where 1 unit ≈ 1 unit."""
    part = max(outline.geoms, key=lambda g: g.area) if isinstance(outline, MultiPolygon) else outline
    k = math.cos(math.radians(part.centroid.y))
    iso = affinity.scale(part, xfact=k, yfact=1.0, origin=(0.0, 0.0))
    p = polylabel(iso, tolerance=1e-5)  # ~1 m
    return float(p.y), float(p.x) / k


@cache
def communes() -> dict[str, Commune]:
    """Every commune of the shipped outlines, by name (loaded once)."""
    doc = json.loads(DATA.read_text(encoding="utf-8"))
    parts: dict[str, list[BaseGeometry]] = {}
    codes: dict[str, list[str]] = {}
    for feat in doc["features"]:
        props = feat["properties"]
        name = str(props["commune"])
        parts.setdefault(name, []).append(shape(feat["geometry"]))
        codes.setdefault(name, []).append(str(props.get("insee_code_2018", "")))
    out: dict[str, Commune] = {}
    for name in sorted(parts):
        # one commune = the union of its source polygons (the two 2018 communes of Neuilly-Crimolois
        # share a border, so their union is one polygon without the seam)
        outline = shapely.union_all(parts[name])
        if not isinstance(outline, (Polygon, MultiPolygon)):
            raise ValueError(f"{DATA.name}: commune {name!r}: outline is a {outline.geom_type}, not an area")
        shapely.prepare(outline)
        lat, lon = _label_point(outline)
        out[name] = Commune(name, tuple(sorted(codes[name])), outline, lat, lon)
    return out


def contains(commune: str, lat: float, lon: float) -> bool | None:
    """Whether (lat, lon) lies inside ``commune``'s outline; None when the commune has no outline here."""
    c = communes().get(commune)
    return None if c is None else c.contains(lat, lon)


def commune_at(lat: float, lon: float) -> str | None:
    """The commune whose outline holds (lat, lon), or None outside the métropole."""
    for c in communes().values():
        if c.contains(lat, lon):
            return c.name
    return None


class Placed(Protocol):
    """What :func:`outside_commune` reads of an equipment (scada.config's EquipmentDef has it)."""

    id: str
    commune: str
    lat: float
    lon: float
    source: str  # "inventory/demo.csv:14", "tags.yaml:120", "inv.geojson:feature 3"


def outside_commune(equipment: Iterable[Placed]) -> list[ConfigProblem]:
    """A warning per equipment whose coordinates fall outside its commune's outline.

    Equipment of a commune without an outline here is not checked (nothing to check it against).
    """
    out: list[ConfigProblem] = []
    for e in equipment:
        if contains(e.commune, e.lat, e.lon) is not False:
            continue
        file, _, where = e.source.rpartition(":")
        line = int(where) if where.isdigit() else 0
        who = f"equipment '{e.id}'" + ("" if where.isdigit() else f" ({where})")
        other = commune_at(e.lat, e.lon)
        got = f"in {other}" if other else "outside the métropole"
        out.append(ConfigProblem(file or e.source, line, who,
                                 f"warning: coordinates must lie inside commune '{e.commune}', "
                                 f"got {e.lat}, {e.lon} ({got})"))
    return out


__all__ = ["ATTRIBUTION", "DATA", "M_PER_DEG_LAT", "M_PER_DEG_LON_EQ", "Commune", "Placed", "commune_at",
           "communes", "contains", "outside_commune"]

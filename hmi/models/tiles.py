"""The optional street base map: where tiles come from and which ones a view needs (pure, no Qt).

Configured by the city in the console's layouts file (``hmi/layouts/city.yaml``, section ``basemap``)::

    basemap:
      xyz: https://tiles.example.net/{z}/{x}/{y}.png    # an XYZ URL template ({s} → a, b, c) ...
      # mbtiles: maps/dijon.mbtiles                     # ... or an MBTiles file (relative to this file)
      attribution: "© OpenStreetMap contributors"        # shown on the map (an MBTiles' own metadata else)
      min_zoom: 10                                       # optional, default 0 (MBTiles: its metadata)
      max_zoom: 18                                       # optional, default 19
      opacity: 0.45                                      # optional: the map stays a faint grey background
      cache: /var/cache/scada-tiles                      # optional (XYZ): default the console's cache folder

    view rect (map metres) ──unproject──► lon/lat box ──► zoom for the pixel size ──► tiles (z, x, y)
    TileSource.get(z, x, y) → PNG/JPEG bytes or None
        MBTilesSource  SQLite ``tiles(zoom_level, tile_column, tile_row, tile_data)``, rows in TMS order
                       (row 0 at the south: tile_row = 2^z − 1 − y), opened read-only
        XyzCache       ``<cache>/<z>/<x>/<y>.tile``: a tile fetched once is read from disk afterwards
                       (the fetch itself is asynchronous, in :mod:`hmi.tiles`)

Tiles are Web Mercator (EPSG:3857). The map draws in local metres around the city centre
(:meth:`hmi.models.mapmodel.MapModel.project`, linear in lon and lat): a tile's corners are projected
and the image stretched between them. Inside one tile Mercator's rows are not evenly spaced in latitude,
but at city zooms (≥ 10) the error is below a hundredth of a pixel.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from hmi.models.problems import suggest
from scada.i18n import _

#: Web Mercator: metres per pixel of a 256-pixel tile at zoom 0, on the equator
M_PER_PX_Z0 = 2 * math.pi * 6_378_137 / 256
MAX_LAT = 85.05112878
KEYS = ("xyz", "mbtiles", "attribution", "min_zoom", "max_zoom", "opacity", "cache")
MAX_TILES = 96  # tiles drawn at once (a 4K screen at one zoom needs ~ 16 × 9)


@dataclass(frozen=True, slots=True)
class BaseMapSpec:
    kind: str  # "xyz" | "mbtiles"
    source: str  # URL template, or the MBTiles file's absolute path
    attribution: str
    min_zoom: int = 0
    max_zoom: int = 19
    opacity: float = 0.45
    cache: str = ""  # XYZ disk cache folder ("" = the console's cache folder)


def parse_basemap(raw: Any, base: Path, problem: Callable[[list[str | int], str, str], None]) -> BaseMapSpec | None:
    """The ``basemap`` section → a spec, or None with every problem reported (``problem(loc, who, what)``)."""
    who = "basemap"
    if not isinstance(raw, dict):
        problem(["basemap"], who, _("must be a mapping with xyz or mbtiles and attribution, got {got!r}").format(
            got=raw))
        return None
    ok = True
    for key in raw:
        if key not in KEYS:
            problem(["basemap", key], who, _("unknown key {key!r}{hint}; keys: {keys}").format(
                key=key, hint=suggest(str(key), KEYS), keys=", ".join(KEYS)))
            ok = False
    has = [k for k in ("xyz", "mbtiles") if k in raw]
    if len(has) != 1:
        problem(["basemap"], who, _("give exactly one tile source, xyz (a URL template) or mbtiles (a file), "
                                    "got {got}").format(got=" + ".join(has) or _("neither")))
        return None
    kind = has[0]
    source = raw[kind]
    attribution = raw.get("attribution")
    meta: dict[str, str] = {}
    if kind == "xyz":
        if not isinstance(source, str) or not source.startswith(("http://", "https://")) or not all(
                p in source for p in ("{z}", "{x}", "{y}")):
            problem(["basemap", "xyz"], who, _("'xyz' must be an http(s) URL template with {z}, {x} and {y}, "
                                               "got {got!r}").format(z="{z}", x="{x}", y="{y}", got=source))
            ok = False
    else:
        path = Path(str(source)).expanduser()
        path = path if path.is_absolute() else base / path
        try:
            meta = MBTilesSource(path).metadata
            source = str(path)
        except (OSError, sqlite3.Error, ValueError) as e:
            problem(["basemap", "mbtiles"], who, _("'mbtiles' must be a readable MBTiles file, got {got!r} "
                                                   "({error})").format(got=str(source), error=e))
            ok = False
    if attribution is None:
        attribution = meta.get("attribution")
    if not isinstance(attribution, str) or not attribution.strip():
        problem(["basemap"], who, _("'attribution' must be the tile source's credit (shown on the map: its licence "
                                    "asks for it), got {got!r}").format(got=attribution))
        ok = False
    zooms = {}
    for key, default in (("min_zoom", meta.get("minzoom", 0)), ("max_zoom", meta.get("maxzoom", 19))):
        v = raw.get(key, default)
        try:
            v = int(v)
        except (TypeError, ValueError):
            v = -1
        if not 0 <= v <= 22 or isinstance(raw.get(key), bool | float):
            problem(["basemap", key], who, _("'{key}' must be a zoom level 0..22, got {got!r}").format(
                key=key, got=raw.get(key)))
            ok = False
        zooms[key] = v
    if ok and zooms["min_zoom"] > zooms["max_zoom"]:
        problem(["basemap"], who, _("'min_zoom' ({min}) is above 'max_zoom' ({max})").format(
            min=zooms["min_zoom"], max=zooms["max_zoom"]))
        ok = False
    opacity = raw.get("opacity", 0.45)
    if isinstance(opacity, bool) or not isinstance(opacity, int | float) or not 0 < opacity <= 1:
        problem(["basemap", "opacity"], who, _("'opacity' must be a number in (0, 1], got {got!r}").format(got=opacity))
        ok = False
    cache = raw.get("cache", "")
    if not isinstance(cache, str) or (cache and kind != "xyz"):
        problem(["basemap", "cache"], who, _("'cache' is a folder for xyz tiles, got {got!r}").format(got=cache))
        ok = False
    if not ok:
        return None
    return BaseMapSpec(kind, str(source), str(attribution).strip(), zooms["min_zoom"], zooms["max_zoom"],
                       float(opacity), str(Path(cache).expanduser()) if cache else "")


# ---------------------------------------------------------------------- tile arithmetic (slippy map)
def tile_of(lat: float, lon: float, z: int) -> tuple[int, int]:
    """The (x, y) of the tile holding this point at zoom ``z`` (y = 0 at the north)."""
    n = 2 ** z
    lat = max(-MAX_LAT, min(MAX_LAT, lat))
    x = int((lon + 180.0) / 360.0 * n)
    y = int((1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n)
    return min(max(x, 0), n - 1), min(max(y, 0), n - 1)


def tile_bounds(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """(west lon, south lat, east lon, north lat) of a tile."""
    n = 2 ** z

    def lat(row: int) -> float:
        return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * row / n))))

    return x / n * 360.0 - 180.0, lat(y + 1), (x + 1) / n * 360.0 - 180.0, lat(y)


def zoom_for(m_per_px: float, lat: float, min_zoom: int, max_zoom: int) -> int:
    """The zoom whose tiles are drawn closest to one tile pixel per screen pixel."""
    if m_per_px <= 0:
        return max_zoom
    z = round(math.log2(M_PER_PX_Z0 * math.cos(math.radians(lat)) / m_per_px))
    return min(max(z, min_zoom), max_zoom)


def tiles_for(west: float, south: float, east: float, north: float, z: int,
              limit: int = MAX_TILES) -> list[tuple[int, int, int]]:
    """The tiles covering a lon/lat box at zoom ``z`` (centre first; at most ``limit``)."""
    x0, y0 = tile_of(north, west, z)
    x1, y1 = tile_of(south, east, z)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    out = [(z, x, y) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1)]
    out.sort(key=lambda t: (t[1] - cx) ** 2 + (t[2] - cy) ** 2)
    return out[:limit]


# ---------------------------------------------------------------------- sources
class TileSource(Protocol):
    def get(self, z: int, x: int, y: int) -> bytes | None: ...


class MBTilesSource:
    """An MBTiles file (SQLite; rows in TMS order), read-only."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {path}")
        self.path = path
        self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        names = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
        if "tiles" not in names:
            self.db.close()
            raise ValueError("no 'tiles' table")
        self.metadata: dict[str, str] = {}
        if "metadata" in names:
            self.metadata = {str(k): str(v) for k, v in self.db.execute("SELECT name, value FROM metadata")}

    def get(self, z: int, x: int, y: int) -> bytes | None:
        row = self.db.execute("SELECT tile_data FROM tiles WHERE zoom_level=? AND tile_column=? AND tile_row=?",
                              (z, x, 2 ** z - 1 - y)).fetchone()
        return bytes(row[0]) if row else None

    def close(self) -> None:
        self.db.close()


class XyzCache:
    """The disk cache of an XYZ source: ``url(z, x, y)`` to fetch, ``get`` what is on disk, ``put`` a fetch."""

    def __init__(self, template: str, folder: Path, max_age_s: float = 30 * 86400) -> None:
        self.template = template
        self.folder = folder
        self.max_age_s = max_age_s  # tiles older than this are fetched again (streets change slowly)

    def url(self, z: int, x: int, y: int) -> str:
        return self.template.format(z=z, x=x, y=y, s="abc"[(x + y) % 3])

    def path(self, z: int, x: int, y: int) -> Path:
        return self.folder / str(z) / str(x) / f"{y}.tile"

    def get(self, z: int, x: int, y: int) -> bytes | None:
        p = self.path(z, x, y)
        try:
            if time.time() - p.stat().st_mtime > self.max_age_s:
                return None
            return p.read_bytes()
        except OSError:
            return None

    def put(self, z: int, x: int, y: int, data: bytes) -> None:
        p = self.path(z, x, y)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(".part")
        tmp.write_bytes(data)
        tmp.replace(p)  # atomic: a second console never reads half a tile

"""The Level-1 city map as arrays: one marker per equipment and per luminaire, with a display code.

    commune outlines (scada.geo)    lon/lat ──project──► outline rings, label points inside each outline
    equipment (GET /equipment)      lat/lon ──project──► x, y metres around the city centre
    lamp status tags (snapshot)     ─────────────────► luminaire markers where the inventory puts them
                                                        (the cabinet's ``lamps``; at the cabinet if none)
    health tags (WebSocket rows)    ──apply_rows──►  base state: NORMAL / ABNORMAL / UNKNOWN
    alarm store                     ──set_alarm_levels──► worst annunciated active priority
                                     │
                                     ▼
    display code (hmi.style): 0 normal · 1 abnormal (white) · 2 unknown (hatched) · 4..7 alarm P4..P1

Level of detail (zoomed out on a big city): :meth:`MapModel.cabinet_codes` gives one mark per cabinet
with the worst code of its luminaires, and :meth:`MapModel.clusters` groups equipment falling in the same
grid cell into one mark with a count and the worst alarm priority. The code order is the severity order
(alarm > unknown > abnormal > normal), so "worst" is a maximum.

Every mutator returns the indices whose *display code* changed, so the view recolours only those
markers (a 1 % delta on 34,000 luminaires touches ~340 spots). Vehicle positions come from their
lat/lon tags; when any moved, ``MapDelta.moved`` asks the view to move the vehicle layer.

Which tags matter per equipment type is the :data:`HEALTH` table; :meth:`MapModel.patterns` turns it
into the WebSocket subscription of the city channel (globs, independent of the city's size).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely

from hmi.models.live import EquipmentInfo
from hmi.style import ABNORMAL, KIND_SYMBOLS, NORMAL, UNKNOWN, alarm_code
from scada import geo
from scada.geo import M_PER_DEG_LAT, M_PER_DEG_LON_EQ

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
F64 = npt.NDArray[np.float64]



def _never(v: Any) -> bool:
    return False


def _truthy(v: Any) -> bool:
    return bool(v)


def _false(v: Any) -> bool:
    return v is False or v == 0


def _not(ok: Any) -> Callable[[Any], bool]:
    return lambda v: v is not None and v != ok


#: template → health tags and "is this value abnormal?" (quality not good ⇒ UNKNOWN, whatever the rule)
HEALTH: dict[str, tuple[tuple[str, Callable[[Any], bool]], ...]] = {
    "junction": (("phase_greens", _never),),
    "lighting_cabinet": (("mains_ok", _false),),
    "camera": (("link", _not(1)),),
    "bollard": (("fault", _truthy),),
    "parking": (("occupied", _never),),
    "panel": (("status", _not(0)),),
    "building": (("intrusion_alarm", _truthy),),
    "vehicle": (("status", _never),),
}
POSITION_TAGS = ("lat", "lon")
LAMP = re.compile(r"^lamp_(\d+)/status$")
LAMP_GLOB = "*/*/*/lamp_*/status"  # every luminaire status, whatever the commune and kind
LAMP_TEMPLATE = "lighting_cabinet"

KINDS: tuple[str, ...] = tuple(KIND_SYMBOLS)
KIND_CODE: dict[str, int] = {k: i for i, k in enumerate(KINDS)}


@dataclass(slots=True)
class MapDelta:
    equipment: I64 = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    luminaires: I64 = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    moved: bool = False  # a vehicle moved
    rebuilt: bool = False  # luminaire markers were added: redraw that layer entirely

    def __bool__(self) -> bool:
        return bool(self.equipment.size or self.luminaires.size or self.moved or self.rebuilt)


@dataclass(slots=True)
class Clusters:
    """Equipment grouped per grid cell (only cells holding two or more markers)."""

    x: F64  # mean position of the members
    y: F64
    count: I64
    code: U8  # worst display code of the members
    priority: U8  # worst annunciated alarm priority 1..4 among the members, 0 = none
    members: I64  # equipment index → cluster number, -1 when alone in its cell


def _box_points(centre: tuple[float, float], size: tuple[float, float]) -> F64:
    """A placed label's box as points (a grid of a quarter of its height) for :meth:`MapModel.clear_point`,
    which keeps clear of points: the next labels then keep clear of it."""
    (cx, cy), (w, h) = centre, size
    step = h / 4
    gx, gy = np.meshgrid(np.arange(cx - w / 2, cx + w / 2 + step, step), np.arange(cy - h / 2, cy + h / 2 + step, step))
    return np.column_stack([gx.ravel(), gy.ravel()])


class MapModel:
    """Markers of the city map; see the module docstring."""

    def __init__(self, equipment: Sequence[EquipmentInfo]) -> None:
        self.equipment = list(equipment)
        self.index: dict[str, int] = {e.id: i for i, e in enumerate(self.equipment)}
        n = len(self.equipment)
        lat = np.array([e.lat for e in self.equipment], dtype=np.float64)
        lon = np.array([e.lon for e in self.equipment], dtype=np.float64)
        ok = (lat != 0) | (lon != 0)
        self.lat0 = float(np.median(lat[ok])) if ok.any() else 0.0
        self.lon0 = float(np.median(lon[ok])) if ok.any() else 0.0
        self._kx = M_PER_DEG_LON_EQ * math.cos(math.radians(self.lat0))
        self.eq_x, self.eq_y = self.project(lat, lon)
        self.eq_kind: U8 = np.array([KIND_CODE.get(e.template, KIND_CODE["other"]) for e in self.equipment],
                                    dtype=np.uint8)
        self.eq_base: U8 = np.full(n, UNKNOWN, dtype=np.uint8)  # no value yet = unknown
        self.eq_alarm: U8 = np.zeros(n, dtype=np.uint8)  # worst priority 1..4, 0 = none
        self.eq_code: U8 = np.full(n, UNKNOWN, dtype=np.uint8)
        self._health: list[dict[str, int]] = [{} for _ in range(n)]
        self.communes = sorted({e.commune for e in self.equipment})
        self.eq_commune = np.array([self.communes.index(e.commune) for e in self.equipment], dtype=np.int32) \
            if n else np.zeros(0, dtype=np.int32)
        # luminaires
        self.lum_x: F64 = np.zeros(0)
        self.lum_y: F64 = np.zeros(0)
        self.lum_owner: I64 = np.zeros(0, dtype=np.int64)
        self.lum_code: U8 = np.zeros(0, dtype=np.uint8)
        self.lum_names: list[str] = []
        self._lum_index: dict[str, int] = {}
        # tag name → handler, resolved once per name
        self._route: dict[str, tuple[int, int, str]] = {}  # name → (kind 0 eq health / 1 lamp / 2 position, idx, tag)
        self._vehicle_pos: dict[int, list[float]] = {}
        self._cabinets = {e.id: i for i, e in enumerate(self.equipment) if e.template == LAMP_TEMPLATE}

    # ------------------------------------------------------------------ geometry
    def project(self, lat: F64 | float, lon: F64 | float) -> tuple[F64, F64]:
        x = (np.asarray(lon, dtype=np.float64) - self.lon0) * self._kx
        y = (np.asarray(lat, dtype=np.float64) - self.lat0) * M_PER_DEG_LAT
        return x, y

    def bounds(self) -> tuple[float, float, float, float]:
        """Extent of the markers and of the commune outlines (the whole métropole when it has them)."""
        ox, oy = self.outlines()
        ox, oy = ox[np.isfinite(ox)], oy[np.isfinite(oy)]
        xs = np.concatenate([self.eq_x, self.lum_x, ox])
        ys = np.concatenate([self.eq_y, self.lum_y, oy])
        if xs.size == 0:
            return (-1000.0, -1000.0, 1000.0, 1000.0)
        return float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())

    def outline_communes(self) -> list[geo.Commune]:
        """The real outlines to draw: the shipped ones, when the city's equipment lies in those communes."""
        known = geo.communes()
        return list(known.values()) if any(c in known for c in self.communes) else []

    def outlines(self) -> tuple[F64, F64]:
        """Every commune ring projected, as one x/y pair of arrays with NaN between rings (one curve)."""
        xs: list[F64] = []
        ys: list[F64] = []
        gap = np.array([np.nan])
        for c in self.outline_communes():
            for lon, lat in c.rings():
                x, y = self.project(lat, lon)
                xs += [x, gap]
                ys += [y, gap]
        if not xs:
            return np.zeros(0), np.zeros(0)
        return np.concatenate(xs), np.concatenate(ys)

    def commune_anchors(self, boxes: Mapping[str, Sequence[tuple[float, float]]] | None = None,
                        marker_m: float = 0.0, markers: F64 | None = None) -> list[tuple[str, float, float]]:
        """(commune, x, y): where to write each commune's name.

        A commune with an outline: its label point (inside the outline, see scada.geo) or, given ``boxes``
        (per commune, the label's sizes to try, (width, height) in map metres, largest first), where
        :meth:`place_label` finds room clear of ``markers`` (default: every equipment and luminaire), so
        nothing is drawn over the name. One without (a city beyond the shipped data): above its equipment.
        """
        out = []
        outlined = {c.name: c for c in self.outline_communes()}
        if boxes and markers is None:
            markers = self.label_markers(0.0)
        for c in outlined.values():
            x, y = self.project(c.label_lat, c.label_lon)
            sizes = (boxes or {}).get(c.name, ())
            at = self.place_label(c, sizes, markers, marker_m) if sizes and markers is not None else None
            if at is not None and markers is not None:  # the next labels keep clear of this one too
                markers = np.vstack([markers, _box_points(at, sizes[-1])])
            out.append((c.name, *(at or (float(x), float(y)))))
        for ci, name in enumerate(self.communes):
            m = self.eq_commune == ci
            if name not in outlined and m.any():
                out.append((name, float(self.eq_x[m].mean()), float(self.eq_y[m].max()) + 120.0))
        return out

    def place_label(self, commune: geo.Commune, sizes: Sequence[tuple[float, float]], markers: F64,
                    marker_m: float) -> tuple[float, float] | None:
        """The centre for a label of one of ``sizes`` (largest first, map metres) in ``commune``: each size with
        its whole box inside the outline; then the smallest with only its centre inside (a small commune
        crowded with markers: clear of the markers matters more than of the outline), last keeping half the
        distance from the markers rather than lying over them. None when nothing fits."""
        tries = [(w, h, True, marker_m) for w, h in sizes] + [(w, h, False, m) for w, h in list(sizes)[-1:]
                                                               for m in (marker_m, marker_m / 2)]
        for w, h, inside, clear_m in tries:
            at = self.clear_point(commune, w, h, markers, clear_m, inside)
            if at is not None:
                return at
        return None

    def label_markers(self, snap_m: float) -> F64:
        """Every marker's (x, y), snapped to a grid of ``snap_m`` and deduplicated (34,000 luminaires are a
        few hundred cells at the zoom a label is placed for; a clearance then adds ``snap_m / 2``)."""
        xy = np.column_stack([np.concatenate([self.eq_x, self.lum_x]), np.concatenate([self.eq_y, self.lum_y])])
        if snap_m <= 0 or xy.size == 0:
            return xy
        cells = np.round(xy / snap_m).astype(np.int64)
        keys = np.unique((cells[:, 0] << 32) + (cells[:, 1] & 0xFFFFFFFF))  # one int per cell: a fast 1-D unique
        return np.column_stack([keys >> 32, (keys & 0xFFFFFFFF).astype(np.int32)]).astype(np.float64) * snap_m

    def clear_point(self, commune: geo.Commune, w: float, h: float, markers: F64,
                    marker_m: float, inside: bool = True) -> tuple[float, float] | None:
        """The centre of a w × h box (map metres) inside ``commune``'s outline (``inside=False``: only its
        centre) and clear of ``markers`` (each grown by ``marker_m``), the nearest to the commune's label
        point; None when no such box fits.

        Candidate centres on a grid of a quarter of the box's height over the outline's extent; a box is
        inside when its corners and edge midpoints are (shapely, vectorised), clear when no marker falls in
        it (numpy, candidates × nearby markers): milliseconds per commune even among 34,000 luminaires.
        """
        def to_map(xy: F64) -> F64:
            return np.column_stack(self.project(xy[:, 1], xy[:, 0]))

        shape = shapely.transform(commune.outline, to_map)
        shapely.prepare(shape)
        x0, y0, x1, y1 = shape.bounds
        step = h / 4
        gx, gy = (a.ravel() for a in np.meshgrid(np.arange(x0, x1, step), np.arange(y0, y1, step)))
        probes = ((0.0, 0.0), (-0.5, -0.5), (0.5, -0.5), (-0.5, 0.5), (0.5, 0.5),
                  (0.0, -0.5), (0.0, 0.5), (-0.5, 0.0), (0.5, 0.0)) if inside else ((0.0, 0.0),)
        ok = np.ones(gx.size, dtype=bool)
        for fx, fy in probes:
            ok &= shapely.contains_xy(shape, gx + fx * w, gy + fy * h)
        gx, gy = gx[ok], gy[ok]
        if gx.size == 0:
            return None
        hw, hh = w / 2 + marker_m, h / 2 + marker_m
        near = markers[(markers[:, 0] > x0 - hw) & (markers[:, 0] < x1 + hw)
                       & (markers[:, 1] > y0 - hh) & (markers[:, 1] < y1 + hh)]
        if near.size:
            hit = ((np.abs(gx[:, None] - near[None, :, 0]) < hw) & (np.abs(gy[:, None] - near[None, :, 1]) < hh))
            clear = ~hit.any(axis=1)
            gx, gy = gx[clear], gy[clear]
        if gx.size == 0:
            return None
        lx, ly = self.project(commune.label_lat, commune.label_lon)
        best = int(np.argmin((gx - lx) ** 2 + (gy - ly) ** 2))
        return float(gx[best]), float(gy[best])

    # ------------------------------------------------------------------ subscription
    def patterns(self) -> list[str]:
        """Tag globs of the city channel: health tags per type, lamp statuses, vehicle positions."""
        kinds: dict[str, str] = {}
        for e in self.equipment:
            kinds.setdefault(e.template, e.kind)
        out: list[str] = []
        for template, kind in sorted(kinds.items()):
            for tag, _ in HEALTH.get(template, ()):
                out.append(f"*/{kind}/*/{tag}")
            if template == LAMP_TEMPLATE:
                out.append(f"*/{kind}/*/lamp_*/status")
            if template == "vehicle":
                out += [f"*/{kind}/*/{t}" for t in POSITION_TAGS]
        return out

    # ------------------------------------------------------------------ routing
    def _resolve(self, name: str) -> tuple[int, int, str] | None:
        r = self._route.get(name)
        if r is not None:
            return r
        parts = name.split("/", 3)
        if len(parts) < 4:
            return None
        i = self.index.get(parts[2])
        if i is None:
            return None
        tag = parts[3]
        template = self.equipment[i].template
        if template == LAMP_TEMPLATE and LAMP.match(tag):
            li = self._lum_index.get(name)
            if li is None:
                return None
            r = (1, li, tag)
        elif template == "vehicle" and tag in POSITION_TAGS:
            r = (2, i, tag)
        elif any(tag == t for t, _ in HEALTH.get(template, ())):
            r = (0, i, tag)
        else:
            return None
        self._route[name] = r
        return r

    def add_luminaires(self, names: Iterable[str]) -> bool:
        """Create markers for lamp status tags not seen before. True when the layer must be redrawn."""
        new: list[tuple[str, int, int]] = []
        known, cabinets = self._lum_index, self._cabinets
        for name in names:
            if name in known:
                continue
            parts = name.rsplit("/", 3)  # <slug>/<kind> / <id> / lamp_NN / status
            if len(parts) < 4 or parts[3] != "status" or not parts[2].startswith("lamp_"):
                continue
            i = cabinets.get(parts[1])
            if i is None or not parts[2][5:].isdigit():
                continue
            new.append((name, i, int(parts[2][5:])))
        if not new:
            return False
        owner = np.array([n[1] for n in new], dtype=np.int64)
        # each lamp where the inventory puts it (lamp_NN is the NN-th position); at its cabinet otherwise
        lat = np.array([self.equipment[o].lat for o in owner.tolist()], dtype=np.float64)
        lon = np.array([self.equipment[o].lon for o in owner.tolist()], dtype=np.float64)
        for j, (_, o, k) in enumerate(new):
            lamps = self.equipment[o].lamps
            if 1 <= k <= len(lamps):
                lat[j], lon[j] = lamps[k - 1]
        x, y = self.project(lat, lon)
        base = len(self.lum_names)
        self.lum_x = np.concatenate([self.lum_x, x])
        self.lum_y = np.concatenate([self.lum_y, y])
        self.lum_owner = np.concatenate([self.lum_owner, owner])
        self.lum_code = np.concatenate([self.lum_code, np.full(len(new), UNKNOWN, dtype=np.uint8)])
        names_new = [n[0] for n in new]
        self._lum_index.update(zip(names_new, range(base, base + len(new)), strict=True))
        self.lum_names.extend(names_new)
        return True

    # ------------------------------------------------------------------ updates
    def apply_rows(self, rows: Iterable[Sequence[Any]]) -> MapDelta:
        """Apply WebSocket rows ``[name, value, quality, ts]``; return what changed on screen.

        Luminaire rows (the bulk of a storm) take a short loop and vectorised change detection; the
        few equipment rows go through the routing table.
        """
        rows = rows if isinstance(rows, list) else list(rows)
        lamp = self._lum_index
        rebuilt = self.add_luminaires([r[0] for r in rows if r[0] not in lamp and "/lamp_" in r[0]]) \
            if len(lamp) < len(rows) or any(r[0] not in lamp and "/lamp_" in r[0] for r in rows[:64]) else False
        li: list[int] = []
        codes: list[int] = []
        other: list[Sequence[Any]] = []
        for r in rows:
            j = lamp.get(r[0])
            if j is None:
                other.append(r)
                continue
            li.append(j)
            v = r[1]
            codes.append(UNKNOWN if r[2] != "good" or v is None else (NORMAL if v == 0 else ABNORMAL))
        lum_changed = np.zeros(0, dtype=np.int64)
        if li:
            idx = np.array(li, dtype=np.int64)
            c = np.array(codes, dtype=np.uint8)
            diff = self.lum_code[idx] != c
            lum_changed = np.unique(idx[diff])
            self.lum_code[idx] = c
        eq_touched: set[int] = set()
        moved = False
        for row in other:
            r2 = self._resolve(row[0])
            if r2 is None:
                continue
            kind, i, tag = r2
            value, quality = row[1], row[2]
            if kind == 0:
                rule = next(f for t, f in HEALTH[self.equipment[i].template] if t == tag)
                state = UNKNOWN if quality != "good" or value is None else (ABNORMAL if rule(value) else NORMAL)
                self._health[i][tag] = state
                eq_touched.add(i)
            elif kind == 2:
                if quality == "good" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    pos = self._vehicle_pos.setdefault(i, [self.equipment[i].lat, self.equipment[i].lon])
                    pos[0 if tag == "lat" else 1] = float(value)
                    x, y = self.project(pos[0], pos[1])
                    if float(x) != self.eq_x[i] or float(y) != self.eq_y[i]:
                        self.eq_x[i], self.eq_y[i] = float(x), float(y)
                        moved = True
        eq_changed = self._recompute(eq_touched)
        return MapDelta(eq_changed, lum_changed, moved, rebuilt)

    def health_names(self, tag_name: Any) -> list[str]:
        """Exact names of the health and position tags (``tag_name(eq_id, tag)`` builds one).

        Subscribing by exact name costs the server a dictionary look-up; a glob costs a scan of every
        tag name in the city — so only the luminaires (whose count per cabinet we do not know) use one.
        """
        out = []
        for e in self.equipment:
            for tag, _ in HEALTH.get(e.template, ()):
                out.append(tag_name(e.id, tag))
            if e.template == "vehicle":
                out += [tag_name(e.id, t) for t in POSITION_TAGS]
        return out

    def lamp_patterns(self) -> list[str]:
        kinds = sorted({e.kind for e in self.equipment if e.template == LAMP_TEMPLATE})
        return [f"*/{k}/*/lamp_*/status" for k in kinds]

    def _recompute(self, touched: Iterable[int]) -> I64:
        changed = []
        for i in touched:
            states = self._health[i].values()
            base = UNKNOWN if not states or UNKNOWN in states else (ABNORMAL if ABNORMAL in states else NORMAL)
            self.eq_base[i] = base
            lvl = int(self.eq_alarm[i])
            code = alarm_code(lvl) if lvl else base
            if self.eq_code[i] != code:
                self.eq_code[i] = code
                changed.append(i)
        return np.array(sorted(changed), dtype=np.int64)

    def set_alarm_levels(self, levels: dict[str, int], touched: Iterable[str] | None = None) -> MapDelta:
        """Worst annunciated active alarm priority per equipment (from the alarm store).

        ``touched`` limits the update to those equipment (deltas); None recomputes every marker (snapshot).
        """
        idx: list[int] | range
        if touched is None:
            idx = range(len(self.equipment))
        else:
            idx = [self.index[e] for e in touched if e in self.index]
        for i in idx:
            self.eq_alarm[i] = levels.get(self.equipment[i].id, 0)
        return MapDelta(self._recompute(idx))

    # ------------------------------------------------------------------ queries
    def pick(self, x: float, y: float, radius: float, shown: npt.NDArray[np.bool_] | None = None,
             luminaires: bool = True) -> str | None:
        """The equipment under (x, y) within ``radius`` metres; a luminaire selects its cabinet.

        ``shown`` (per equipment) and ``luminaires`` leave out what the map does not draw (hidden layers).
        """
        best: tuple[float, str] | None = None
        if self.eq_x.size:
            d = np.hypot(self.eq_x - x, self.eq_y - y)
            if shown is not None:
                d = np.where(shown, d, np.inf)
            i = int(np.argmin(d))
            if d[i] <= radius:
                best = (float(d[i]), self.equipment[i].id)
        if self.lum_x.size and luminaires:
            d = np.hypot(self.lum_x - x, self.lum_y - y)
            j = int(np.argmin(d))
            if d[j] <= radius and (best is None or d[j] < best[0] * 0.5):
                best = (float(d[j]), self.equipment[int(self.lum_owner[j])].id)
        return None if best is None else best[1]

    def counts(self) -> dict[str, int]:
        """Markers per display state, for the legend / tests."""
        out = {"normal": 0, "abnormal": 0, "unknown": 0, "alarm": 0}
        for codes in (self.eq_code, self.lum_code):
            out["normal"] += int(np.count_nonzero(codes == NORMAL))
            out["abnormal"] += int(np.count_nonzero(codes == ABNORMAL))
            out["unknown"] += int(np.count_nonzero(codes == UNKNOWN))
            out["alarm"] += int(np.count_nonzero(codes >= 4))
        return out

    def cabinet_codes(self) -> tuple[I64, U8]:
        """(cabinet equipment indices, worst luminaire code of each): one mark per cabinet when zoomed out."""
        if self.lum_owner.size == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint8)
        worst = np.zeros(len(self.equipment), dtype=np.uint8)
        np.maximum.at(worst, self.lum_owner, self.lum_code)
        owners = np.unique(self.lum_owner)
        return owners, worst[owners]

    def clusters(self, cell_m: float, shown: npt.NDArray[np.bool_]) -> Clusters:
        """Group the ``shown`` equipment per square grid cell of ``cell_m`` metres.

        The grid is anchored at the map origin, so panning does not regroup anything: only a zoom that
        changes ``cell_m`` does.
        """
        idx = np.flatnonzero(shown)
        members = np.full(len(self.equipment), -1, dtype=np.int64)
        empty = Clusters(np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint8),
                         np.zeros(0, dtype=np.uint8), members)
        if idx.size == 0:
            return empty
        gx = np.floor(self.eq_x[idx] / cell_m).astype(np.int64)
        gy = np.floor(self.eq_y[idx] / cell_m).astype(np.int64)
        _, inv, counts = np.unique(np.stack([gx, gy], axis=1), axis=0, return_inverse=True, return_counts=True)
        inv = inv.ravel()
        multi = counts >= 2
        if not multi.any():
            return empty
        number = np.cumsum(multi) - 1  # cell → cluster number (valid where multi)
        in_cluster = multi[inv]
        members[idx[in_cluster]] = number[inv[in_cluster]]
        n = int(multi.sum())
        sel = idx[in_cluster]
        c = number[inv[in_cluster]]
        count = np.bincount(c, minlength=n).astype(np.int64)
        x = np.bincount(c, weights=self.eq_x[sel], minlength=n) / count
        y = np.bincount(c, weights=self.eq_y[sel], minlength=n) / count
        code = np.zeros(n, dtype=np.uint8)
        np.maximum.at(code, c, self.eq_code[sel])
        # priority 1 is the worst: rank 5 - p (0 = no alarm), take the maximum rank
        alarm = self.eq_alarm[sel].astype(np.int64)
        rank = np.zeros(n, dtype=np.int64)
        np.maximum.at(rank, c, np.where(alarm > 0, 5 - alarm, 0))
        priority = np.where(rank > 0, 5 - rank, 0).astype(np.uint8)
        return Clusters(x, y, count, code, priority, members)

    def luminaires_of(self, eq_id: str) -> I64:
        i = self.index.get(eq_id)
        if i is None:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(self.lum_owner == i)

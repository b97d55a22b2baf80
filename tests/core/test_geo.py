"""scada.geo: the shipped commune outlines, point-in-commune, label points and the outside-commune warning."""

from __future__ import annotations

from dataclasses import dataclass

import shapely
from shapely.geometry import Point

from scada import geo


def test_the_23_communes_of_the_metropole_with_neuilly_crimolois_as_one_outline() -> None:
    communes = geo.communes()
    assert len(communes) == 23 and "Dijon" in communes and "Neuilly-Crimolois" in communes
    nc = communes["Neuilly-Crimolois"]
    assert nc.insee_2018 == ("21213", "21452")  # the two 2018 communes of the source ...
    assert len(nc.polygons()) == 1 and not list(nc.outline.interiors)  # ... merged without their seam
    # the communes tile the métropole: no two overlap (beyond the source's rounding)
    names = sorted(communes)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            overlap = communes[a].outline.intersection(communes[b].outline).area
            assert overlap < 1e-6 * min(communes[a].outline.area, communes[b].outline.area), (a, b)
    assert geo.DATA.is_file() and "IGN Admin Express" in geo.ATTRIBUTION


def test_label_points_lie_well_inside_their_outline() -> None:
    for c in geo.communes().values():
        p = Point(c.label_lon, c.label_lat)
        assert c.outline.contains(p), c.name
        # the pole of inaccessibility: deeper inside than the bounding-box centre is, whenever that one is inside
        x0, y0, x1, y1 = c.outline.bounds
        bbox_centre = Point((x0 + x1) / 2, (y0 + y1) / 2)
        depth = c.outline.boundary.distance(p)
        if c.outline.contains(bbox_centre):
            assert depth >= c.outline.boundary.distance(bbox_centre) * 0.8, c.name
        assert geo.commune_at(c.label_lat, c.label_lon) == c.name


def test_contains_and_commune_at() -> None:
    assert geo.contains("Dijon", 47.3220, 5.0415) is True  # place de la Libération
    assert geo.contains("Talant", 47.3220, 5.0415) is False
    assert geo.contains("Springfield", 47.3220, 5.0415) is None  # no outline: nothing to say
    assert geo.commune_at(47.3220, 5.0415) == "Dijon"
    assert geo.commune_at(48.8566, 2.3522) is None  # Paris is not in the métropole
    d = geo.communes()["Dijon"]
    rings = list(d.rings())
    assert len(rings) == 1 + len(list(d.outline.interiors)) and rings[0][0].size == len(d.outline.exterior.coords)
    assert shapely.contains_xy(d.outline, float(rings[0][0].mean()), float(rings[0][1].mean()))


@dataclass
class Eq:
    id: str
    commune: str
    lat: float
    lon: float
    source: str


def test_outside_commune_warnings_name_file_line_and_where_it_is() -> None:
    talant = geo.communes()["Talant"]
    warnings = geo.outside_commune([
        Eq("J1", "Dijon", 47.3220, 5.0415, "inv.csv:2"),  # inside: nothing
        Eq("J2", "Dijon", talant.label_lat, talant.label_lon, "inv.csv:3"),
        Eq("J3", "Dijon", 48.8566, 2.3522, "inv.geojson:feature 4"),
        Eq("X1", "Springfield", 39.8, -89.6, "tags.yaml:40"),  # no outline for it: not checked
    ])
    assert [str(w) for w in warnings] == [
        f"inv.csv:3: equipment 'J2': warning: coordinates must lie inside commune 'Dijon', "
        f"got {talant.label_lat}, {talant.label_lon} (in Talant)",
        "inv.geojson:0: equipment 'J3' (feature 4): warning: coordinates must lie inside commune 'Dijon', "
        "got 48.8566, 2.3522 (outside the métropole)",
    ]

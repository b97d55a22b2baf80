"""Real geography in the generated cities and in `scada check`.

The generator places every equipment, and every luminaire of a cabinet, inside its commune's real
outline (scada.geo, IGN Admin Express); `scada check` warns, without failing, about an equipment whose
coordinates fall outside its commune.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import shapely

from scada import geo
from scada.config.generate import LAMP_SPACING_M, SCALES, rows
from scada.config.inventory import LAMP_POSITIONS, parse_lamp_positions

ROOT = Path(__file__).resolve().parents[2]


def _scada(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("scale", ["demo", "dijon"])
def test_every_generated_equipment_and_luminaire_lies_inside_its_commune(scale: str) -> None:
    generated = list(rows(SCALES[scale], seed=42))
    outside = [(r["id"], r["commune"]) for r in generated
               if not geo.contains(str(r["commune"]), float(r["latitude"]), float(r["longitude"]))]  # type: ignore[arg-type]
    assert outside == []
    per_commune = Counter(str(r["commune"]) for r in generated)
    if scale == "dijon":  # the full city reaches all 23 communes, most equipment in Dijon itself
        assert set(per_commune) == set(geo.communes()) and len(per_commune) == 23
        assert per_commune.most_common(1)[0][0] == "Dijon" and per_commune["Dijon"] > len(generated) / 3
    lamps_checked = 0
    for r in generated:
        assert r["name"] and r["address"] and "," not in str(r["name"]) + str(r["address"]), r
        if r["type"] != "lighting_cabinet":
            continue
        lamps = np.array(parse_lamp_positions(r[LAMP_POSITIONS]))
        assert len(lamps) == r["luminaires"]
        inside = shapely.contains_xy(geo.communes()[str(r["commune"])].outline, lamps[:, 1], lamps[:, 0])
        assert inside.all(), (r["id"], int((~inside).sum()))
        # along the cabinet's street: the farthest lamp is half the row away (both ways from the cabinet)
        dy = (lamps[:, 0] - float(r["latitude"])) * geo.M_PER_DEG_LAT  # type: ignore[arg-type]
        dx = (lamps[:, 1] - float(r["longitude"])) * geo.M_PER_DEG_LON_EQ * np.cos(np.radians(lamps[:, 0]))  # type: ignore[arg-type]
        reach = np.hypot(dx, dy).max()
        assert reach < (len(lamps) / 2 + 1) * LAMP_SPACING_M + 10, (r["id"], reach)
        lamps_checked += len(lamps)
    assert lamps_checked == SCALES[scale].luminaires


def test_generation_is_deterministic_for_a_seed() -> None:
    a = list(rows(SCALES["demo"], seed=7))
    assert a == list(rows(SCALES["demo"], seed=7))
    b = list(rows(SCALES["demo"], seed=8))
    assert [(r["latitude"], r["longitude"]) for r in a] != [(r["latitude"], r["longitude"]) for r in b]


def test_shipped_demo_inventory_has_names_addresses_and_lamp_positions() -> None:
    with (ROOT / "inventory" / "demo.csv").open(encoding="utf-8") as fh:
        shipped = list(csv.DictReader(fh))
    assert all(r["name"] and r["address"] for r in shipped)
    dijon = [r for r in shipped if r["commune"] == "Dijon"]
    assert any("rue de la Liberté" in r["address"] or "place Darcy" in r["address"] or "boulevard" in r["address"]
               for r in dijon)  # real Dijon street names in Dijon
    cabinets = [r for r in shipped if r["type"] == "lighting_cabinet"]
    assert cabinets and all(len(parse_lamp_positions(r[LAMP_POSITIONS])) == int(r["luminaires"]) for r in cabinets)


def test_check_warns_about_equipment_outside_its_commune_and_exits_0(tmp_path: Path) -> None:
    inv = tmp_path / "inv.csv"
    lines = (ROOT / "inventory" / "demo.csv").read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    lat_col, lon_col = header.index("latitude"), header.index("longitude")
    talant = geo.communes()["Talant"]
    lat, lon = f"{talant.label_lat:.6f}", f"{talant.label_lon:.6f}"
    moved = None
    for n, line in enumerate(lines[1:], start=2):
        cells = line.split(",")
        if cells[1] == "junction" and cells[2] == "Dijon":
            cells[lat_col], cells[lon_col] = lat, lon  # a Dijon junction typed with Talant's coordinates
            lines[n - 1] = ",".join(cells)
            moved = (cells[0], n)
            break
    assert moved is not None
    inv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tags = tmp_path / "tags.yaml"
    tags.write_text((ROOT / "tags.yaml").read_text(encoding="utf-8").replace("file: inventory/demo.csv", f"file: {inv}"),
                    encoding="utf-8")
    out = _scada("check", str(tags), str(ROOT / "alarms.yaml"), str(ROOT / "commands.yaml"))
    assert out.returncode == 0, out.stderr  # only a warning: the city can still be used
    assert out.stdout.startswith("ok: 91 equipment")
    eq, line = moved
    warnings = [ln for ln in out.stderr.splitlines() if "warning:" in ln]
    assert warnings == [f"{inv}:{line}: equipment '{eq}': warning: coordinates must lie inside commune 'Dijon', "
                        f"got {float(lat)}, {float(lon)} (in Talant)"]
    # the shipped city has no such warning
    clean = _scada("check", "tags.yaml", "alarms.yaml")
    assert clean.returncode == 0 and "warning:" not in clean.stderr, clean.stderr


def test_inventory_checks_lamp_positions_with_file_and_line(tmp_path: Path) -> None:
    from scada.config.inventory import read_inventory

    inv = tmp_path / "inv.csv"
    inv.write_text("id,type,commune,latitude,longitude,luminaires,lamp_positions\n"
                   "C1,lighting_cabinet,Dijon,47.32,5.04,2,47.32001 5.04001;47.32002 5.04002\n"
                   "C2,lighting_cabinet,Dijon,47.32,5.04,3,47.32001 5.04001;47.32002 5.04002\n"
                   "C3,lighting_cabinet,Dijon,47.32,5.04,2,47.32001 5.04001;north 5.04002\n", encoding="utf-8")
    rows_, problems = read_inventory(inv, "inv.csv")
    assert [r.data["id"] for r in rows_] == ["C1"]
    assert rows_[0].data["params"][LAMP_POSITIONS] == ((47.32001, 5.04001), (47.32002, 5.04002))
    assert [str(p) for p in problems] == [
        "inv.csv:3: row C2: 'lamp_positions' must give one position per luminaire (3), got 2",
        "inv.csv:4: row C3: 'lamp_positions': pair 2 must be 'latitude longitude', got 'north 5.04002'",
    ]

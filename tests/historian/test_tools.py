"""Energy report, Grafana dashboard, the CLI and the server-facing service, on the shipped city."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest

from cli.main import main as scada_main
from historian.backend import Points
from historian.energy import Baseline, energy_report, night_window
from historian.grafana import dashboard
from historian.service import STORE_NAME, Historian
from historian.sqlite_backend import SqliteBackend
from scada.config.loader import load_city
from scada.errors import StorageError
from scada.quality import Quality, Sample
from scada.tagdb import TagDatabase

ROOT = Path(__file__).resolve().parents[2]
NS = 1_000_000_000
NIGHT = dt.date(2026, 11, 20)


@pytest.fixture(scope="module")
def city():
    return load_city(ROOT / "tags.yaml", ROOT / "alarms.yaml")


def fill_energy(city, path: Path) -> None:
    """Every cabinet: counter rising at luminaires × 40 W while the contactor is closed 17:00-08:00."""
    be = SqliteBackend(path)
    start, end = night_window(NIGHT, city.timezone)
    on, off = start + 5 * 3600 * NS, start + 20 * 3600 * NS  # 17:00 and 08:00 local
    rows = []
    for eq in (e for e in city.equipment.values() if e.kind == "lighting"):
        lum = eq.params["luminaires"]
        kw = lum * 40 / 1000
        for t in range(start - 3600 * NS, end + 3600 * NS, 600 * NS):
            hours = max(0, min(t, off) - on) / 3600 / NS
            rows.append((f"{eq.prefix}/energy", t, 1000.0 + kw * hours, 0))
        rows += [(f"{eq.prefix}/contactor_closed", start, 0.0, 0), (f"{eq.prefix}/contactor_closed", on, 1.0, 0),
                 (f"{eq.prefix}/contactor_closed", off, 0.0, 0)]
    be.write(Points.from_rows(rows))
    be.close()


def test_energy_report_per_commune(city, tmp_path: Path) -> None:
    fill_energy(city, tmp_path / "h.sqlite")
    be = SqliteBackend(tmp_path / "h.sqlite")
    rows = energy_report(city, be, NIGHT, baseline=Baseline(watts_per_luminaire=150.0))
    be.close()
    assert {r.commune for r in rows} == {"Chenôve", "Dijon", "Neuilly-Crimolois", "Sennecey-lès-Dijon"}
    for r in rows:
        assert r.missing == 0 and r.kwh == pytest.approx(r.luminaires * 0.040 * 15, rel=1e-6)
        assert r.baseline_kwh == pytest.approx(r.luminaires * 0.150 * 15, rel=1e-6)
        assert r.saving_percent == pytest.approx(100 * (1 - 40 / 150))  # 73.3 %
        assert r.meets_target and r.coverage == pytest.approx(1.0)


def test_cli_energy_and_export(city, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "h.sqlite"
    fill_energy(city, store)
    out_csv = tmp_path / "energy.csv"
    assert scada_main(["historian", "energy", "--store", str(store), "--tags", str(ROOT / "tags.yaml"), "--alarms",
                       str(ROOT / "alarms.yaml"), "--night", NIGHT.isoformat(), "--csv", str(out_csv)]) == 0
    assert "73.3" in capsys.readouterr().out
    assert len(list(csv.DictReader(out_csv.open()))) == 4
    exp = tmp_path / "export.csv"
    assert scada_main(["historian", "export", "--store", str(store), "--tag", "dijon/lighting/*/contactor_closed",
                       "--start", "2026-11-20T00:00", "--end", "2026-11-22T00:00", "--out", str(exp),
                       "--slice-hours", "6"]) == 0
    rows = list(csv.DictReader(exp.open()))
    assert rows and {r["quality"] for r in rows} == {"good"} and rows[1]["value"] == "1.0"
    assert "exported" in capsys.readouterr().err


def fill_quarter_hour(city, path: Path) -> None:
    """~15 minutes of data in the evening: counters rising at luminaires × 40 W, contactors closed."""
    be = SqliteBackend(path)
    start, _end = night_window(NIGHT, city.timezone)
    t0 = start + 6 * 3600 * NS  # 18:00 local
    rows = []
    for eq in (e for e in city.equipment.values() if e.kind == "lighting"):
        kw = eq.params["luminaires"] * 40 / 1000
        rows += [(f"{eq.prefix}/energy", t0 + k * 300 * NS, 1000.0 + kw * k * 300 / 3600, 0) for k in range(4)]
        rows.append((f"{eq.prefix}/contactor_closed", t0, 1.0, 0))
    be.write(Points.from_rows(rows))
    be.close()


def test_energy_gives_no_verdict_on_a_quarter_hour(city, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """15 minutes of data is 1 % of a night: the coverage is reported and no verdict given."""
    store = tmp_path / "h.sqlite"
    fill_quarter_hour(city, store)
    be = SqliteBackend(store, readonly=True)
    rows = energy_report(city, be, NIGHT)
    be.close()
    assert rows and all(r.meets_target is None for r in rows)
    for r in rows:
        assert r.hours_of_data == pytest.approx(0.25) and r.night_hours == 24
        assert r.coverage == pytest.approx(0.25 / 24)
    out_csv = tmp_path / "energy.csv"
    assert scada_main(["historian", "energy", "--store", str(store), "--tags", str(ROOT / "tags.yaml"), "--alarms",
                       str(ROOT / "alarms.yaml"), "--night", NIGHT.isoformat(), "--csv", str(out_csv)]) == 0
    out = capsys.readouterr()
    assert "no verdict" in out.out and "met" not in out.out.replace("no verdict", "")
    assert "0.2 / 24 (1 %)" in out.out
    assert "coverage below 90 % of the night (lowest 1.0 %: 0.25 h of data over 24 h" in out.err
    exported = list(csv.DictReader(out_csv.open()))
    assert {r["meets_target"] for r in exported} == {""} and {r["coverage"] for r in exported} == {"0.0104"}


def test_energy_refuses_a_missing_store_and_creates_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    live = tmp_path / "scada-data"
    live.mkdir()
    args = ["--tags", str(ROOT / "tags.yaml"), "--alarms", str(ROOT / "alarms.yaml"), "--night", NIGHT.isoformat()]
    assert scada_main(["historian", "energy", "--store", str(live / "historian"), *args]) == 2
    assert f"no historian store at {live / 'historian'}\n" in capsys.readouterr().err
    assert scada_main(["historian", "energy", "--store", str(live / "h.sqlite"), *args]) == 2
    monkeypatch.setenv("SCADA_DATA_DIR", str(live))  # no --store: the data folder's store, refused the same way
    assert scada_main(["historian", "energy", *args]) == 2
    assert (f"no historian store at {live / 'historian' / 'history.sqlite'} (give --store, or --data-dir/--city"
            in capsys.readouterr().err)
    assert list(live.iterdir()) == []  # nothing created in the live data folder


def test_reports_read_the_server_store_read_only(city, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The data folder's own store (data/<city>/historian/history.sqlite, as the server writes it) is found with
    --data-dir alone, opened read-only: the report changes nothing in it."""
    store = tmp_path / "data" / "demo" / "historian" / "history.sqlite"
    fill_energy(city, store)
    (tmp_path / "data" / "demo" / ".lock").write_text("")  # what `scada run` leaves: a city folder
    before = store.read_bytes()
    assert scada_main(["historian", "energy", "--data-dir", str(tmp_path / "data"), "--tags", str(ROOT / "tags.yaml"),
                       "--alarms", str(ROOT / "alarms.yaml"), "--night", NIGHT.isoformat()]) == 0
    assert "73.3" in capsys.readouterr().out
    assert store.read_bytes() == before
    be = SqliteBackend(store, readonly=True)
    with pytest.raises(StorageError):
        be.write(Points.from_rows([("x", 1, 1.0, 0)]))
    be.close()


def test_grafana_dashboard(city, tmp_path: Path) -> None:
    d = dashboard(city)
    titles = [p["title"] for p in d["panels"]]
    assert "lighting" in titles and "lighting: power" in titles
    power = next(p for p in d["panels"] if p["title"] == "lighting: power")
    assert power["type"] == "timeseries" and 'mean("value")' in power["targets"][0]["query"]
    assert "lamp_" not in json.dumps(d)
    out = tmp_path / "dash.json"
    ds = tmp_path / "ds.yaml"
    assert scada_main(["historian", "grafana-dashboard", "--tags", str(ROOT / "tags.yaml"), "--alarms",
                       str(ROOT / "alarms.yaml"), "--out", str(out), "--datasource-out", str(ds)]) == 0
    assert json.loads(out.read_text())["panels"] and "type: influxdb" in ds.read_text()


def test_service_end_to_end(city, tmp_path: Path) -> None:
    db = TagDatabase(city.tags)
    fills: list[float] = []
    hist = Historian.build(city, db, tmp_path / "historian", on_fill=fills.append)
    hist.start()
    tag = next(t.name for t in city.tags if t.name.endswith("/power") and "/lighting/" in t.name)
    t0 = 1_763_800_000 * NS
    for i in range(100):
        db.apply_samples([(tag, Sample(1000.0 + 30 * np.sin(i / 10), Quality.GOOD, t0 + i * NS, t0 + i * NS))])
    hist.close()
    raw = Historian(SqliteBackend(tmp_path / "historian" / STORE_NAME), None, None)
    pts = raw.raw(tag, t0, t0 + 200 * NS, 10_000)
    assert 2 < len(pts) < 100 and pts[0]["quality"] == "good"
    agg = raw.aggregate(tag, t0, t0 + 100 * NS, 50, ["min", "max", "count", "twa"])
    assert len(agg["points"]) == 2 and agg["points"][0]["count"] >= 1 and 970 <= agg["points"][0]["twa"] <= 1030
    assert raw.decimated(tag, t0, t0 + 100 * NS, 10)["points"]
    assert raw.value_at(tag, t0 + 5 * NS)["interpolated"]
    assert fills and "capabilities" in raw.stats()

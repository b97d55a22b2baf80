"""``scada journal`` and ``scada alarms kpi`` on real journal files."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli.journal import parse_time
from cli.main import main
from scada.alarms import AlarmState, Event
from scada.journal import Journal, JournalEntry
from tests.alarms.test_journal import INFOS, synthetic
from tests.alarms.test_kpi import ALARMS, GOLDEN, ROWS, START_MS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def jpath(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "journal.sqlite"
    with Journal(path) as j:
        j.append(synthetic())
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_journal_filters_and_pages(capsys: pytest.CaptureFixture[str], jpath: Path) -> None:
    code, out, err = run(capsys, "journal", "--data-dir", str(jpath.parent), "--limit", "5")
    assert code == 0 and len(out.splitlines()) == 5 and "--page 2" in err
    code, out, _ = run(capsys, "journal", "--db", str(jpath), "--equipment", "E3", "--state", "unack",
                       "--limit", "1000", "--total")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 34 and all(" E3 " in ln and "unack" in ln for ln in lines)
    code, out, _ = run(capsys, "journal", "--db", str(jpath), "--priority", "1", "--text", "tripped",
                       "--event", "acknowledge", "--user", "alice", "--limit", "1000")
    assert code == 0 and out and all("acknowledge" in ln and "by alice" in ln and "P1" in ln
                                     for ln in out.splitlines())
    code, out2, _ = run(capsys, "journal", "--db", str(jpath), "--page", "2", "--limit", "5")
    assert out2.splitlines() and set(out2.splitlines()).isdisjoint(run(capsys, "journal", "--db", str(jpath),
                                                                         "--limit", "5")[1].splitlines())
    # times in the city's zone; the first row is 2027-01-15T08:00Z = 09:00 in Paris
    code, out, _ = run(capsys, "journal", "--db", str(jpath), "--until", "2027-01-15T09:00:30", "--limit", "9")
    assert out.splitlines() == [out.splitlines()[0]] and out.startswith("2027-01-15 09:00:00.000 P3 ")


def test_journal_csv(capsys: pytest.CaptureFixture[str], jpath: Path, tmp_path: Path) -> None:
    code, out, _ = run(capsys, "journal", "--db", str(jpath), "--commune", "Chenôve", "--csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and len(rows) == 100 and {r["commune"] for r in rows} == {"Chenôve"}
    target = tmp_path / "out.csv"
    code, _, err = run(capsys, "journal", "--db", str(jpath), "--service", "lighting", "--since",
                       "2027-01-15T07:59:00Z", "--csv", str(target))
    assert code == 0 and "wrote 300 rows" in err
    assert len(target.read_text(encoding="utf-8").splitlines()) == 301


def test_journal_errors(capsys: pytest.CaptureFixture[str], jpath: Path, tmp_path: Path) -> None:
    code, _, err = run(capsys, "journal", "--db", str(jpath), "--state", "angry")
    assert code == 2 and "--state must be among" in err
    code, _, err = run(capsys, "journal", "--db", str(tmp_path / "nope.sqlite"))
    assert code == 1 and "no alarm journal" in err
    code, _, err = run(capsys, "journal", "--db", str(jpath), "--since", "last tuesday")
    assert code == 2 and "not a time: 'last tuesday'" in err


def test_parse_time() -> None:
    import datetime as dt
    now = dt.datetime(2027, 1, 15, 12, 0, tzinfo=dt.UTC)
    assert parse_time("2027-01-15T08:00Z") == 1_800_000_000_000
    assert parse_time("2027-01-15T09:00") == 1_800_000_000_000  # Europe/Paris in winter
    assert parse_time("2h", now) == int(now.timestamp() * 1000) - 7_200_000
    assert parse_time("today", now) == int(dt.datetime(2027, 1, 15, tzinfo=dt.UTC).timestamp() * 1000) - 3_600_000


def test_journal_follow(jpath: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "cli", "journal", "--db", str(jpath), "--follow",
                             "--service", "traffic", "--follow-for", "20", "--interval", "0.05"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None and proc.stdout is not None
    assert "following" in proc.stderr.readline()
    for _ in range(10):  # the 10 most recent matching rows come first
        proc.stdout.readline()
    with Journal(jpath) as j:
        t = 1_900_000_000_000 * 1_000_000
        j.append([JournalEntry(t, Event.CONDITION_ON, INFOS[2], AlarmState.UNACK, comment="not traffic"),
                  JournalEntry(t, Event.CONDITION_ON, INFOS[1], AlarmState.UNACK, comment="new traffic row")])
    line = proc.stdout.readline()
    proc.kill()
    proc.wait(timeout=10)
    assert "new traffic row" in line and "E2" in line


def test_alarms_kpi_prints_the_golden_report(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    with Journal(path) as j:
        j.append([JournalEntry(int((START_MS + s * 1000) * 1_000_000), ev, ALARMS[a], st, prev, int(flags),
                               outcome=out, user=user, detail=detail)
                  for s, a, ev, prev, st, flags, out, user, detail in sorted(ROWS, key=lambda r: r[0])])
    code, out, _ = run(capsys, "alarms", "kpi", "--db", str(path), "--since", "2027-01-01T00:00Z",
                       "--until", "2027-02-01T00:00Z")
    assert code == 0 and out == GOLDEN.read_text(encoding="utf-8")
    code, out, _ = run(capsys, "alarms", "kpi", "--db", str(path), "--json", "--service", "lighting")
    assert code == 0 and '"annunciations": 22' in out and '"sufficient": false' in out  # span < 30 days
    code, out, _ = run(capsys, "alarms", "kpi", "--db", str(path), "--since", "2027-01-01T00:00Z", "--until",
                       "2027-01-05T00:00Z")
    assert code == 0 and "insufficient data: 4.00 days < 30" in out


def test_journal_finds_the_city_folder_and_spells_from_to(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """With no option the journal of `scada run` (<data root>/demo/) is found; --from/--to = --since/--until."""
    root = tmp_path / "root"
    with Journal(root / "demo" / "journal.sqlite") as j:
        j.append(synthetic())
    (root / "demo" / ".lock").write_text("")  # what `scada run` leaves
    monkeypatch.setenv("SCADA_DATA_DIR", str(root))
    code, new, _ = run(capsys, "journal", "--from", "2027-01-15T09:00", "--to", "2027-01-15T12:00")
    assert code == 0 and new.splitlines()
    code, old, _ = run(capsys, "alarms", "kpi", "--db", str(root / "demo" / "journal.sqlite"), "--format", "json")
    assert code == 0 and '"annunciations"' in old
    assert run(capsys, "journal", "--since", "2027-01-15T09:00", "--until", "2027-01-15T12:00")[1] == new
    (root / "dijon").mkdir()
    (root / "dijon" / ".lock").write_text("")
    code, _, err = run(capsys, "journal")
    assert code == 2 and "holds several cities (demo, dijon): choose one with --city" in err
    assert run(capsys, "journal", "--city", "demo", "--from", "2027-01-15T09:00", "--to",
               "2027-01-15T12:00")[1] == new

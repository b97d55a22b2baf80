"""Alarm messages per language: alarms.yaml templates, the journal's message key and parameters, migration."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from scada.alarms import AlarmEngine
from scada.alarms.system import system_rules
from scada.config import check_city, load_city
from scada.errors import StorageError
from scada.journal import SCHEMA_VERSION, Journal, JournalQuery
from scada.tagdb import TagDatabase
from tests.alarms.conftest import MINI_ALARMS, MINI_TAGS, T0, Feeder, write_city

S = 1_000_000_000
LEVEL_EN = "Station {id} ({commune}, {address}): level {value} {units} above {limit}"
LEVEL_FR = "Station {id} ({commune}, {address}) : niveau {value} {units} au-dessus de {limit}"
TWO_LANGS = MINI_ALARMS.replace(f'message: "{LEVEL_EN}"', f'message: {{fr: "{LEVEL_FR}", en: "{LEVEL_EN}"}}')


def _city(root: Path, lang: str = "fr", alarms: str = TWO_LANGS) -> tuple[AlarmEngine, Feeder, Journal]:
    tags, alarms_path = write_city(root, MINI_TAGS.replace("site: test-city", f"site: test-city\nlang: {lang}"),
                                   alarms)
    config = load_city(tags, alarms_path)
    db = TagDatabase(config.tags)
    journal = Journal(root / "journal.sqlite")
    engine = AlarmEngine(config, db, journal)
    engine.attach()
    feed = Feeder(config, db)
    feed.baseline(T0)
    return engine, feed, journal


def test_a_rule_speaks_both_languages_and_the_journal_reads_in_either(tmp_path: Path) -> None:
    assert TWO_LANGS != MINI_ALARMS
    engine, feed, journal = _city(tmp_path)
    feed({"S1/level": 81.0}, T0 + S)
    alarm = f"level_high:{engine.config.equipment['S1'].tag_name('level')}"
    fr = "Station S1 (Dijon, 1 rue Alpha) : niveau 81 % au-dessus de 80"
    en = "Station S1 (Dijon, 1 rue Alpha): level 81 % above 80"
    assert engine.view(alarm).message == fr  # the site's language
    i = engine.catalog.index_of(alarm)
    assert i is not None
    assert engine.views([i], "en")[0].message == en
    _, listed = engine.not_normal(lang="en")
    assert [v.message for v in listed if v.alarm == alarm] == [en]
    # a value asked in a language reads for people in it: French decimal comma
    feed({"S2/level": 85.5}, T0 + 2 * S)
    j = engine.catalog.index_of(f"level_high:{engine.config.equipment['S2'].tag_name('level')}")
    assert j is not None
    assert engine.views([j], "fr")[0].message == "Station S2 (Dijon, 2 rue Beta) : niveau 85,5 % au-dessus de 80"
    assert engine.views([j], "en")[0].message == "Station S2 (Dijon, 2 rue Beta): level 85.5 % above 80"

    # the journal keeps the key and the parameters, and the templates once per key and language
    key, params, stored = journal.execute_sql(
        "SELECT message_key, params, message FROM alarm_def WHERE alarm = ? ORDER BY ref DESC LIMIT 1", (alarm,))[0]
    assert key.startswith("level_high#") and stored == "Station S1 (Dijon, 1 rue Alpha) : niveau {value} % au-dessus de 80"
    assert json.loads(params) == {"address": "1 rue Alpha", "commune": "Dijon", "id": "S1", "limit": "80", "units": "%"}
    assert dict(journal.execute_sql("SELECT lang, template FROM message_text WHERE key = ?", (key,))) == \
        {"fr": LEVEL_FR, "en": LEVEL_EN}
    q = JournalQuery(alarm=[alarm])
    assert [r.message for r in journal.query(q).rows] == [fr]
    assert [r.message for r in journal.query(q, lang="en").rows] == [en]
    assert [r.message for r in journal.query(q, lang="fr").rows] == [fr]
    assert [r.message for r in journal.follow(q, 0, lang="en")] == [en]
    s2 = JournalQuery(equipment=["S2"], alarm=[f"level_high:{engine.config.equipment['S2'].tag_name('level')}"])
    assert [r.message for r in journal.query(s2, lang="fr").rows] == [
        "Station S2 (Dijon, 2 rue Beta) : niveau 85,5 % au-dessus de 80"]
    journal.close()
    # read back by another process, read-only: the same two languages
    with Journal(tmp_path / "journal.sqlite", readonly=True) as ro:
        assert [r.message for r in ro.query(q, lang="en").rows] == [en]


def test_a_plain_message_is_the_site_language_and_serves_every_language(tmp_path: Path) -> None:
    engine, feed, journal = _city(tmp_path, lang="en", alarms=MINI_ALARMS)
    feed({"S2/level": 90.0}, T0 + S)
    alarm = f"level_high:{engine.config.equipment['S2'].tag_name('level')}"
    i = engine.catalog.index_of(alarm)
    assert i is not None
    text = "Station S2 (Dijon, 2 rue Beta): level 90 % above 80"
    assert engine.views([i], "fr")[0].message == engine.views([i], "en")[0].message == text
    assert [r.message for r in journal.query(JournalQuery(alarm=[alarm]), lang="fr").rows] == [text]
    journal.close()


def test_system_alarms_come_in_both_languages(tmp_path: Path) -> None:
    tags, alarms = write_city(tmp_path)
    rules = {r.name: r.message for r in system_rules(load_city(tags, alarms))}
    comm = rules["system.station.comm_lost"]
    assert comm == {"fr": "{id} ({commune}) : communication perdue, état inconnu",
                    "en": "{id} ({commune}): communication lost, its state is unknown"}
    reload_hub = rules["system.server.reload_failed_hub"]
    assert isinstance(reload_hub, dict) and reload_hub["fr"].startswith("Échec du rechargement de la configuration "
                                                                        "dans hub :")
    assert reload_hub["en"].startswith("Configuration reload failed in hub:")


def test_language_time_zone_and_messages_are_validated(tmp_path: Path) -> None:
    bad_tags = MINI_TAGS.replace("site: test-city", "site: test-city\nlang: de\ntimezone: Mars/Olympus")
    tags, _ = write_city(tmp_path / "a", bad_tags)
    config, problems = check_city(tags)
    assert config is None
    assert [str(p).split("tags.yaml")[-1] for p in problems] == [
        ":3: 'lang' must be one of fr, en, got 'de'",
        ":4: 'timezone' must be an IANA time zone name such as Europe/Paris, got 'Mars/Olympus'"]
    bad_alarms = MINI_ALARMS.replace('message: "Station {id} tripped"', 'message: {de: "Station {id} ausgelöst"}')
    tags, alarms = write_city(tmp_path / "b", MINI_TAGS, bad_alarms)
    config, problems = check_city(tags, alarms)
    assert config is None and len(problems) == 1
    assert str(problems[0]).endswith("alarms.yaml:15: rule 'trip': 'message' must name languages among fr, en "
                                     "(not 'de'), got {'de': 'Station {id} ausgelöst'}")


V1_SCHEMA = """
CREATE TABLE alarm_def (ref INTEGER PRIMARY KEY, alarm TEXT NOT NULL, rule TEXT NOT NULL, kind TEXT NOT NULL,
    equipment TEXT NOT NULL, commune TEXT NOT NULL, area TEXT NOT NULL, service TEXT NOT NULL, tag TEXT NOT NULL,
    priority INTEGER NOT NULL, latched INTEGER NOT NULL, message TEXT NOT NULL, dtype TEXT NOT NULL,
    units TEXT NOT NULL, enum TEXT, limit_value REAL, created_ms INTEGER NOT NULL);
CREATE INDEX alarm_def_alarm ON alarm_def(alarm);
CREATE INDEX alarm_def_equipment ON alarm_def(equipment);
CREATE TABLE journal (id INTEGER PRIMARY KEY, ts_ms INTEGER NOT NULL, ref INTEGER REFERENCES alarm_def(ref),
    event INTEGER NOT NULL, outcome INTEGER NOT NULL DEFAULT 0, state INTEGER NOT NULL, prev_state INTEGER NOT NULL,
    flags INTEGER NOT NULL, value, quality INTEGER, user TEXT, comment TEXT, detail TEXT, until_ms INTEGER,
    since_ms INTEGER);
CREATE INDEX journal_ref_ts ON journal(ref, ts_ms);
CREATE INDEX journal_ts ON journal(ts_ms);
CREATE TRIGGER journal_no_update BEFORE UPDATE ON journal
    BEGIN SELECT RAISE(ABORT, 'the alarm journal is append-only'); END;
CREATE TABLE catalog (fingerprint TEXT PRIMARY KEY, alarms INTEGER NOT NULL, refs BLOB NOT NULL,
    created_ms INTEGER NOT NULL);
INSERT INTO alarm_def VALUES (1, 'old:s/x', 'old', 'high', 'S9', 'Dijon', 'Dijon', 'utilities', 's/x', 3, 0,
    'Station S9: level {value} above 80', 'float', '%', NULL, 80.0, 1);
INSERT INTO journal(ts_ms, ref, event, state, prev_state, flags, value, quality, since_ms)
    VALUES (1000, 1, 1, 1, 0, 0, 85.5, 0, 1000), (2000, 1, 3, 0, 1, 0, 70.0, 0, NULL);
PRAGMA user_version = 1;
"""


def test_a_version_1_journal_is_migrated_in_place_without_losing_rows(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    db = sqlite3.connect(path)
    db.executescript(V1_SCHEMA)
    db.close()
    # read-only first: an old file reads as written, nothing changed on disk
    with Journal(path, readonly=True) as ro:
        assert [r.message for r in ro.query(JournalQuery(), lang="en").rows] == \
            ["Station S9: level 70 above 80", "Station S9: level 85.5 above 80"]
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 1
    with Journal(path) as j:
        assert j.execute_sql("PRAGMA user_version")[0][0] == SCHEMA_VERSION == 2
        assert j.count() == 2
        rows = j.query(JournalQuery(ascending=True), lang="fr").rows
        # the words as written (no key before version 2), the value for a French reader
        assert [(r.ts_ms, r.message) for r in rows] == [(1000, "Station S9: level 85,5 above 80"),
                                                        (2000, "Station S9: level 70 above 80")]
        assert j.query(JournalQuery(ascending=True)).rows[0].message == "Station S9: level 85.5 above 80"
        cols = {c[1] for c in j.execute_sql("PRAGMA table_info(alarm_def)")}
        assert {"message_key", "params"} <= cols
        j.execute_sql("INSERT INTO message_text(key, lang, template) VALUES ('k#1', 'fr', 'x')")
        with pytest.raises(StorageError, match="append-only"):
            j.execute_sql("UPDATE message_text SET template = 'y'")
    # the migrated file takes the new definitions: an engine on it journals keyed, bilingual rows
    tags, alarms = write_city(tmp_path / "city", MINI_TAGS, TWO_LANGS)
    config = load_city(tags, alarms)
    tdb = TagDatabase(config.tags)
    journal = Journal(path)
    engine = AlarmEngine(config, tdb, journal)
    engine.attach()
    feed = Feeder(config, tdb)
    feed.baseline(T0)
    feed({"S3/level": 95.0}, T0 + S)
    alarm = f"level_high:{config.equipment['S3'].tag_name('level')}"
    q = JournalQuery(alarm=[alarm])
    assert [r.message for r in journal.query(q, lang="en").rows] == [
        "Station S3 (Chenôve, 3 rue Gamma): level 95 % above 80"]
    assert journal.count() == 3 and np.all(np.array([r.id for r in journal.query(JournalQuery()).rows]) > 0)
    journal.close()

"""The parse cache of scada.config.yamlsource: identical bytes are not parsed again, anything else is.

A reload checks every configuration file although one changed; the cache skips ruamel's parse of the unchanged
ones. What must not change: a changed file is parsed and validated again (its problems at their file:line), a
caller's tree is its own (changing it changes nothing for the next caller), and the line marks of a tree from
the cache are those of a fresh parse.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scada.config import check_city, yamlsource
from scada.config.yamlsource import line_of, load_yaml
from tests.core.conftest import BASE_ALARMS, BASE_TAGS, City


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The paths ruamel really parsed (our own parse function counted, the cache emptied for the test)."""
    seen: list[str] = []
    real = yamlsource._parse

    def counted(path: Path, text: str) -> tuple[Any, list[Any]]:
        seen.append(path.name)
        return real(path, text)

    monkeypatch.setattr(yamlsource, "_parsed", type(yamlsource._parsed)())
    monkeypatch.setattr(yamlsource, "_parse", counted)
    yield seen


def lines(tree: Any, loc: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], int]:
    """Every node's line mark, by its path."""
    out = {loc: line_of(tree, loc)}
    node = tree
    for part in loc:
        node = node[part]
    if isinstance(node, dict):
        for k in node:
            out |= lines(tree, (*loc, k))
    elif isinstance(node, list):
        for i in range(len(node)):
            out |= lines(tree, (*loc, i))
    return out


def test_the_same_bytes_are_parsed_once_into_trees_of_their_own(city: City, parses: list[str]) -> None:
    tags, _ = city.write()
    first, problems = load_yaml(tags)
    assert problems == [] and parses == ["tags.yaml"]
    second, problems = load_yaml(tags)
    assert problems == [] and parses == ["tags.yaml"]  # not parsed again
    assert second == first and second is not first
    assert lines(second) == lines(first) and len(lines(first)) > 30  # the line marks of a fresh parse
    second["site"] = "changed by a caller"
    second["templates"].clear()
    third, _ = load_yaml(tags)
    assert third == first and third["site"] != "changed by a caller"


def test_a_changed_file_is_parsed_and_validated_again(city: City, parses: list[str]) -> None:
    tags, alarms = city.write()
    config, problems = check_city(tags, alarms)
    assert config is not None and problems == []
    assert sorted(parses) == ["alarms.yaml", "tags.yaml"]
    # one byte changed: parsed again, and its problem reported at its line
    changed = BASE_TAGS.replace("normal: 10s", "normal: quick")
    tags.write_text(changed)
    config, problems = check_city(tags, alarms)
    assert config is None
    assert sorted(parses) == ["alarms.yaml", "tags.yaml", "tags.yaml"]  # alarms.yaml unchanged: not parsed
    assert problems and all(p.file == str(tags) and p.line == 2 for p in problems), problems
    assert any("quick" in p.what for p in problems), problems
    # the earlier bytes back (a refused reload's files restored): from the cache, valid again
    tags.write_text(BASE_TAGS)
    config, again = check_city(tags, alarms)
    assert config is not None and again == []
    assert len(parses) == 3
    # the changed file once more, its problems now found on a tree from the cache: the same as from a cold parse
    tags.write_text(changed)
    assert [str(p) for p in check_city(tags, alarms)[1]] == [str(p) for p in problems]
    assert len(parses) == 3


def test_a_file_that_does_not_parse_says_so_each_time(city: City, parses: list[str]) -> None:
    broken = BASE_TAGS.replace("scan_classes: {fast: 1s, normal: 10s}", "scan_classes: {fast: 1s, normal: 10s")
    tags, alarms = city.write(tags=broken)
    for _ in range(2):
        config, problems = check_city(tags, alarms)
        assert config is None
        assert [f"{Path(p.file).name}:{p.line}" for p in problems] == ["tags.yaml:3"]
    assert parses.count("tags.yaml") == 2  # not kept: found again, the same


def test_same_bytes_under_another_name_report_their_own_file(city: City, parses: list[str], tmp_path: Path) -> None:
    tags, alarms = city.write(alarms=BASE_ALARMS)
    other = tmp_path / "elsewhere" / "tags.yaml"
    other.parent.mkdir()
    (other.parent / "alarms.yaml").write_text(BASE_ALARMS)
    bad = BASE_TAGS.replace("scan: normal", "scan: weekly", 1)
    tags.write_text(bad)
    other.write_text(bad)
    _, here = check_city(tags, alarms)
    _, there = check_city(other, other.parent / "alarms.yaml")
    assert parses.count("tags.yaml") == 1  # one parse for both
    assert [p.line for p in here] == [p.line for p in there] and here
    assert {p.file for p in here} == {str(tags)} and {p.file for p in there} == {str(other)}


def test_the_cache_is_bounded(tmp_path: Path, parses: list[str]) -> None:
    for i in range(yamlsource._PARSED_MAX + 5):
        f = tmp_path / f"f{i}.yaml"
        f.write_text(f"n: {i}\n")
        assert load_yaml(f)[0] == {"n": i}
    assert len(yamlsource._parsed) == yamlsource._PARSED_MAX
    load_yaml(tmp_path / "f0.yaml")  # the oldest went first: parsed again
    load_yaml(tmp_path / f"f{yamlsource._PARSED_MAX + 4}.yaml")  # the newest is kept
    assert parses.count("f0.yaml") == 2 and parses.count(f"f{yamlsource._PARSED_MAX + 4}.yaml") == 1

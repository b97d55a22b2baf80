"""Garbage and mutations of commands.yaml never crash the loader: they end in located problems (or load)."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from failsafe.vocabulary import check_vocabulary
from scada.i18n import _
from tests.failsafe.conftest import ROOT, city

SHIPPED = (ROOT / "commands.yaml").read_text(encoding="utf-8").splitlines()
FIELDS = ["tag", "value", "verbs", "roles", "lease", "params", "type", "min", "equals", "in", "permissive",
          "phases", "target", "verb", "steps", "when", "require", "at_least", "table", "period", "safety"]

yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=12),
                         st.sampled_from(["{plan}", "{nope}", "operator", "admin", "flash", "J001", "15s", "-1"]))
yaml_values = st.recursive(
    yaml_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.one_of(st.sampled_from(FIELDS), st.text(max_size=8)), inner,
                                            max_size=4)),
    max_leaves=12,
)
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _check(tmp: Path, text: str) -> None:
    path = tmp / "commands.yaml"
    path.write_text(text, encoding="utf-8")
    vocab, problems = check_vocabulary(path, city())
    if vocab is None:
        assert problems, "a rejected vocabulary must say why"
        for p in problems:
            assert p.file == str(path) and p.what
            # located, unless the parser has no mark (the text in the process's language: scada.config.yamlsource)
            assert p.line >= 1 or p.what.startswith(_("YAML error: {error}").format(error="")), str(p)
    else:
        assert problems == []


@FUZZ
@given(text=st.text(max_size=300))
def test_random_text_never_crashes(tmp_path: Path, text: str) -> None:
    _check(tmp_path, text)


@FUZZ
@given(value=yaml_values)
def test_random_structures_never_crash(tmp_path: Path, value: object) -> None:
    _check(tmp_path, json.dumps({"types": {"junction": value}}))
    _check(tmp_path, json.dumps(value))


@FUZZ
@given(data=st.data())
def test_mutated_shipped_file_never_crashes(tmp_path: Path, data: st.DataObject) -> None:
    """Replace one line's value of the shipped file with garbage, or drop the line: structured but wrong."""
    lines = list(SHIPPED)
    i = data.draw(st.integers(0, len(lines) - 1))
    if data.draw(st.booleans()):
        del lines[i]
    else:
        indent = len(lines[i]) - len(lines[i].lstrip())
        key = lines[i].strip().split(":")[0].lstrip("- ") or "x"
        dash = "- " if lines[i].strip().startswith("-") else ""
        lines[i] = " " * indent + dash + f"{key}: {json.dumps(data.draw(yaml_values))}"
    _check(tmp_path, "\n".join(lines) + "\n")

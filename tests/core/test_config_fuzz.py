"""Random garbage never crashes the loader: it always ends in problems with a location."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scada.config import check_city
from tests.core.conftest import BASE_TAGS

yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=12))
yaml_values = st.recursive(
    yaml_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)


def _check(tmp: Path, text: str) -> None:
    path = tmp / "tags.yaml"
    path.write_text(text, encoding="utf-8")
    config, problems = check_city(path)
    if config is None:
        assert problems, "a rejected configuration must say why"
        for p in problems:
            assert p.file.endswith("tags.yaml") or p.file.endswith(".csv")
            assert p.line >= 0 and p.what


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=300))
def test_random_text_never_crashes(tmp_path: Path, text: str) -> None:
    _check(tmp_path, text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_valid_config_never_crashes(tmp_path: Path, data: st.DataObject) -> None:
    """Replace one line of the valid city with garbage: structured but wrong."""
    lines = BASE_TAGS.splitlines()
    i = data.draw(st.integers(0, len(lines) - 1))
    indent = len(lines[i]) - len(lines[i].lstrip())
    key = lines[i].strip().split(":")[0].lstrip("- ")
    value = data.draw(yaml_values)
    import json

    lines[i] = " " * indent + ("- " if lines[i].strip().startswith("-") else "") + f"{key}: {json.dumps(value)}"
    _check(tmp_path, "\n".join(lines) + "\n")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=yaml_values)
def test_random_structures_never_crash(tmp_path: Path, value: object) -> None:
    import json

    _check(tmp_path, json.dumps(value))

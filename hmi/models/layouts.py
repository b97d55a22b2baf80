"""Synoptic layouts that engineers edit in YAML (everything except the generated city map).

``hmi/layouts/city.yaml`` (or ``scada hmi --layouts FILE``)::

    junction_layouts:            # how a junction's phases sit on its approaches
      cross4:
        approaches:
          - {name: North, side: n, phases: [1]}
    junctions: {J001: tee}       # equipment → layout (else: by phase count, "generic")
    corridors:                   # Level-2 traffic corridors, junctions in driving order
      - {name: "Centre east-west", junctions: [J003, J004]}
    views:                       # Level-2 equipment tables
      - name: cameras
        title: Cameras
        template: camera
        group_by: commune
        columns:
          - {title: Link, tag: link, labels: {1: up, 2: down}, abnormal: [2, 7]}
    basemap:                     # optional street map under the Level-1 map (hmi.models.tiles)
      xyz: https://tiles.example.net/{z}/{x}/{y}.png      # or mbtiles: FILE
      attribution: "© the tile source's credit"

Problems are reported like the rest of the configuration — ``city.yaml:12: corridor 'Centre':
'junctions' must be a list of equipment ids, got 'J003'`` — all of them in one pass (the file is
parsed with :mod:`scada.config.yamlsource`, which keeps line marks). Ids are checked against the
server's equipment list once it is known (:func:`check_against`). The problems are written in the
console's language (``_()``: ``city.yaml:12: couloir 'Centre' : …`` in French); a file that is not YAML at
all is reported by :mod:`scada.config.yamlsource` in its own words.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hmi.models.problems import suggest
from hmi.models.tiles import BaseMapSpec, parse_basemap
from scada.config.yamlsource import line_of, load_yaml
from scada.errors import ConfigProblem
from scada.format import boolean, quantity
from scada.i18n import _

DEFAULT_FILE = Path(__file__).resolve().parents[1] / "layouts" / "city.yaml"
SIDES = ("n", "e", "s", "w")
TOP_KEYS = ("junction_layouts", "junctions", "corridors", "views", "basemap")
COLUMN_KEYS = ("title", "tag", "units", "labels", "abnormal", "width")
VIEW_KEYS = ("name", "title", "template", "group_by", "columns")


@dataclass(frozen=True, slots=True)
class Approach:
    name: str
    side: str
    phases: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class JunctionLayout:
    name: str
    approaches: tuple[Approach, ...]

    @property
    def phases(self) -> list[int]:
        return sorted({p for a in self.approaches for p in a.phases})


@dataclass(frozen=True, slots=True)
class Column:
    title: str
    tag: str
    units: str = ""
    labels: dict[Any, str] = field(default_factory=dict)
    abnormal: tuple[Any, ...] = ()

    def text(self, value: Any) -> str:
        """The value for people, in the console's language: its label (a msgid of the catalogue: the layouts'
        texts are extracted with the sources, babel.cfg), yes/no, or the number with its unit understood
        (:func:`scada.format.quantity`: an uptime in centiseconds reads "3 j 04 h", bytes "1,23 Mo")."""
        if value is None:
            return ""
        if value in self.labels:
            return _(self.labels[value])
        if isinstance(value, bool):
            return boolean(value)
        if isinstance(value, (int, float)):
            return quantity(value, self.units)
        return f"{value}{(' ' + self.units) if self.units else ''}"

    def is_abnormal(self, value: Any) -> bool:
        return value is not None and value in self.abnormal


@dataclass(frozen=True, slots=True)
class ViewSpec:
    name: str
    title: str
    template: str
    group_by: str
    columns: tuple[Column, ...]
    line: int = 0


@dataclass(frozen=True, slots=True)
class Corridor:
    name: str
    junctions: tuple[str, ...]
    line: int = 0


@dataclass(slots=True)
class Layouts:
    file: str = ""
    junction_layouts: dict[str, JunctionLayout] = field(default_factory=dict)
    junctions: dict[str, str] = field(default_factory=dict)
    corridors: list[Corridor] = field(default_factory=list)
    views: list[ViewSpec] = field(default_factory=list)
    lines: dict[tuple[str, str], int] = field(default_factory=dict)  # (section, key) → line, for later checks
    basemap: BaseMapSpec | None = None  # the optional street map (section ``basemap``)

    def layout_of(self, junction: str) -> JunctionLayout | None:
        name = self.junctions.get(junction)
        return self.junction_layouts.get(name) if name else None

    def view(self, name: str) -> ViewSpec | None:
        return next((v for v in self.views if v.name == name), None)


def load_layouts(path: Path | str | None = None) -> tuple[Layouts, list[ConfigProblem]]:
    """Parse and validate a layouts file; every problem is returned (nothing is reset to a default)."""
    path = Path(path) if path is not None else DEFAULT_FILE
    tree, problems = load_yaml(path)
    out = Layouts(file=str(path))
    if tree is None:
        return out, problems
    f = str(path)

    def problem(loc: list[str | int], who: str, what: str) -> None:
        problems.append(ConfigProblem(f, line_of(tree, loc), who, what))

    if not isinstance(tree, dict):
        problem([], "", _("expected a mapping with {keys}, got {got}").format(keys=", ".join(TOP_KEYS),
                                                                            got=type(tree).__name__))
        return out, problems
    for key in tree:
        if key not in TOP_KEYS:
            problem([key], "", _("unknown section {key!r}{hint}; sections: {keys}").format(
                key=key, hint=suggest(key, TOP_KEYS), keys=", ".join(TOP_KEYS)))

    # junction layouts
    jl = tree.get("junction_layouts") or {}
    if not isinstance(jl, dict):
        problem(["junction_layouts"], "junction_layouts", _("must be a mapping of layout names, got {got!r}").format(
            got=jl))
        jl = {}
    for name, spec in jl.items():
        who = _("junction layout {name!r}").format(name=name)
        loc: list[str | int] = ["junction_layouts", name]
        apps = spec.get("approaches") if isinstance(spec, dict) else None
        if not isinstance(apps, list) or not apps:
            problem(loc, who, _("'approaches' must be a non-empty list, got {got!r}").format(got=apps))
            continue
        approaches = []
        for k, a in enumerate(apps):
            aloc = [*loc, "approaches", k]
            if not isinstance(a, dict):
                problem(aloc, who, _("approach {n} must be a mapping with name, side, phases, got {got!r}").format(
                    n=k + 1, got=a))
                continue
            side = a.get("side")
            phases = a.get("phases")
            ok = True
            if not isinstance(a.get("name"), str) or not a.get("name"):
                problem(aloc, who, _("approach {n}: 'name' must be a text, got {got!r}").format(
                    n=k + 1, got=a.get("name")))
                ok = False
            if side not in SIDES:
                problem([*aloc, "side"], who, _("approach {n}: 'side' must be one of n, e, s, w, got {got!r}").format(
                    n=k + 1, got=side))
                ok = False
            if not isinstance(phases, list) or not phases or not all(
                    isinstance(p, int) and not isinstance(p, bool) and 1 <= p <= 16 for p in phases):
                problem([*aloc, "phases"], who, _("approach {n}: 'phases' must be a list of phase numbers 1..16, "
                                                  "got {got!r}").format(n=k + 1, got=phases))
                ok = False
            if ok and isinstance(phases, list):  # checked above; repeated for the type checker
                approaches.append(Approach(str(a["name"]), str(side), tuple(int(p) for p in phases)))
        if approaches:
            out.junction_layouts[str(name)] = JunctionLayout(str(name), tuple(approaches))

    # junction → layout
    js = tree.get("junctions") or {}
    if not isinstance(js, dict):
        problem(["junctions"], "junctions", _("must map junction ids to layout names, got {got!r}").format(got=js))
        js = {}
    for jid, lname in js.items():
        if lname not in out.junction_layouts:
            problem(["junctions", jid], _("junction {id!r}").format(id=jid),
                    _("unknown layout {name!r}{hint}; layouts: {names}").format(
                        name=lname, hint=suggest(str(lname), out.junction_layouts),
                        names=", ".join(out.junction_layouts) or _("(none)")))
            continue
        out.junctions[str(jid)] = str(lname)
        out.lines[("junctions", str(jid))] = line_of(tree, ["junctions", jid])

    # corridors
    cs = tree.get("corridors") or []
    if not isinstance(cs, list):
        problem(["corridors"], "corridors", _("must be a list, got {got!r}").format(got=cs))
        cs = []
    for k, c in enumerate(cs):
        loc = ["corridors", k]
        name = c.get("name") if isinstance(c, dict) else None
        who = _("corridor {name!r}").format(name=name) if name else _("corridor {n}").format(n=k + 1)
        if not isinstance(c, dict) or not isinstance(name, str) or not name:
            problem(loc, who, _("must be a mapping with a 'name' text and 'junctions', got {got!r}").format(got=c))
            continue
        ids = c.get("junctions")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            problem([*loc, "junctions"], who, _("'junctions' must be a list of equipment ids, got {got!r}").format(
                got=ids))
            continue
        out.corridors.append(Corridor(name, tuple(ids), line_of(tree, loc)))

    # views
    vs = tree.get("views") or []
    if not isinstance(vs, list):
        problem(["views"], "views", _("must be a list, got {got!r}").format(got=vs))
        vs = []
    names: set[str] = set()
    for k, v in enumerate(vs):
        loc = ["views", k]
        if not isinstance(v, dict):
            problem(loc, _("view {n}").format(n=k + 1), _("must be a mapping with {keys}, got {got!r}").format(
                keys=", ".join(VIEW_KEYS), got=v))
            continue
        vname = v.get("name")
        who = _("view {name!r}").format(name=vname) if vname else _("view {n}").format(n=k + 1)
        bad = False
        for key in v:
            if key not in VIEW_KEYS:
                problem([*loc, key], who, _("unknown key {key!r}{hint}").format(key=key, hint=suggest(key, VIEW_KEYS)))
                bad = True
        if not isinstance(vname, str) or not vname:
            problem(loc, who, _("'name' must be a text, got {got!r}").format(got=vname))
            continue
        if vname in names:
            problem(loc, who, _("duplicate view name"))
            continue
        names.add(vname)
        template = v.get("template")
        if not isinstance(template, str) or not template:
            problem(loc, who, _("'template' must be an equipment template name, got {got!r}").format(got=template))
            bad = True
        group_by = v.get("group_by", "commune")
        if group_by not in ("commune", "none"):
            problem([*loc, "group_by"], who, _("'group_by' must be commune or none, got {got!r}").format(got=group_by))
            bad = True
        cols = []
        raw_cols = v.get("columns")
        if not isinstance(raw_cols, list) or not raw_cols:
            problem(loc, who, _("'columns' must be a non-empty list, got {got!r}").format(got=raw_cols))
            continue
        for j, col in enumerate(raw_cols):
            cloc = [*loc, "columns", j]
            if not isinstance(col, dict) or not isinstance(col.get("tag"), str) or not col.get("tag"):
                problem(cloc, who, _("column {n} must be a mapping with a 'tag', got {got!r}").format(n=j + 1, got=col))
                bad = True
                continue
            for key in col:
                if key not in COLUMN_KEYS:
                    problem([*cloc, key], who, _("column {n}: unknown key {key!r}{hint}").format(
                        n=j + 1, key=key, hint=suggest(key, COLUMN_KEYS)))
                    bad = True
            labels = col.get("labels") or {}
            if not isinstance(labels, dict):
                problem([*cloc, "labels"], who, _("column {n}: 'labels' must map values to texts, got {got!r}").format(
                    n=j + 1, got=labels))
                bad = True
                labels = {}
            abnormal = col.get("abnormal") or []
            if not isinstance(abnormal, list):
                problem([*cloc, "abnormal"], who, _("column {n}: 'abnormal' must be a list of values, "
                                                    "got {got!r}").format(n=j + 1, got=abnormal))
                bad = True
                abnormal = []
            cols.append(Column(str(col.get("title") or col["tag"]), str(col["tag"]), str(col.get("units") or ""),
                               {k2: str(x) for k2, x in labels.items()}, tuple(abnormal)))
        if not bad:
            out.views.append(ViewSpec(vname, str(v.get("title") or vname), str(template), str(group_by),
                                      tuple(cols), line_of(tree, loc)))

    # the street base map (optional)
    if tree.get("basemap") is not None:
        out.basemap = parse_basemap(tree["basemap"], path.parent, problem)
    return out, problems


def check_against(layouts: Layouts, equipment: Iterable[tuple[str, str]]) -> list[ConfigProblem]:
    """Problems of ids and templates unknown to the server: ``equipment`` is (id, template) pairs."""
    templates: dict[str, str] = dict(equipment)
    known_templates = set(templates.values())
    f = layouts.file
    out = []
    for jid in layouts.junctions:
        if templates.get(jid) != "junction":
            out.append(ConfigProblem(f, layouts.lines.get(("junctions", jid), 0), _("junction {id!r}").format(id=jid),
                                     _("not a junction of this city") + suggest(jid, [
                                         k for k, t in templates.items() if t == "junction"])))
    for c in layouts.corridors:
        for jid in c.junctions:
            if templates.get(jid) != "junction":
                out.append(ConfigProblem(f, c.line, _("corridor {name!r}").format(name=c.name),
                                         _("{id!r} is not a junction of this city").format(id=jid)))
    for v in layouts.views:
        if v.template not in known_templates:
            out.append(ConfigProblem(f, v.line, _("view {name!r}").format(name=v.name),
                                     _("no equipment of template {name!r} in this city").format(name=v.template)
                                     + suggest(v.template, known_templates)))
    return out

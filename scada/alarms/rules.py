"""Compile the rules of ``alarms.yaml`` against the city and its tag database.

One rule attached to a template tag becomes one *alarm* per matching tag of every equipment of that
template (``lamp_failed`` on ``lamp_*/status`` → 34,000 alarms at Dijon scale). The alarms of one rule
occupy one contiguous slice of the engine's columns, sorted by anchor tag index::

    global alarm index   0 ........ 112 | 113 .......... 34,112 | ...
    rule (group)         junction_comm_loss | lamp_failed           | ...
    anchor tag index     sorted ascending inside each group (searchsorted finds an alarm by tag)

    tag → alarms         CSR arrays (tag_ptr, tag_alarms): every alarm reading a tag (its anchor, a
                         deviation setpoint, the other names of an expression), so a change batch maps
                         to the alarms to re-evaluate with one gather.

Each :class:`CompiledRule` evaluates its condition for a subset of its alarms at once from the tag
database's columns (no Python loop per alarm):

    high / high_high   on v > limit,            off v < limit − deadband     (else unchanged)
    low / low_low      on v < limit,            off v > limit + deadband
    deviation          on |v − setpoint| > limit, off |v − setpoint| < limit − deadband
    rate_of_change     on |Δv/Δt| > limit (per s), off below limit − deadband; decays to 0 when the tag
                       stops changing (tick, after twice its scan period)
    discrete           on v ∈ values (enum labels and true/false accepted; a string tag with value true: any text)
    expression         the safe vectorised evaluator of :mod:`scada.alarms.expr` over the equipment's tags
    bad_quality        on quality ∈ {bad_comm, bad_device, bad_config}

Value-based kinds only use *good* inputs: with a bad or uncertain (stale) input the condition is
``unknown`` and the engine neither raises nor clears the alarm; the ``bad_quality`` rule raises the
communication alarm instead.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from scada.alarms.expr import Expression, ExpressionError
from scada.alarms.messages import (
    ALARM_FIELDS,
    StaticTemplate,
    by_language,
    message_key,
    params_json,
    pick,
    render_static,
    repeat_index,
    static_fields,
)
from scada.alarms.states import DIAGNOSTIC, NS_PER_S
from scada.alarms.system import all_rules
from scada.config.model import CityConfig, TagDef, period_of
from scada.config.schema import AlarmRuleSpec
from scada.errors import ConfigError, ConfigProblem
from scada.quality import Quality
from scada.tagdb import TagDatabase

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
U8 = npt.NDArray[np.uint8]
B = npt.NDArray[np.bool_]

DESCRIPTION_VERSION = 2  # bump when the way infos() describes an alarm changes (invalidates fingerprints)
LIMIT_ON_ABOVE = ("high", "high_high")
LIMIT_ON_BELOW = ("low", "low_low")


def priority_code(priority: int | str) -> int:
    """1..4 as configured; ``diagnostic`` → 5 (sorts last, never annunciated)."""
    return DIAGNOSTIC if priority == "diagnostic" else int(priority)


def priority_label(code: int) -> str:
    return "diagnostic" if code >= DIAGNOSTIC else str(code)


@dataclass(slots=True)
class AlarmInfo:
    """The static description of one alarm (what the journal stores once per alarm definition)."""

    alarm: str  # stable id: "<rule>:<tag name>", e.g. "lamp_failed:dijon/lighting/C0001/lamp_03/status"
    rule: str
    kind: str
    equipment: str
    commune: str
    area: str
    service: str
    tag: str  # full tag name of the anchor tag
    priority: int  # 1..4, 5 = diagnostic
    latched: bool
    message: str  # static part of the message ({value} still to fill in), in the language asked for
    dtype: str
    units: str
    enum: dict[int, str] | None
    limit: float | None
    message_key: str = ""  # the rule's templates (scada.alarms.messages.message_key): the journal reads any language
    params: str = ""  # JSON of the static fields the templates read (pass 1), for the journal
    templates: dict[str, str] | None = None  # the rule's template per language (shared by its alarms)

    def key(self) -> tuple[Any, ...]:
        return (self.alarm, self.rule, self.kind, self.equipment, self.commune, self.area, self.service, self.tag,
                self.priority, self.latched, self.message, self.dtype, self.units,
                None if self.enum is None else tuple(sorted(self.enum.items())), self.limit, self.message_key,
                self.params)


class CompiledRule:
    """The alarms of one rule: anchor tags (sorted) and a vectorised condition."""

    value_based = True  # bad or uncertain inputs make the condition unknown

    def __init__(self, spec: AlarmRuleSpec, group: int, anchors: I64) -> None:
        self.spec = spec
        self.group = group
        self.anchor = anchors
        self.start = 0  # set by the catalog
        self.inputs: list[I64] = [anchors]  # per input: the tag index for each alarm of the rule

    @property
    def count(self) -> int:
        return int(self.anchor.size)

    def known(self, local: I64, qualities: U8) -> B:
        ok = np.ones(local.size, dtype=bool)
        for col in self.inputs:
            ok &= qualities[col[local]] == Quality.GOOD
        return ok

    def condition(self, local: I64, db: TagDatabase, prev: B, now_ns: int) -> tuple[B, B]:
        """New condition for alarms ``local`` (positions in this rule) and whether it is known."""
        raise NotImplementedError


class LimitRule(CompiledRule):
    def condition(self, local: I64, db: TagDatabase, prev: B, now_ns: int) -> tuple[B, B]:
        v = db.values[self.anchor[local]]
        limit = float(self.spec.limit if self.spec.limit is not None else 0.0)
        db_ = self.spec.deadband
        with np.errstate(invalid="ignore"):
            if self.spec.kind in LIMIT_ON_ABOVE:
                new = np.where(v > limit, True, np.where(v < limit - db_, False, prev))
            else:
                new = np.where(v < limit, True, np.where(v > limit + db_, False, prev))
        return new & ~np.isnan(v), self.known(local, db.qualities)


class DeviationRule(CompiledRule):
    def __init__(self, spec: AlarmRuleSpec, group: int, anchors: I64, setpoints: I64) -> None:
        super().__init__(spec, group, anchors)
        self.inputs.append(setpoints)

    def condition(self, local: I64, db: TagDatabase, prev: B, now_ns: int) -> tuple[B, B]:
        d = np.abs(db.values[self.anchor[local]] - db.values[self.inputs[1][local]])
        limit = float(self.spec.limit or 0.0)
        with np.errstate(invalid="ignore"):
            new = np.where(d > limit, True, np.where(d < limit - self.spec.deadband, False, prev))
        return new & ~np.isnan(d), self.known(local, db.qualities)


class RateRule(CompiledRule):
    """|Δv/Δt| in units per second between successive reported values of the tag."""

    def __init__(self, spec: AlarmRuleSpec, group: int, anchors: I64, hold_ns: I64) -> None:
        super().__init__(spec, group, anchors)
        self.prev_value = np.full(anchors.size, np.nan)
        self.prev_ns = np.zeros(anchors.size, dtype=np.int64)
        self.hold_ns = hold_ns  # the rate decays to zero after this long without a change

    def condition(self, local: I64, db: TagDatabase, prev: B, now_ns: int) -> tuple[B, B]:
        v = db.values[self.anchor[local]]
        known = self.known(local, db.qualities)
        dt = (now_ns - self.prev_ns[local]) / NS_PER_S
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = np.where((self.prev_ns[local] > 0) & (dt > 0), np.abs(v - self.prev_value[local]) / dt, 0.0)
        rate = np.nan_to_num(rate, nan=0.0)
        limit = float(self.spec.limit or 0.0)
        new = np.where(rate > limit, True, np.where(rate < limit - self.spec.deadband, False, prev))
        upd = local[known]
        self.prev_value[upd] = v[known]
        self.prev_ns[upd] = now_ns
        return new, known

    def decayed(self, local: I64, now_ns: int) -> B:
        """Which of ``local`` have had no change for longer than their hold time (rate is now 0)."""
        return (self.prev_ns[local] > 0) & (now_ns - self.prev_ns[local] >= self.hold_ns[local])

    def decay_cond(self) -> bool:
        """Whether a zero rate clears the condition (it does unless limit − deadband ≤ 0)."""
        return float(self.spec.limit or 0.0) - self.spec.deadband > 0


class DiscreteRule(CompiledRule):
    def __init__(self, spec: AlarmRuleSpec, group: int, anchors: I64, codes: F64, strings: list[str] | None,
                 any_text: bool = False) -> None:
        super().__init__(spec, group, anchors)
        self.codes = codes
        self.strings = strings  # string tags: compared as text
        self.any_text = any_text  # string tags, ``value: true``: on while the tag holds any text

    def condition(self, local: I64, db: TagDatabase, prev: B, now_ns: int) -> tuple[B, B]:
        idx = self.anchor[local]
        if self.any_text:
            new = np.fromiter((bool(db.strings.get(int(i))) for i in idx), dtype=bool, count=idx.size)
        elif self.strings is not None:
            texts = self.strings
            new = np.fromiter((db.strings.get(int(i)) in texts for i in idx), dtype=bool, count=idx.size)
        else:
            new = np.isin(db.values[idx], self.codes)
        return new, self.known(local, db.qualities)


class ExpressionRule(CompiledRule):
    def __init__(self, spec: AlarmRuleSpec, group: int, anchors: I64, expression: Expression,
                 columns: list[I64]) -> None:
        super().__init__(spec, group, anchors)
        self.expression = expression
        self.inputs = [anchors, *columns]
        self._names = expression.names

    def condition(self, local: I64, db: TagDatabase, prev: B, now_ns: int) -> tuple[B, B]:
        cols = {name: db.values[col[local]] for name, col in zip(self._names, self.inputs[1:], strict=True)}
        return self.expression(cols), self.known(local, db.qualities)


class BadQualityRule(CompiledRule):
    value_based = False

    def condition(self, local: I64, db: TagDatabase, prev: B, now_ns: int) -> tuple[B, B]:
        q = db.qualities[self.anchor[local]]
        never = (q == Quality.BAD_CONFIG) & (db.receive_ns[self.anchor[local]] == 0)  # no sample yet: not bad
        return (q >= Quality.BAD_COMM) & ~never, np.ones(local.size, dtype=bool)


class AlarmCatalog:
    """Every alarm of the city: static columns, the compiled rules, lookups by id and by tag."""

    def __init__(self, config: CityConfig, db: TagDatabase, rules: list[CompiledRule]) -> None:
        self.config = config
        self.db = db
        self.rules = rules
        self.rule_by_name = {r.spec.name: r for r in rules}
        self._eq_cache: dict[int, dict[str, Any]] = {}
        self._templates: dict[str, list[StaticTemplate]] = {}  # language → one parsed template per rule
        self._rule_fields: list[dict[str, str]] = []
        self._messages: list[dict[str, str]] = []  # per rule: its template in every language
        self._keys: list[str] = []
        self._fields: list[tuple[str, ...]] = []
        start = 0
        for r in rules:
            r.start = start
            start += r.count
        n = start
        self.n = n
        self.starts = np.array([r.start for r in rules] + [n], dtype=np.int64)
        self.group = np.repeat(np.arange(len(rules), dtype=np.int32), [r.count for r in rules])
        self.anchor = np.concatenate([r.anchor for r in rules]) if rules else np.zeros(0, dtype=np.int64)
        self.priority = np.repeat(np.array([priority_code(r.spec.priority) for r in rules], dtype=np.uint8),
                                  [r.count for r in rules])
        self.latched = np.repeat(np.array([r.spec.latched for r in rules], dtype=bool), [r.count for r in rules])
        self.on_delay_ns = np.repeat(np.array([round(r.spec.on_delay * NS_PER_S) for r in rules], dtype=np.int64),
                                     [r.count for r in rules])
        self.off_delay_ns = np.repeat(np.array([round(r.spec.off_delay * NS_PER_S) for r in rules],
                                               dtype=np.int64), [r.count for r in rules])
        # equipment / area / service codes
        self.equipment_ids: list[str] = ["", *config.equipment]
        eq_code = {e: i for i, e in enumerate(self.equipment_ids)}
        tag_eq = np.array([eq_code.get(t.equipment, 0) for t in db.defs], dtype=np.int32)
        self.equipment = tag_eq[self.anchor] if n else np.zeros(0, dtype=np.int32)
        self.services: list[str] = list(dict.fromkeys([*config.services, *(r.spec.service for r in rules)]))
        svc_code = {s: i for i, s in enumerate(self.services)}
        self.service = np.repeat(np.array([svc_code[r.spec.service] for r in rules], dtype=np.int32),
                                 [r.count for r in rules])
        self.areas: list[str] = []
        area_code: dict[str, int] = {}
        self.area = np.zeros(n, dtype=np.int32)
        for r in rules:
            cache: dict[int, int] = {}
            seg = self.equipment[r.start:r.start + r.count]
            out = np.empty(r.count, dtype=np.int32)
            for k, e in enumerate(seg.tolist()):
                code = cache.get(e)
                if code is None:
                    text = render_static(r.spec.area, self._eq_fields(self.equipment_ids[e]))
                    text = text.replace("{{", "{").replace("}}", "}")
                    code = area_code.setdefault(text, len(area_code))
                    if code == len(self.areas):
                        self.areas.append(text)
                    cache[e] = code
                out[k] = code
            self.area[r.start:r.start + r.count] = out
        # tag → alarms (CSR)
        pairs_tag: list[I64] = []
        pairs_alarm: list[I64] = []
        for r in rules:
            ids = np.arange(r.start, r.start + r.count, dtype=np.int64)
            for col in r.inputs:
                pairs_tag.append(col)
                pairs_alarm.append(ids)
        if pairs_tag:
            t = np.concatenate(pairs_tag)
            a = np.concatenate(pairs_alarm)
            order = np.lexsort((a, t))
            t, a = t[order], a[order]
            keep = np.ones(t.size, dtype=bool)
            keep[1:] = (t[1:] != t[:-1]) | (a[1:] != a[:-1])
            t, a = t[keep], a[keep]
        else:
            t = a = np.zeros(0, dtype=np.int64)
        self.tag_alarms = a
        self.tag_ptr = np.zeros(len(db) + 1, dtype=np.int64)
        np.add.at(self.tag_ptr, t + 1, 1)
        np.cumsum(self.tag_ptr, out=self.tag_ptr)
        self.input_tags = np.unique(t)
        # suppression: (dependent rule, suppressor rule) pairs of the same template, each with its alarms
        # grouped by equipment (CSR) so that one cabinet's change touches only that cabinet's alarms
        self.suppression: list[tuple[CompiledRule, CompiledRule]] = [
            (r, self.rule_by_name[r.spec.suppressed_by]) for r in rules
            if r.spec.suppressed_by is not None and r.spec.suppressed_by in self.rule_by_name
        ]
        self.by_equipment: dict[int, tuple[I64, I64]] = {}
        for dep, sup in self.suppression:
            for r in (dep, sup):
                if r.group not in self.by_equipment:
                    seg = np.arange(r.start, r.start + r.count, dtype=np.int64)
                    order = np.argsort(self.equipment[seg], kind="stable")
                    ptr = np.zeros(len(self.equipment_ids) + 1, dtype=np.int64)
                    np.add.at(ptr, self.equipment[seg].astype(np.int64) + 1, 1)
                    self.by_equipment[r.group] = (np.asarray(seg[order], dtype=np.int64), np.cumsum(ptr))

    # ------------------------------------------------------------------ lookups
    def alarms_of_tags(self, tags: I64) -> I64:
        """Sorted unique alarm indices that read any of ``tags``."""
        hit = csr_gather(self.tag_alarms, self.tag_ptr, tags)
        return unique_ints(hit, self.n)

    def alarms_of_equipment(self, rule: CompiledRule, equipment: I64) -> I64:
        """The alarms of ``rule`` on the given equipment codes (rules taking part in a suppression)."""
        items, ptr = self.by_equipment[rule.group]
        return csr_gather(items, ptr, equipment)

    def split(self, alarms: I64) -> list[tuple[CompiledRule, I64]]:
        """Sorted alarm indices → (rule, local positions) per rule."""
        out: list[tuple[CompiledRule, I64]] = []
        if alarms.size == 0:
            return out
        cuts = np.searchsorted(alarms, self.starts)
        for g, r in enumerate(self.rules):
            lo, hi = int(cuts[g]), int(cuts[g + 1])
            if hi > lo:
                out.append((r, alarms[lo:hi] - r.start))
        return out

    def fingerprint(self) -> str:
        """A digest of everything the alarm descriptions are made of (rules, anchor tags, equipment).

        Equal fingerprints ⇒ equal :meth:`infos`, so a journal can hand back the definition refs of an
        unchanged city without describing 400,000 alarms again.
        """
        h = hashlib.sha256(f"alarm-catalog v{DESCRIPTION_VERSION} {self.config.lang}\n".encode())
        h.update(json.dumps([r.spec.model_dump(mode="json") for r in self.rules], sort_keys=True).encode())
        enums: dict[int, int] = {}
        enum_texts: list[str] = []
        names, defs = self.db.names, self.db.defs
        parts: list[str] = []
        for a in self.anchor.tolist():
            t = defs[a]
            code = enums.get(id(t.enum))
            if code is None:
                code = enums[id(t.enum)] = len(enum_texts)
                enum_texts.append(json.dumps(sorted((t.enum or {}).items())))
            parts.append(f"{names[a]}|{t.tag}|{t.dtype}|{t.units}|{t.equipment}|{code}")
        h.update("\n".join(parts).encode())
        h.update("\n".join(enum_texts).encode())
        for e in self.equipment_ids:
            h.update(json.dumps(self._eq_fields(e), sort_keys=True, default=str).encode())
        return h.hexdigest()

    def alarm_id(self, i: int) -> str:
        r = self.rules[int(self.group[i])]
        return f"{r.spec.name}:{self.db.names[int(self.anchor[i])]}"

    def index_of(self, alarm_id: str) -> int | None:
        rule, sep, tag = alarm_id.partition(":")
        r = self.rule_by_name.get(rule)
        t = self.db.index.get(tag) if sep else None
        if r is None or t is None:
            return None
        k = int(np.searchsorted(r.anchor, t))
        if k < r.count and int(r.anchor[k]) == t:
            return r.start + k
        return None

    def indices_of(self, alarm_ids: Sequence[str]) -> tuple[list[int], list[str]]:
        found: list[int] = []
        unknown: list[str] = []
        for a in alarm_ids:
            i = self.index_of(a)
            if i is None:
                unknown.append(a)
            else:
                found.append(i)
        return found, unknown

    def _eq_fields(self, equipment: str) -> dict[str, Any]:
        eq = self.config.equipment.get(equipment)
        if eq is None:
            return {"id": equipment, "equipment": equipment, "commune": ""}
        return {**eq.params, **eq.identity, "id": eq.id, "equipment": eq.id, "commune": eq.commune,
                "lat": eq.lat, "lon": eq.lon, "kind": eq.kind, "template": eq.template}

    def info(self, i: int) -> AlarmInfo:
        return self.infos(np.array([i], dtype=np.int64))[0]

    def infos(self, indices: I64 | None = None, lang: str | None = None) -> list[AlarmInfo]:
        """Static descriptions of alarms ``indices`` (all by default), messages in ``lang`` (default: the
        site's), with per-equipment caches."""
        idx = np.arange(self.n, dtype=np.int64) if indices is None else np.asarray(indices, dtype=np.int64)
        eq_cache = self._eq_cache
        if not self._messages:
            self._messages = [by_language(r.spec.message, self.config.lang) for r in self.rules]
            self._keys = [message_key(r.spec.name, m) for r, m in zip(self.rules, self._messages, strict=True)]
            self._fields = [static_fields(m.values()) for m in self._messages]  # what the journal keeps per alarm
            self._rule_fields = [{"limit": "" if r.spec.limit is None else _num(r.spec.limit),
                                  "service": r.spec.service, "rule": r.spec.name,
                                  "priority": priority_label(priority_code(r.spec.priority))} for r in self.rules]
        code = self.config.lang if lang is None else lang
        templates = self._templates.get(code)
        if templates is None:
            templates = self._templates[code] = [StaticTemplate(m[code]) for m in self._messages]
        rule_fields, messages, keys, fields = self._rule_fields, self._messages, self._keys, self._fields
        # the journal's parameters of a rule reading no per-alarm field are the same for all alarms of an equipment
        per_equipment = [not ALARM_FIELDS.intersection(f) for f in fields]
        params_cache: dict[tuple[int, int], str] = {}
        out: list[AlarmInfo] = []
        names = self.db.names
        defs = self.db.defs
        eq_ids = self.equipment_ids
        areas = self.areas
        for g, a, e, ar in zip(self.group[idx].tolist(), self.anchor[idx].tolist(), self.equipment[idx].tolist(),
                               self.area[idx].tolist(), strict=True):
            spec = self.rules[g].spec
            tdef: TagDef = defs[a]
            base = eq_cache.get(e)
            if base is None:
                base = eq_cache[e] = self._eq_fields(eq_ids[e])
            area = areas[ar]
            tmpl = templates[g]
            own = {"tag": tdef.tag or tdef.name, "tag_name": tdef.name, "units": tdef.units, "area": area,
                   "index": repeat_index(tdef.template_tag, tdef.tag)}
            params = params_cache.get((g, e)) if per_equipment[g] else None
            if params is None:
                params = params_json(pick(fields[g], own, rule_fields[g], base))
                if per_equipment[g]:
                    params_cache[(g, e)] = params
            out.append(AlarmInfo(
                f"{spec.name}:{names[a]}", spec.name, spec.kind, eq_ids[e], base.get("commune", ""), area,
                spec.service, tdef.name, priority_code(spec.priority), spec.latched,
                tmpl.render(own, rule_fields[g], base), tdef.dtype, tdef.units, tdef.enum or None, spec.limit,
                keys[g], params, messages[g],
            ))
        return out

def unique_ints(values: npt.NDArray[np.integer[Any]], bound: int) -> I64:
    """Sorted unique values of ``values`` (all in 0..bound-1): a mask for big arrays, a sort for small ones.

    (numpy's hash-based ``np.unique`` costs ~0.1 s on 400,000 values; the mask costs ~1 ms.)
    """
    if values.size * 16 < bound:
        return np.asarray(np.unique(values), dtype=np.int64)
    mask = np.zeros(bound, dtype=bool)
    mask[values] = True
    return np.flatnonzero(mask).astype(np.int64)


def csr_gather(items: I64, ptr: I64, keys: I64) -> I64:
    """Concatenate ``items[ptr[k]:ptr[k + 1]]`` for every k in ``keys`` (vectorised)."""
    keys = np.asarray(keys, dtype=np.int64)
    starts = ptr[keys]
    counts = ptr[keys + 1] - starts
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(total, dtype=np.int64)
    return items[offsets]


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def _problem(rule: AlarmRuleSpec, what: str, files: list[Any]) -> ConfigProblem:
    file = str(files[1]) if len(files) > 1 else "alarms.yaml"
    return ConfigProblem(file, 0, f"rule '{rule.name}'", what)


def compile_rules(config: CityConfig, db: TagDatabase) -> AlarmCatalog:
    """Compile every rule of ``config`` against ``db``; raise :class:`ConfigError` listing every problem."""
    problems: list[ConfigProblem] = []
    # template → tag name (after the equipment prefix) → tag indices (one per equipment)
    template_of = {e.id: e.template for e in config.equipment.values()}
    by_template: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for i, t in enumerate(db.defs):
        tmpl = template_of.get(t.equipment)
        if tmpl is not None:
            by_template[tmpl][t.tag].append(i)
    rules: list[CompiledRule] = []
    # the city's rules, then the built-in system alarms (fail-safe, historian) over the server's own tags;
    # a built-in rule whose tags are not in this database (a plain tag DB, no server) matches nothing
    for spec in all_rules(config):  # bad_quality rules suppressed behind the comm-loss alarm
        try:
            rule = _compile_one(spec, len(rules), config, db, by_template)
        except (ExpressionError, ValueError, KeyError) as exc:
            problems.append(_problem(spec, str(exc).strip("'\""), config.files))
            continue
        if rule is not None:
            rules.append(rule)
    if problems:
        raise ConfigError(problems)
    return AlarmCatalog(config, db, rules)


def _compile_one(spec: AlarmRuleSpec, group: int, config: CityConfig, db: TagDatabase,
                 by_template: dict[str, dict[str, list[int]]]) -> CompiledRule | None:
    if spec.template is not None:
        names = by_template.get(spec.template, {})
        matched = [n for n in names if fnmatch.fnmatchcase(n, spec.tag)]
        idx = [i for n in matched for i in names[n]]
    else:
        idx = db.match(spec.tag).tolist()
    anchors = np.array(sorted(idx), dtype=np.int64)
    if anchors.size == 0:
        return None  # a template without equipment: nothing to watch (the loader checked the pattern)

    def sibling(name: str) -> I64:
        """The tag ``name`` of each anchor's equipment (full name when the rule has no template)."""
        out = np.empty(anchors.size, dtype=np.int64)
        for k, a in enumerate(anchors.tolist()):
            t = db.defs[a]
            if spec.template is None:
                full = name
            else:
                full = config.equipment[t.equipment].tag_name(name)
            j = db.index.get(full)
            if j is None:
                raise KeyError(f"equipment '{t.equipment}' has no tag {name!r}")
            out[k] = j
        return out

    kind = spec.kind
    if kind in (*LIMIT_ON_ABOVE, *LIMIT_ON_BELOW):
        return LimitRule(spec, group, anchors)
    if kind == "deviation":
        return DeviationRule(spec, group, anchors, sibling(spec.setpoint or ""))
    if kind == "rate_of_change":
        periods = np.array([period_of(db.defs[a], config.devices[db.defs[a].device])
                            if db.defs[a].device in config.devices else 1.0 for a in anchors.tolist()])
        hold = np.maximum(2 * periods, 1.0)
        return RateRule(spec, group, anchors, (hold * NS_PER_S).astype(np.int64))
    if kind == "bad_quality":
        return BadQualityRule(spec, group, anchors)
    if kind == "discrete":
        wanted: list[Any] = list(spec.values) if spec.values else [spec.value]
        dtypes = {db.defs[a].dtype for a in anchors.tolist()}
        if dtypes == {"string"}:  # ``value: true`` on text: any text (a system condition carrying its detail)
            any_text = spec.value is True and not spec.values
            return DiscreteRule(spec, group, anchors, np.zeros(0), [str(v) for v in wanted], any_text)
        enum = next((db.defs[a].enum for a in anchors.tolist() if db.defs[a].enum), None)
        codes: list[float] = []
        for v in wanted:
            if isinstance(v, bool):
                codes.append(1.0 if v else 0.0)
            elif isinstance(v, (int, float)):
                codes.append(float(v))
            else:
                code = next((c for c, label in (enum or {}).items() if label == v), None)
                if code is None:
                    raise ValueError(f"discrete value {v!r} is not a label of {spec.tag!r}"
                                     + (f" ({', '.join((enum or {}).values())})" if enum else ""))
                codes.append(float(code))
        return DiscreteRule(spec, group, anchors, np.array(codes, dtype=np.float64), None)
    if kind == "expression":
        first = db.defs[int(anchors[0])]
        allowed: set[str] | None = None
        enums: dict[str, dict[int, str] | None] = {}
        if spec.template is not None:
            eq = config.equipment[first.equipment]
            prefix = eq.prefix + "/"
            for j in db.equipment_indices(eq.id).tolist():
                t = db.defs[j]
                if t.name.startswith(prefix):
                    enums[t.tag] = t.enum
            allowed = set(enums)
        expression = Expression(spec.expression or "", enums, allowed)
        return ExpressionRule(spec, group, anchors, expression, [sibling(n) for n in expression.names])
    raise ValueError(f"unknown alarm kind {kind!r}")

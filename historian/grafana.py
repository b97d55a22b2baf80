"""Grafana provisioning: a dashboard JSON over the InfluxDB (InfluxQL) datasource, trends per equipment type.

Tag names are ``<commune>/<kind>/<equipment>/<tag>``, so one panel per (equipment type, tag) selects
every equipment of that type with a regex on ``tagname`` (filtered by the ``commune`` variable):
analogue tags as time series of ``mean("value")``, state tags as a state timeline of
``last("value")``. Repeated per-luminaire tags (``lamp_{i:02d}/...``) are left out (thousands of
series). Provision with a file provider pointing at the written file, and a datasource named by
``datasource_uid`` (``datasource_yaml`` writes one).
"""

from __future__ import annotations

import json
import re
from typing import Any

from historian.backend import is_analogue
from scada.config.model import CityConfig


def _slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-")


def dashboard(config: CityConfig, *, datasource_uid: str = "scada-influxdb", measurement: str = "history",
              title: str | None = None) -> dict[str, Any]:
    ds = {"type": "influxdb", "uid": datasource_uid}
    kinds: dict[str, dict[str, bool]] = {}  # kind -> template tag -> analogue
    communes: set[str] = set()
    for t in config.tags:
        if "{" in t.template_tag or not t.equipment:
            continue
        parts = t.name.split("/")
        if len(parts) < 4:
            continue
        communes.add(parts[0])
        kinds.setdefault(parts[1], {})[t.tag] = is_analogue(t) or kinds.get(parts[1], {}).get(t.tag, False)
    panels: list[dict[str, Any]] = []
    y = 0
    pid = 1
    for kind in sorted(kinds):
        panels.append({"id": pid, "type": "row", "title": kind, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}})
        pid += 1
        y += 1
        for i, (tag, analogue) in enumerate(sorted(kinds[kind].items())):
            esc_tag = re.escape(tag).replace("/", "\\/")
            rx = f"/^($commune)\\/{re.escape(kind)}\\/[^\\/]+\\/{esc_tag}$/"
            fn, fill = ('mean("value")', "none") if analogue else ('last("value")', "previous")
            # the text of a Grafana panel (Grafana runs it); names are re.escape'd into the regex literal
            query = (f'SELECT {fn} FROM "{measurement}" WHERE "tagname" =~ {rx} AND $timeFilter '  # noqa: S608
                     f'GROUP BY time($__interval), "tagname" fill({fill})')
            panels.append({
                "id": pid, "type": "timeseries" if analogue else "state-timeline", "title": f"{kind}: {tag}",
                "datasource": ds, "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": y + 8 * (i // 2)},
                "targets": [{"refId": "A", "datasource": ds, "rawQuery": True, "resultFormat": "time_series",
                             "query": query, "alias": "$tag_tagname"}],
                "fieldConfig": {"defaults": {}, "overrides": []}, "options": {"legend": {"showLegend": False}},
            })
            pid += 1
        y += 8 * ((len(kinds[kind]) + 1) // 2)
    return {
        "uid": f"scada-{_slug(config.site)}"[:40], "title": title or f"{config.site}: trends per equipment type",
        "tags": ["scada", "historian"], "timezone": config.timezone, "schemaVersion": 39, "version": 1,
        "editable": True, "refresh": "30s", "time": {"from": "now-24h", "to": "now"},
        "templating": {"list": [{
            "name": "commune", "label": "commune", "type": "custom", "multi": True, "includeAll": True,
            "allValue": ".*", "query": ",".join(sorted(communes)),
            "current": {"text": "All", "value": "$__all"},
            "options": [{"text": c, "value": c, "selected": False} for c in sorted(communes)],
        }]},
        "panels": panels,
    }


def datasource_yaml(url: str, database: str, uid: str = "scada-influxdb") -> str:
    """Grafana datasource provisioning for InfluxDB 1.x / InfluxQL (2.x serves InfluxQL with a DBRP mapping)."""
    return (f"apiVersion: 1\ndatasources:\n  - name: SCADA historian\n    uid: {uid}\n    type: influxdb\n"
            f"    access: proxy\n    url: {url}\n    jsonData: {{dbName: {database}, httpMode: GET}}\n")


def write_dashboard(config: CityConfig, path: str, **kw: Any) -> dict[str, Any]:
    d = dashboard(config, **kw)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(d, f, indent=2, ensure_ascii=False)
    return d

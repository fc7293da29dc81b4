"""The dashboards in infra/grafana/dashboards are what Grafana's file provisioning accepts, and every query works.

There is no Grafana to load them into here, so three layers stand in for it:
1. structure: what provisioning itself checks (bare dashboard object, uid/title unique, uid <= 40 of
   [A-Za-z0-9_-]), plus what makes a dashboard render (panel ids, known panel types, a 24-column grid
   without overlaps, the provisioned datasource uid, refIds, well-formed template variables);
2. queries: every expr parses with a real PromQL parser (promql-parser, the Rust crate behind
   GreptimeDB, with Prometheus' type checks), names only metrics the workers export with their labels and
   label values, applies rate() only to counters, and legends only name labels the query keeps;
3. Grafana's own schema: the dashboards and each panel's options are type-checked by tsc against the
   CUE-generated TypeScript types in @grafana/schema at the version docker-compose runs, when those are
   installed (see the skip message); this is the only official machine-readable schema Grafana publishes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from itertools import combinations
from pathlib import Path

import promql_parser as pp
import pytest
import yaml

from schemas.topics import STAGES
from shadowline.cli import grafana_cmd

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "infra" / "grafana"
FILES = sorted((GRAFANA / "dashboards").glob("*.json"))
DS_UID = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())["datasources"][0]["uid"]

_ANY = None  # a label whose values are open-ended
_SCRAPE = {"job": _ANY, "instance": _ANY}  # added by Prometheus to every scraped series
_LAT = {"stage": STAGES, "component": _ANY, "version": _ANY}
METRICS: dict[str, dict] = {  # name -> label -> allowed values; what the workers export
    "shadowline_events_total": {**_LAT, "status": ("ok", "rejected", "error")},
    "shadowline_stage_latency_seconds_bucket": {**_LAT, "le": _ANY},
    "shadowline_stage_latency_seconds_sum": _LAT,
    "shadowline_stage_latency_seconds_count": _LAT,
    "shadowline_deadletters_total": {"stage": STAGES, "reason": _ANY},
    "shadowline_consumer_lag": {"app": _ANY, "topic": _ANY, "partition": _ANY},
    "shadowline_shadow_agreement_ratio": {"stage": STAGES, "candidate": _ANY},
    "shadowline_shadow_match_ratio": {"stage": STAGES, "candidate": _ANY, "side": ("production", "candidate")},
    "shadowline_shadow_comparisons_total": {"stage": STAGES, "candidate": _ANY,
                                            "status": ("matched", "missing_candidate", "missing_production")},
    "shadowline_judgment_score": {"aspect": _ANY},
    "up": {},  # Prometheus' own per-target health series
}
COUNTER_SUFFIXES = ("_total", "_bucket", "_sum", "_count")
# Panel plugins bundled with Grafana 11 (a provisioned dashboard with another type shows "panel plugin not found").
PANEL_TYPES = {"row", "timeseries", "stat", "gauge", "bargauge", "table", "text", "piechart", "barchart",
               "heatmap", "histogram", "state-timeline", "status-history", "logs", "news", "dashlist",
               "alertlist", "annolist", "nodeGraph", "traces", "flamegraph", "geomap", "canvas", "xychart",
               "trend", "candlestick", "datagrid"}
VARIABLE_TYPES = {"query", "adhoc", "groupby", "constant", "datasource", "interval", "textbox", "custom"}
DURATION_VARS = {"__rate_interval", "__interval", "__range", "__auto"}
VAR_REF = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")
FROM_VAR = "__grafana_var__"


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _panels(dash: dict) -> list[dict]:
    out = []
    for panel in dash.get("panels", []):
        out.append(panel)
        out.extend(panel.get("panels", []) if panel.get("type") == "row" else [])
    return out


def _targets(dash: dict):
    for panel in _panels(dash):
        for target in panel.get("targets", []):
            yield panel, target


def _promql(text: str) -> pp.Expr:
    """Parse after Grafana's interpolation: durations become 5m, other variables a marker value."""
    def sub(m: re.Match) -> str:
        name = next(g for g in m.groups() if g)
        return "5m" if name in DURATION_VARS else FROM_VAR
    return pp.parse(VAR_REF.sub(sub, text))


def _children(node) -> list:
    if isinstance(node, pp.AggregateExpr):
        return [node.expr] + ([node.param] if node.param is not None else [])
    if isinstance(node, pp.Call):
        return list(node.args)
    if isinstance(node, pp.BinaryExpr):
        return [node.lhs, node.rhs]
    if isinstance(node, (pp.ParenExpr, pp.UnaryExpr, pp.SubqueryExpr)):
        return [node.expr]
    if isinstance(node, pp.MatrixSelector):
        return [node.vector_selector]
    return []


def _walk(node, ancestors=()):
    yield node, ancestors
    for child in _children(node):
        yield from _walk(child, ancestors + (node,))


def _labels(node) -> set[str] | None:
    """Labels the result series keep; None when not narrowed (all of the input's labels)."""
    if isinstance(node, pp.AggregateExpr):
        if str(node.op) in ("topk", "bottomk", "limitk", "limit_ratio"):
            return _labels(node.expr)
        mod = node.modifier
        if mod is None:
            return set()
        return set(mod.labels) if mod.type == pp.AggModifierType.By else None
    if isinstance(node, pp.Call):
        name = node.func.name
        if name == "histogram_quantile":
            inner = _labels(node.args[1])
            return None if inner is None else inner - {"le"}
        if name in ("vector", "time", "scalar"):
            return set()
        vectors = [a for a in node.args if not isinstance(a, (pp.NumberLiteral, pp.StringLiteral))]
        return _labels(vectors[0]) if vectors and not name.startswith("label_") else None
    if isinstance(node, pp.BinaryExpr):
        lhs, rhs = _labels(node.lhs), _labels(node.rhs)
        if isinstance(node.lhs, pp.NumberLiteral):
            return rhs
        if str(node.op) == "or":
            return None if lhs is None or rhs is None else lhs | rhs
        matching = node.modifier.matching if node.modifier else None
        if matching is not None and node.modifier.card == pp.VectorMatchCardinality.OneToOne:
            if matching.type == pp.LabelModifierType.Include:  # on(...)
                return set(matching.labels)
            return None if lhs is None else lhs - set(matching.labels)
        return lhs
    if isinstance(node, (pp.ParenExpr, pp.UnaryExpr, pp.SubqueryExpr)):
        return _labels(node.expr)
    if isinstance(node, (pp.NumberLiteral, pp.StringLiteral)):
        return set()
    return None


dashboards = pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])


def test_the_three_dashboards_are_there():
    assert {p.stem for p in FILES} >= {"pipeline-health", "shadow-comparison", "quality"}


@dashboards
def test_is_a_bare_provisionable_dashboard(path):
    dash = _load(path)  # invalid JSON fails here
    assert isinstance(dash, dict) and "dashboard" not in dash, "file provisioning reads the bare object, not the API envelope"
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", dash.get("uid", "")), "uid: 1-40 of letters, digits, - and _"
    assert isinstance(dash.get("title"), str) and dash["title"].strip()
    assert dash.get("id") is None, "ids are per Grafana instance; provisioning assigns one"
    assert dash["schemaVersion"] == 39 and "shadowline" in dash["tags"]
    assert isinstance(dash["time"]["from"], str) and isinstance(dash["time"]["to"], str)
    assert re.fullmatch(r"\d+[smhd]", dash["refresh"])
    assert isinstance(dash["templating"]["list"], list) and isinstance(dash["panels"], list) and dash["panels"]


def test_uids_and_titles_are_unique_across_files():
    uids = [_load(p)["uid"] for p in FILES]
    titles = [_load(p)["title"] for p in FILES]
    assert len(set(uids)) == len(uids), "provisioning skips dashboards whose uid is used more than once"
    assert len(set(titles)) == len(titles), "two titles in one folder clash"


@dashboards
def test_panels_have_unique_ids_known_types_and_a_grid_without_overlaps(path):
    panels = _panels(_load(path))
    ids = [p.get("id") for p in panels]
    assert all(isinstance(i, int) and i > 0 for i in ids) and len(set(ids)) == len(ids)
    for p in panels:
        assert p.get("type") in PANEL_TYPES, f"panel {p.get('id')}: unknown type {p.get('type')!r}"
        assert isinstance(p.get("title"), str) and p["title"].strip(), f"panel {p['id']}: no title"
        pos = p.get("gridPos", {})
        assert all(type(pos.get(k)) is int for k in "xywh"), f"panel {p['id']}: gridPos needs int x, y, w, h"
        assert pos["x"] >= 0 and pos["y"] >= 0 and pos["w"] >= 1 and pos["h"] >= 1
        assert pos["x"] + pos["w"] <= 24, f"panel {p['id']}: wider than the 24-column grid"
        if p["type"] == "row":
            assert (pos["x"], pos["w"], pos["h"]) == (0, 24, 1) and p["collapsed"] in (True, False)
            assert p["collapsed"] or p["panels"] == [], "an open row's panels sit at the top level"
    top = [p["gridPos"] for p in _load(path)["panels"]]
    for a, b in combinations(top, 2):
        apart = a["x"] + a["w"] <= b["x"] or b["x"] + b["w"] <= a["x"] or a["y"] + a["h"] <= b["y"] or b["y"] + b["h"] <= a["y"]
        assert apart, f"panels overlap at {a} and {b}"


@dashboards
def test_every_query_uses_the_provisioned_prometheus_datasource(path):
    ref = {"type": "prometheus", "uid": DS_UID}
    dash = _load(path)
    for panel in _panels(dash):
        if panel["type"] == "row":
            continue
        assert panel.get("datasource") == ref, f"panel {panel['id']}: datasource must be {ref}"
        targets = panel.get("targets")
        assert targets, f"panel {panel['id']}: no queries"
        ref_ids = [t.get("refId") for t in targets]
        assert all(isinstance(r, str) and r for r in ref_ids) and len(set(ref_ids)) == len(ref_ids)
        for t in targets:
            assert t.get("datasource") == ref, f"panel {panel['id']} {t['refId']}: datasource must be {ref}"
            assert isinstance(t.get("expr"), str) and t["expr"].strip(), f"panel {panel['id']} {t['refId']}: empty expr"
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            assert var.get("datasource") == ref, f"variable {var['name']}: datasource must be {ref}"


def _check_selector(vs: pp.VectorSelector, where: str) -> None:
    assert vs.name in METRICS, f"{where}: {vs.name!r} is not a metric shadowline exports"
    allowed = {**METRICS[vs.name], **_SCRAPE}
    for m in vs.matchers.matchers:
        assert m.name in allowed, f"{where}: {vs.name} has no label {m.name!r} (it has {sorted(allowed)})"
        values = allowed[m.name]
        if values is _ANY or FROM_VAR in m.value:
            continue
        if m.op == pp.MatchOp.Equal:
            assert m.value in values, f"{where}: {m.name}={m.value!r} never occurs; values are {values}"
        elif m.op == pp.MatchOp.Re:
            assert any(re.fullmatch(m.value, v) for v in values), f"{where}: {m.name}=~{m.value!r} matches nothing"


@dashboards
def test_every_expr_is_valid_promql_over_exported_metrics(path):
    for panel, target in _targets(_load(path)):
        where = f"{path.name} panel {panel['id']} {target['refId']}"
        try:
            expr = _promql(target["expr"])
        except ValueError as exc:
            pytest.fail(f"{where}: {exc}: {target['expr']}")
        for node, ancestors in _walk(expr):
            if isinstance(node, pp.VectorSelector):
                _check_selector(node, where)
                if node.name.endswith("_bucket"):
                    hq = [a for a in ancestors if isinstance(a, pp.Call) and a.func.name == "histogram_quantile"]
                    assert hq, f"{where}: buckets outside histogram_quantile"
                    keeps = _labels(hq[-1].args[1])
                    assert keeps is None or "le" in keeps, f"{where}: histogram_quantile needs le kept"
            if isinstance(node, pp.Call) and node.func.name in ("rate", "irate", "increase", "resets"):
                name = node.args[0].vector_selector.name
                assert name.endswith(COUNTER_SUFFIXES), f"{where}: {node.func.name}() over the gauge {name}"
            if isinstance(node, pp.Call) and node.func.name in ("deriv", "delta", "predict_linear"):
                name = node.args[0].vector_selector.name
                assert not name.endswith(COUNTER_SUFFIXES), f"{where}: {node.func.name}() over the counter {name}"
        keeps = _labels(expr)
        legend = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))
        assert keeps is None or legend <= keeps, f"{where}: legend names {sorted(legend - keeps)}, dropped by the query"


@dashboards
def test_template_variables_are_well_formed_and_used(path):
    dash = _load(path)
    variables = dash["templating"]["list"]
    names = [v.get("name") for v in variables]
    assert len(set(names)) == len(names)
    text = json.dumps(dash["panels"])
    for i, var in enumerate(variables):
        name = var["name"]
        assert re.fullmatch(r"[A-Za-z_]\w*", name) and not name.startswith("__"), f"bad variable name {name!r}"
        assert var["type"] in VARIABLE_TYPES
        assert var.get("refresh", 0) in (0, 1, 2) and var.get("hide", 0) in (0, 1, 2)
        assert isinstance(var.get("multi", False), bool) and isinstance(var.get("includeAll", False), bool)
        if var.get("includeAll") and "allValue" in var:
            re.compile(var["allValue"])
        if var["type"] == "query":
            m = re.fullmatch(r"label_values\((?:(.+),\s*)?(\w+)\)", var["query"])
            assert m, f"variable {name}: query must be label_values([selector,] label), not {var['query']!r}"
            selector, label = m.groups()
            if selector:
                vs = _promql(selector)
                assert isinstance(vs, pp.VectorSelector), f"variable {name}: {selector!r} is not a series selector"
                _check_selector(vs, f"variable {name}")
                assert label in METRICS[vs.name], f"variable {name}: {vs.name} has no label {label!r}"
            uses = {next(g for g in u if g) for u in VAR_REF.findall(var["query"])}
            assert uses <= set(names[:i]), f"variable {name} depends on {sorted(uses)}: define those before it"
        used = {next(g for g in u if g) for v in variables for u in VAR_REF.findall(json.dumps(v.get("query", "")))}
        assert name in used or re.search(rf"\$\{{?{name}\b|\[\[{name}\]\]", text), f"variable {name} is never used"
    for ref in {next(g for g in u if g) for u in VAR_REF.findall(text)}:
        assert ref in names or ref.startswith("__"), f"{path.name} uses ${ref}, which is not defined"


def test_provisioning_and_compose_mounts_agree():
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/shadowline.yml").read_text())
    assert provider["apiVersion"] == 1
    (p,) = provider["providers"]
    assert p["type"] == "file" and p["orgId"] == 1
    # the folder `shadowline grafana push` creates by default, with the same uid
    assert p["folder"] == grafana_cmd.DEFAULT_FOLDER and p["folderUid"] == grafana_cmd._slug(p["folder"])
    datasources = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())["datasources"]
    assert [d["type"] for d in datasources if d["uid"] == DS_UID] == ["prometheus"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in compose["volumes"])
    assert mounts["./infra/grafana/provisioning"] == "/etc/grafana/provisioning"  # the image's GF_PATHS_PROVISIONING
    assert mounts["./infra/grafana/dashboards"] == p["options"]["path"]


def _schema_dir() -> Path:
    return Path(os.environ.get("SHADOWLINE_GRAFANA_SCHEMA", ROOT / ".shadowline" / "grafana-schema"))


def _grafana_version() -> str:
    image = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["grafana"]["image"]
    return image.rsplit(":", 1)[1]


def _ts_module(modules: Path) -> tuple[str, dict[int, str]]:
    """One TypeScript module that assigns each dashboard, and each panel's options, to Grafana's types."""
    composable = modules / "@grafana/schema/dist/esm/raw/composable"
    lines = [
        "import type { Dashboard } from '@grafana/schema/dist/esm/raw/dashboard/x/dashboard_types.gen';",
        # JSON holds enum values, not TypeScript enum members: map each enum to its literal values.
        "type Json<T> = T extends string ? `${T}` : T extends number | boolean | null | undefined ? T"
        " : T extends Array<infer U> ? Array<Json<U>> : T extends object ? { [K in keyof T]: Json<T[K]> } : T;",
        # Panel options are partial in files: Grafana fills each plugin's defaults when it loads them.
        "type Loose<T> = T extends string ? `${T}` : T extends number | boolean | null | undefined ? T"
        " : T extends Array<infer U> ? Array<Loose<U>> : T extends object ? { [K in keyof T]?: Loose<T[K]> } : T;",
    ]
    starts, imported = {}, set()
    for f, path in enumerate(FILES):
        dash = _load(path)
        for panel in _panels(dash):
            kind = panel["type"].replace("-", "").lower()
            cfg = list(composable.glob(f"{kind}/panelcfg/x/*PanelCfg_types.gen.d.ts"))
            if panel["type"] == "row" or not cfg:
                continue
            module = str(cfg[0].relative_to(modules)).removesuffix(".d.ts")
            if kind not in imported:
                lines.append(f"import type * as {kind} from '{module}';")
                imported.add(kind)
            starts[len(lines) + 1] = f"{path.name} panel {panel['id']} options"
            lines.append(f"export const o{f}_{panel['id']}: Loose<{kind}.Options> = {json.dumps(panel.get('options', {}))};")
            custom = panel.get("fieldConfig", {}).get("defaults", {}).get("custom")
            if custom is not None and "export interface FieldConfig" in cfg[0].read_text():
                starts[len(lines) + 1] = f"{path.name} panel {panel['id']} fieldConfig.defaults.custom"
                lines.append(f"export const c{f}_{panel['id']}: Loose<{kind}.FieldConfig> = {json.dumps(custom)};")
        starts[len(lines) + 1] = path.name
        lines.extend(f"export const d{f}: Json<Dashboard> = {json.dumps(dash, indent=1)};".splitlines())
    return "\n".join(lines) + "\n", starts


def test_dashboards_typecheck_against_grafanas_published_schema(tmp_path):
    version = _grafana_version()
    modules = _schema_dir() / "node_modules"
    tsc, package = modules / ".bin" / "tsc", modules / "@grafana/schema/package.json"
    if not (tsc.exists() and package.exists() and shutil.which("node")):
        pytest.skip(f"needs node and `npm install --prefix {_schema_dir()} @grafana/schema@{version} typescript@5` "
                    "(or SHADOWLINE_GRAFANA_SCHEMA pointing at such a prefix)")
    installed = json.loads(package.read_text())["version"]
    assert installed == version, f"@grafana/schema {installed} installed, but docker-compose runs Grafana {version}"
    source, starts = _ts_module(modules)
    (tmp_path / "node_modules").symlink_to(modules, target_is_directory=True)
    (tmp_path / "dashboards.ts").write_text(source)
    (tmp_path / "tsconfig.json").write_text(json.dumps({"compilerOptions": {
        "strict": True, "noEmit": True, "skipLibCheck": True, "target": "es2022",
        "module": "esnext", "moduleResolution": "bundler"}, "files": ["dashboards.ts"]}))
    proc = subprocess.run([str(tsc), "-p", "."], cwd=tmp_path, capture_output=True, text=True, timeout=180)

    def located(line: str) -> str:
        m = re.search(r"dashboards\.ts\((\d+),", line)
        return f"[{starts[max(s for s in starts if s <= int(m.group(1)))]}] {line}" if m else line
    assert proc.returncode == 0, "\n".join(located(line) for line in proc.stdout.splitlines())

"""The Grafana dashboards: generated and committed in step, built to the conventions of issue 4, and
naming only the families docs/metrics.md lists. No Docker needed.

`panel_queries()` is also the list the end-to-end test evaluates against a real Prometheus."""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GENERATOR = ROOT / "grafana" / "generate.py"
DASHBOARD_DIR = ROOT / "grafana" / "dashboards"
ALERTS_DIR = ROOT / "grafana" / "alerts"
METRICS_DOC = ROOT / "docs" / "metrics.md"

HOST_UID, FLEET_UID = "docker-storage-host", "docker-storage-fleet"
HOST_FILTER = '{job=~"$job", instance=~"$instance"'
FLEET_FILTER = '{job=~"$job"'
UNITS = {"bytes", "percentunit", "s", "h", "short"}
DS = {"type": "prometheus", "uid": "${datasource}"}

METRIC = re.compile(r"docker_storage_[a-z_]+")
RECORDED = re.compile(r"docker_storage:[a-z_:]+")
# Every series selector: our families and Prometheus' own `up`.
SELECTOR = re.compile(r"\b(docker_storage_[a-z_]+|docker_storage:[a-z_:]+|up)(?![a-z_:(])")

# Grafana's variables as the end-to-end test substitutes them (longest first).
SUBSTITUTIONS = {
    "${__rate_interval}": "1m",
    "$__rate_interval": "1m",
    "${__interval}": "30s",
    "$__interval": "30s",
    "${__range}": "1h",
    "$__range": "1h",
    "${instance}": ".+",
    "$instance": ".+",
    "${job}": ".+",
    "$job": ".+",
}


# --- helpers (panel_queries is used by the end-to-end test too) ---------------------------------


@cache
def generator():
    spec = importlib.util.spec_from_file_location("grafana_generate", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dashboards() -> dict[str, dict]:
    """uid → the committed dashboard."""
    out = {}
    for path in sorted(DASHBOARD_DIR.glob("*.json")):
        dash = json.loads(path.read_text())
        out[dash["uid"]] = dash
    return out


def panels(dash: dict) -> Iterator[dict]:
    """Every panel, rows' nested panels included, rows themselves excluded."""
    for p in dash["panels"]:
        if p["type"] == "row":
            yield from p.get("panels", [])
        else:
            yield p


def substitute(expr: str) -> str:
    for var, value in SUBSTITUTIONS.items():
        expr = expr.replace(var, value)
    return expr


def panel_queries() -> list[tuple[str, str, str]]:
    """(dashboard uid, panel title, expr with Grafana's variables substituted) for every target:
    $job and $instance → `.+` (the selectors keep their `=~`), $__rate_interval → 1m,
    $__range → 1h, $__interval → 30s."""
    return [
        (uid, p["title"], substitute(t["expr"]))
        for uid, dash in dashboards().items()
        for p in panels(dash)
        for t in p["targets"]
    ]


def expressions(dash: dict) -> list[str]:
    """Every PromQL text of a dashboard, variable queries included, variables not substituted."""
    exprs = [t["expr"] for p in panels(dash) for t in p["targets"]]
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            exprs.append(var["definition"])
    return exprs


def documented() -> set[str]:
    """Family names in docs/metrics.md's tables (counters with their `_total`)."""
    row = re.compile(r"\| `(docker_storage_\w+)` \| (\w+) \|")
    return {m.group(1) for line in METRICS_DOC.read_text().splitlines() if (m := row.match(line))}


def undocumented(exprs: list[str]) -> set[str]:
    doc = documented()
    return {name for expr in exprs for name in METRIC.findall(expr)} - doc


def recorded() -> set[str]:
    """Names the Prometheus rules under grafana/alerts record."""
    names = set()
    for path in ALERTS_DIR.glob("*.y*ml"):
        names.update(re.findall(r"^\s*-?\s*record:\s*(\S+)", path.read_text(), re.MULTILINE))
    return names


def units(p: dict) -> set[str]:
    cfg = p.get("fieldConfig", {})
    found = {cfg.get("defaults", {}).get("unit", "short")}
    for o in cfg.get("overrides", []):
        found.update(prop["value"] for prop in o["properties"] if prop["id"] == "unit")
    return found


def walk(node: object, key: str = "") -> Iterator[tuple[str, object]]:
    """(key, value) of every node in the JSON."""
    yield key, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from walk(v, k)
    elif isinstance(node, list):
        for v in node:
            yield from walk(v, key)


@pytest.fixture(scope="module")
def dash() -> dict[str, dict]:
    d = dashboards()
    assert set(d) == {HOST_UID, FLEET_UID}
    return d


# --- generated and committed in step --------------------------------------------------------------


def run_generator(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(GENERATOR), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_committed_json_is_a_fresh_generation():
    res = run_generator("--check")
    assert res.returncode == 0, res.stderr
    assert generator().check() == []


def test_hand_edited_copy_is_detected(tmp_path: Path):
    out = tmp_path / "dashboards"
    shutil.copytree(DASHBOARD_DIR, out)
    host = json.loads((out / "host.json").read_text())
    host["panels"][1]["title"] = "edited by hand"
    (out / "host.json").write_text(json.dumps(host, indent=2, sort_keys=True) + "\n")

    res = run_generator("--check", "--out", str(out))
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "host.json" in lines[0], res.stderr

    (out / "fleet.json").unlink()
    problems = generator().check(out)
    assert len(problems) == 2 and any("fleet.json" in p and "missing" in p for p in problems)


def test_check_compares_against_the_generated_dicts():
    gen = generator()
    built = gen.build()
    assert gen.check(DASHBOARD_DIR, built) == []
    edited = copy.deepcopy(built)
    edited["fleet.json"]["refresh"] = "5s"
    assert [p for p in gen.check(DASHBOARD_DIR, edited) if "fleet.json" in p]
    assert not [p for p in gen.check(DASHBOARD_DIR, edited) if "host.json" in p]


def test_json_is_sorted_indented_with_trailing_newline():
    paths = sorted(DASHBOARD_DIR.glob("*.json"))
    # The exact list, so that a glob matching nothing cannot pass.
    assert [p.name for p in paths] == ["fleet.json", "host.json"]
    for path in paths:
        text = path.read_text()
        assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n", path.name


# --- structure ----------------------------------------------------------------------------------------


def test_dashboard_settings(dash):
    assert dash[HOST_UID]["title"] == "Docker storage / Host"
    assert dash[FLEET_UID]["title"] == "Docker storage / Fleet"
    for d in dash.values():
        assert d["tags"] == ["docker", "docker-storage"]
        assert d["refresh"] == "1m"
        assert d["time"] == {"from": "now-24h", "to": "now"}
        assert 36 <= d["schemaVersion"] <= 41
        assert d["description"]


def test_datasource_variable_and_no_hardcoded_uid(dash):
    for d in dash.values():
        variables = {v["name"]: v for v in d["templating"]["list"]}
        ds = variables["datasource"]
        assert ds["type"] == "datasource" and ds["query"] == "prometheus"
        for key, value in walk(d):
            if key == "datasource" and isinstance(value, dict) and value.get("type") != "grafana":
                assert value == DS, value
            elif key == "datasource":
                assert isinstance(value, dict), f"datasource given by name: {value!r}"
        for p in panels(d):
            assert p["datasource"] == DS, p["title"]
            assert all(t["datasource"] == DS for t in p["targets"]), p["title"]


def test_job_and_instance_variables_come_from_our_own_metrics(dash):
    host = {v["name"]: v for v in dash[HOST_UID]["templating"]["list"]}
    fleet = {v["name"]: v for v in dash[FLEET_UID]["templating"]["list"]}
    assert set(host) == {"datasource", "job", "instance"}
    assert set(fleet) == {"datasource", "job"}
    job_query = "label_values(docker_storage_exporter_build_info, job)"
    instance_query = 'label_values(docker_storage_exporter_build_info{job=~"$job"}, instance)'
    for v in (host["job"], fleet["job"]):
        assert v["type"] == "query" and v["definition"] == job_query and v["query"]["query"] == job_query
        assert v["datasource"] == DS
    inst = host["instance"]
    assert inst["type"] == "query" and inst["definition"] == instance_query
    assert inst["query"]["query"] == instance_query and inst["datasource"] == DS


def test_panels_have_title_description_targets_and_units(dash):
    for uid, d in dash.items():
        for p in panels(d):
            where = f"{uid}: {p.get('title')!r}"
            assert p.get("title") and p.get("description"), where
            assert p["targets"], where
            refs = [t["refId"] for t in p["targets"]]
            assert all(refs) and len(set(refs)) == len(refs), where
            assert all(t.get("expr", "").strip() for t in p["targets"]), where
            assert units(p) <= UNITS, (where, units(p))
            want_range = p["type"] == "timeseries"
            for t in p["targets"]:
                assert t["range"] is want_range and t["instant"] is not want_range, where
                if p["type"] == "table":
                    assert t["format"] == "table", where


def test_units_in_use(dash):
    used = set().union(*(units(p) for d in dash.values() for p in panels(d)))
    assert {"bytes", "percentunit", "s", "short"} <= used


def overlaps(uid: str, grid: list[dict]) -> None:
    boxes = []
    for p in grid:
        g = p["gridPos"]
        assert g["w"] > 0 and g["h"] > 0 and 0 <= g["x"] and g["x"] + g["w"] <= 24, (uid, p["title"])
        for other, o in boxes:
            overlap = (
                g["x"] < o["x"] + o["w"]
                and o["x"] < g["x"] + g["w"]
                and g["y"] < o["y"] + o["h"]
                and o["y"] < g["y"] + g["h"]
            )
            assert not overlap, (uid, p["title"], other)
        boxes.append((p["title"], g))


def test_panel_ids_unique_and_grid_without_overlaps(dash):
    for uid, d in dash.items():
        ids = [p["id"] for p in d["panels"]] + [p["id"] for r in d["panels"] for p in r.get("panels", [])]
        assert len(ids) == len(set(ids)), uid
        overlaps(uid, d["panels"])
        # A collapsed row's panels take no room while it is closed; opened, they lie below it
        # without overlapping each other (Grafana pushes what follows down).
        for r in d["panels"]:
            if r["type"] == "row" and r["collapsed"]:
                assert r["panels"], (uid, r["title"])
                assert all(p["gridPos"]["y"] > r["gridPos"]["y"] for p in r["panels"]), (uid, r["title"])
                overlaps(uid, r["panels"])
            else:
                assert not r.get("panels"), (uid, r["title"])


def test_every_selector_carries_the_dashboard_filters(dash):
    for uid, want in ((HOST_UID, HOST_FILTER), (FLEET_UID, FLEET_FILTER)):
        for p in panels(dash[uid]):
            for t in p["targets"]:
                expr = t["expr"]
                found = list(SELECTOR.finditer(expr))
                assert found, (uid, p["title"], expr)
                for m in found:
                    assert expr[m.end() :].startswith(want), (uid, p["title"], m.group(1), expr)


def test_links_between_the_dashboards(dash):
    for uid, other in ((HOST_UID, FLEET_UID), (FLEET_UID, HOST_UID)):
        links = dash[uid]["links"]
        assert any(link["type"] == "link" and f"/d/{other}" in link["url"] for link in links), uid
        assert any(link["type"] == "dashboards" and "docker-storage" in link["tags"] for link in links), uid
    data_links = [
        v["url"]
        for p in panels(dash[FLEET_UID])
        for _, v in walk(p["fieldConfig"])
        if isinstance(v, dict) and "url" in v
    ]
    assert data_links
    assert all(f"/d/{HOST_UID}" in url and "var-instance=${__" in url for url in data_links)
    assert any("${__data.fields.instance}" in url for url in data_links)
    tables = [p for p in panels(dash[FLEET_UID]) if p["type"] == "table"]
    assert tables and all("${__data.fields.instance}" in json.dumps(p["fieldConfig"]) for p in tables)


# --- metric names --------------------------------------------------------------------------------------


def test_every_metric_named_is_documented(dash):
    assert len(documented()) > 30
    for uid, d in dash.items():
        assert undocumented(expressions(d)) == set(), uid


def test_undocumented_metric_is_caught():
    assert undocumented(["sum(docker_storage_images)"]) == set()
    assert undocumented(["sum(docker_storage_invented_bytes{job=~'x'})"]) == {"docker_storage_invented_bytes"}
    assert undocumented(["rate(docker_storage_sampler_runs_total[1m])"]) == set()
    assert undocumented(["rate(docker_storage_sampler_runs[1m])"]) == {"docker_storage_sampler_runs"}


def test_recording_rules_named_are_defined(dash):
    """Dashboards compute inline; a `docker_storage:` name must at least be a rule we ship."""
    named = {name for d in dash.values() for e in expressions(d) for name in RECORDED.findall(e)}
    assert named <= recorded()


def test_the_dashboards_cover_the_catalogue(dash):
    """The families an operator looks for have a panel (guards against a panel silently dropped)."""
    named = {n for d in dash.values() for e in expressions(d) for n in METRIC.findall(e)}
    wanted = {
        "docker_storage_filesystem_avail_bytes", "docker_storage_filesystem_files_free",
        "docker_storage_used_bytes", "docker_storage_reclaimable_bytes", "docker_storage_container_log_bytes",
        "docker_storage_driver_disk_bytes", "docker_storage_root_disk_bytes", "docker_storage_root_files",
        "docker_storage_image_size_bytes", "docker_storage_image_unique_bytes",
        "docker_storage_image_containers", "docker_storage_image_created_timestamp_seconds",
        "docker_storage_layer_disk_bytes", "docker_storage_layer_size_bytes", "docker_storage_layer_images",
        "docker_storage_volume_disk_bytes", "docker_storage_container_rw_bytes", "docker_storage_images",
        "docker_storage_registry_images", "docker_storage_containers", "docker_storage_volumes",
        "docker_storage_build_cache_bytes", "docker_storage_build_cache_records", "docker_storage_engine_up",
        "docker_storage_sampler_success", "docker_storage_sampler_last_success_timestamp_seconds",
        "docker_storage_sampler_duration_seconds", "docker_storage_series_folded",
        "docker_storage_sampler_available", "docker_storage_layer_attribution_available",
    }  # fmt: skip
    assert wanted <= named, sorted(wanted - named)


REGISTRY_FAMILY = "docker_storage_registry_store_"
FAMILY_ROW = re.compile(r"\| `(docker_storage_\w+)` \|")


def registry_families() -> set[str]:
    """The families docs/metrics.md lists under the registry sampler (only with --registry.root)."""
    names, section = set(), ""
    for line in METRICS_DOC.read_text().splitlines():
        if line.startswith("#"):
            section = line.lower()
        elif "from the registry sampler" in section and (m := FAMILY_ROW.match(line)):
            names.add(m.group(1))
    return names


def test_the_dashboards_cover_the_registry_samplers_families(dash):
    families = registry_families()
    assert len(families) >= 15 and all(f.startswith(REGISTRY_FAMILY) for f in families)
    host = {n for e in expressions(dash[HOST_UID]) for n in METRIC.findall(e)}
    assert families <= host, sorted(families - host)
    fleet = {n for e in expressions(dash[FLEET_UID]) for n in METRIC.findall(e)}
    assert {REGISTRY_FAMILY + "reclaimable_bytes", REGISTRY_FAMILY + "blob_bytes"} <= fleet


def test_registry_panels_are_in_one_collapsed_row(dash):
    """Off unless --registry.root is given: on the host dashboard every panel on the registry
    sampler sits in one closed row, so a host without a registry shows no empty panels, and the
    row holds nothing else."""
    d = dash[HOST_UID]
    rows = [p for p in d["panels"] if p["type"] == "row" and "registry" in p["title"].lower()]
    assert len(rows) == 1 and rows[0]["collapsed"] is True, [r["title"] for r in rows]
    (reg,) = rows

    def on_registry(p: dict) -> bool:
        marks = (REGISTRY_FAMILY, "docker_storage:registry_", 'sampler="registry"')
        return any(m in t["expr"] for t in p["targets"] for m in marks)

    assert reg["panels"] and all(on_registry(p) for p in reg["panels"]), [p["title"] for p in reg["panels"]]
    outside = [p["title"] for p in d["panels"] if p["type"] != "row" and on_registry(p)]
    assert outside == []
    # The stats say why they are empty instead of Grafana's bare "No data".
    for p in reg["panels"]:
        if p["type"] == "stat":
            assert p["fieldConfig"]["defaults"].get("noValue"), p["title"]


def test_registry_legends_name_the_root(dash):
    """The registry families have a `root` label only with several roots: a panel that shows one
    series per root gives a single root a name, so its legend is never empty."""
    per_root = [
        (p["title"], t)
        for p in panels(dash[HOST_UID])
        for t in p["targets"]
        if "{{root}}" in t["legendFormat"]
    ]
    assert len(per_root) >= 5
    for title, t in per_root:
        expr = t["expr"]
        assert expr.startswith("label_replace(") and expr.endswith(', "root", "registry", "root", "")'), title


def test_panel_queries_are_substituted():
    queries = panel_queries()
    assert {uid for uid, _, _ in queries} == {HOST_UID, FLEET_UID}
    assert len(queries) > 50
    for uid, title, expr in queries:
        assert "$" not in expr, (uid, title, expr)
        assert title and expr
    host = [expr for uid, _, expr in queries if uid == HOST_UID]
    assert all('job=~".+", instance=~".+"' in expr for expr in host)
    assert any("[1h]" in expr for expr in host)

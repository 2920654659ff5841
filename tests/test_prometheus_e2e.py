"""End to end: a real Prometheus scrapes the real exporter (running against the seeded
private engine) and loads our rules; every rule expression and every dashboard panel query
is evaluated through Prometheus' HTTP API."""

from __future__ import annotations

import re

import pytest

from tests.harness import SUMMARY
from tests.harness.prometheus import PrometheusServer
from tests.test_alerts import RULES, rules

JOB = "docker-storage-exporter"


@pytest.fixture(scope="module")
def prometheus(exporter, cstore_exporter, registry_exporter, tmp_path_factory):
    """Three hosts: the 20.10 engine on overlay2, Docker 26 on the containerd image store, and
    an exporter reading a real registry's storage (--registry.root), so that each store's own
    families and panels, and the registry row's, are evaluated on real data."""
    targets = [f"127.0.0.1:{p.port}" for p in (exporter, cstore_exporter, registry_exporter)]
    prom = PrometheusServer(tmp_path_factory.mktemp("prometheus"), targets, [RULES], JOB).start()
    try:
        prom.wait_for(f'up{{job="{JOB}"}} == 1')
        # Rate-like rules need a few samples; the scan family arrives with the first scan.
        prom.wait_for(f'count_over_time(docker_storage_engine_up{{job="{JOB}"}}[1m]) >= 5')
        prom.wait_for("docker_storage_root_disk_bytes")
        prom.wait_for("docker_storage_content_disk_bytes")
        prom.wait_for("docker_storage_registry_store_blob_bytes")
        yield prom
    finally:
        prom.stop()


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\bdocker_storage_[a-z_]+\b", expr))


def test_rules_load_and_evaluate_without_errors(prometheus):
    groups = prometheus.api("rules")["data"]["groups"]
    loaded = [r for g in groups for r in g["rules"]]
    assert len(loaded) == len(rules())
    prometheus.wait_for("docker_storage:reclaimable_bytes:sum")  # evaluated at least once
    groups = prometheus.api("rules")["data"]["groups"]
    bad = [(r["name"], r.get("lastError")) for g in groups for r in g["rules"] if r["health"] != "ok"]
    assert bad == []


def test_every_rule_expression_evaluates_and_names_real_series(prometheus):
    evaluated = with_data = 0
    for r in rules():
        name = r.get("alert") or r.get("record")
        res = prometheus.query(r["expr"])
        assert res["status"] == "success", (name, res.get("error"))
        evaluated += 1
        with_data += bool(res["data"]["result"])
        for metric in metric_names(r["expr"]):
            series = prometheus.query(f'count({metric}{{job="{JOB}"}})')["data"]["result"]
            assert series, f"{name}: {metric} is not exported by the real exporter"
    # Recording rules over data the seeded state has must produce series.
    for record in ("docker_storage:reclaimable_bytes:sum",):
        assert prometheus.query(record)["data"]["result"], record
    SUMMARY.append(f"end-to-end: rule expressions evaluated: {evaluated}, returned data: {with_data}")


# Panels that rightly show nothing on an idle test host, and why.
MAY_BE_EMPTY = {
    ("docker-storage-host", "Predicted time until full"): "free space is not shrinking",
    ("docker-storage-host", "Predicted time until out of inodes"): "free inodes are not shrinking",
    ("docker-storage-fleet", "Hosts filling up first"): "no host is filling up",
    ("docker-storage-host", "Registry time until full"): "the registry's free space is not shrinking",
}


def test_every_dashboard_panel_query_evaluates_and_returns_data(prometheus):
    from tests.test_dashboards import panel_queries

    queries = panel_queries()
    assert len(queries) > 40
    empty, evaluated = [], 0
    for uid, title, expr in queries:
        res = prometheus.query(expr)
        assert res["status"] == "success", (uid, title, expr, res.get("error"))
        evaluated += 1
        for metric in metric_names(expr):
            assert prometheus.query(f"count({metric})")["data"]["result"], f"{title}: {metric} not exported"
        if not res["data"]["result"]:
            empty.append((uid, title))
    unexpected = [e for e in empty if e not in MAY_BE_EMPTY]
    assert unexpected == [], "panels without data although the seeded state provides it"
    SUMMARY.append(
        f"end-to-end: dashboard panel queries evaluated: {evaluated}, returned data: {evaluated - len(empty)}"
    )

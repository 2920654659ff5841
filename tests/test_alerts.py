"""Alert and recording rules: promtool's own checks and unit tests, and the conventions
every alert follows (severity, summary, description, a runbook that exists)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "grafana" / "alerts" / "docker-storage.rules.yml"
RULE_TESTS = ROOT / "grafana" / "alerts" / "tests" / "docker-storage.test.yml"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
ALERTS_DOC = ROOT / "docs" / "alerts.md"
METRICS_DOC = ROOT / "docs" / "metrics.md"


def rules() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def alerts() -> list[dict]:
    return [r for r in rules() if "alert" in r]


def documented_metrics() -> set[str]:
    return set(re.findall(r"^\| `(docker_storage_\w+)`", METRICS_DOC.read_text(), re.M))


def test_promtool_check_rules_with_lint():
    res = subprocess.run(
        ["promtool", "check", "rules", "--lint=all", str(RULES)], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_promtool_unit_tests_pass():
    res = subprocess.run(
        ["promtool", "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, cwd=RULE_TESTS.parent
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_every_alert_is_tested_firing_and_not_firing():
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired, quiet = set(), set()
    for t in tests:
        for case in t.get("alert_rule_test", []):
            (fired if case.get("exp_alerts") else quiet).add(case["alertname"])
    names = {a["alert"] for a in alerts()}
    assert names - fired == set(), "never tested firing"
    assert names - quiet == set(), "never tested staying quiet"


def test_every_alert_has_severity_summary_description_and_a_runbook_that_exists():
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
        for h in re.findall(r"^## (.+)$", RUNBOOKS.read_text(), re.M)
    }
    documented = ALERTS_DOC.read_text()
    for a in alerts():
        assert a["labels"]["severity"] in ("info", "warning", "critical"), a["alert"]
        ann = a["annotations"]
        assert ann["summary"] and "{{" in ann["description"], a["alert"]  # the numbers
        url = ann["runbook_url"]
        assert url.split("#")[0].endswith("docs/runbooks.md"), url
        assert url.split("#")[1] in anchors, url
        assert a.get("for"), a["alert"]
        assert f"| {a['alert']} |" in documented, f"{a['alert']} missing from docs/alerts.md"


def test_rules_name_only_documented_metrics():
    known = documented_metrics()
    for r in rules():
        for name in set(re.findall(r"\bdocker_storage_\w+", r["expr"])):
            assert name in known, f"{r.get('alert') or r.get('record')} uses {name}, not in docs/metrics.md"


def test_every_recording_rule_is_used_by_a_dashboard_or_an_alert():
    used = RULES.read_text().split("groups:", 1)[1]
    dashboards = "".join(p.read_text() for p in (ROOT / "grafana" / "dashboards").glob("*.json"))
    for r in rules():
        if "record" in r:
            in_alerts = sum(1 for a in alerts() if r["record"] in a["expr"])
            assert in_alerts or r["record"] in dashboards, f"{r['record']} is recorded for nobody"
    assert used

"""Prometheus rules: promtool accepts them, their unit tests pass, every alert's tests fail
when the alert can no longer fire, and the dashboards' queries parse as PromQL."""

import json
import re

import yaml

from conftest import DEPLOY, run

RULES = DEPLOY / "prometheus" / "alerts.yaml"
RULE_TESTS = DEPLOY / "prometheus" / "alerts.test.yaml"
DASHBOARDS = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))


def test_rules_pass_promtool_check(promtool):
    result = run([promtool, "check", "rules", str(RULES)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass(promtool):
    result = run([promtool, "test", "rules", str(RULE_TESTS)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def alerts():
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule]


def test_every_alert_has_unit_tests_that_see_it_fire_and_stay_quiet():
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    for alert in alerts():
        cases = [c for t in tests for c in t.get("alert_rule_test", []) if c["alertname"] == alert]
        assert any(c["exp_alerts"] for c in cases), f"{alert}: no test sees it fire"
        assert any(not c["exp_alerts"] for c in cases), f"{alert}: no test sees it quiet"


def test_an_alert_that_cannot_fire_fails_its_tests(promtool, tmp_path):
    """Mutation check: each alert in turn gets an expression that never holds, and the unit
    tests must then fail, so none of them passes without exercising its alert."""
    original = yaml.safe_load(RULES.read_text())
    for alert in alerts():
        mutated = json.loads(json.dumps(original))
        for group in mutated["groups"]:
            for rule in group["rules"]:
                if rule.get("alert") == alert:
                    rule["expr"] = "vector(1) == 0"
        (tmp_path / "alerts.yaml").write_text(yaml.safe_dump(mutated))
        (tmp_path / "alerts.test.yaml").write_text(RULE_TESTS.read_text())
        result = run([promtool, "test", "rules", str(tmp_path / "alerts.test.yaml")])
        assert result.returncode != 0, f"the tests pass even when {alert} cannot fire"


def dashboard_queries():
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                yield path.name, panel["title"], target["expr"]


def as_promql(expr):
    """A dashboard query with Grafana's variables replaced by values, as Prometheus sees it."""
    expr = expr.replace("$__rate_interval", "1m")
    return re.sub(r"\$(job|instance)", "x", expr)


def test_dashboard_queries_parse_as_promql(promtool, tmp_path):
    rules = [{"record": f"dashboard:query:{i}", "expr": as_promql(e)}
             for i, (_, _, e) in enumerate(dashboard_queries())]
    assert len(rules) > 20
    (tmp_path / "queries.yaml").write_text(yaml.safe_dump({"groups": [{"name": "q", "rules": rules}]}))
    result = run([promtool, "check", "rules", str(tmp_path / "queries.yaml")])
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboards_are_provisioned_against_the_provisioned_data_source():
    provisioning = DEPLOY / "grafana" / "provisioning"
    sources = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())
    uids = {s["uid"] for s in sources["datasources"]}
    providers = yaml.safe_load((provisioning / "dashboards" / "larder.yaml").read_text())
    assert providers["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    assert {p.name for p in DASHBOARDS} == {"larder-cache.json", "larder-api.json"}
    seen_uids = set()
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        assert board["uid"] not in seen_uids
        seen_uids.add(board["uid"])
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        for panel in board["panels"]:
            pos = panel["gridPos"]
            assert pos["x"] + pos["w"] <= 24, f"{path.name}: {panel['title']} is wider than the grid"
            if panel["type"] != "row":
                assert panel["datasource"]["uid"] in uids, panel["title"]
                assert panel["targets"], panel["title"]

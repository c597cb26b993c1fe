"""The shipped Prometheus rules: valid, unit-tested alert by alert, documented, and guarded."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.config import artifacts
from tests.config.prometheus_server import binary

RUNBOOK_BASE = "https://github.com/encore-cdn/encore/blob/main/docs/runbooks/"
RECORDED = re.compile(r"\b(?:region|instance):encore_\w+:\w+\b")


def promtool(*args: str, cwd: Path | None = None) -> str:
    result = subprocess.run(
        [binary("promtool"), *args], capture_output=True, timeout=300, check=False, cwd=cwd
    )
    output = result.stdout.decode() + result.stderr.decode()
    assert result.returncode == 0, output
    return output


@pytest.mark.parametrize("path", artifacts.rule_files(), ids=lambda path: path.name)
def test_promtool_checks_every_rule_file(path: Path) -> None:
    assert "SUCCESS" in promtool("check", "rules", str(path))


def test_promtool_unit_tests_pass() -> None:
    tests = sorted(artifacts.RULE_TESTS.glob("*.yml"))
    assert tests
    output = promtool("test", "rules", *(path.name for path in tests), cwd=artifacts.RULE_TESTS)
    assert output.count("SUCCESS") == len(tests), output


def _alert_cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []
    for path in sorted(artifacts.RULE_TESTS.glob("*.yml")):
        document = yaml.safe_load(path.read_text())
        for test in document["tests"]:
            cases.extend(test.get("alert_rule_test") or [])
    return cases


def test_every_alert_is_tested_firing_and_silent() -> None:
    """Each alert fires in some unit test and is expected silent in another case (where the
    data is under its threshold, too short, or under its low-traffic guard)."""
    cases = _alert_cases()
    for rule in artifacts.alerts():
        name = rule["alert"]
        mine = [case for case in cases if case["alertname"] == name]
        assert any(case["exp_alerts"] for case in mine), f"{name}: no test where it fires"
        silent = any(not case["exp_alerts"] for case in mine) or _has_quiet_series(name)
        assert silent, f"{name}: no test where it stays silent"


def _has_quiet_series(name: str) -> bool:
    """A test whose input has series (other regions, other nodes) the alert must not name."""
    for path in sorted(artifacts.RULE_TESTS.glob("*.yml")):
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test") or []:
                if case["alertname"] != name or not case["exp_alerts"]:
                    continue
                named = {alert["exp_labels"].get("instance") for alert in case["exp_alerts"]}
                named |= {alert["exp_labels"].get("region") for alert in case["exp_alerts"]}
                series = " ".join(s["series"] for s in test["input_series"])
                if set(re.findall(r'(?:instance|region)="([^"]+)"', series)) - named:
                    return True
    return False


@pytest.mark.parametrize("rule", artifacts.alerts(), ids=lambda rule: rule["alert"])
def test_every_alert_is_named_labelled_annotated_and_has_a_runbook(rule: dict[str, Any]) -> None:
    name = rule["alert"]
    assert re.fullmatch(r"Encore(?:[A-Z][a-z0-9]+)+", name), name
    assert rule["labels"]["severity"] in ("critical", "warning")
    annotations = rule["annotations"]
    assert annotations["summary"].strip()
    assert annotations["description"].strip()
    assert annotations["runbook_url"] == f"{RUNBOOK_BASE}{name}.md"
    runbook = artifacts.RUNBOOKS / f"{name}.md"
    assert runbook.is_file(), f"no runbook {runbook}"
    text = runbook.read_text()
    assert text.startswith(f"# {name}\n"), runbook
    for heading in ("## What it means", "## First checks", "## Likely causes", "## What to do"):
        assert heading in text, f"{runbook}: no {heading!r}"
    assert "## When to escalate" in text, runbook


def test_every_runbook_belongs_to_an_alert() -> None:
    names = {rule["alert"] for rule in artifacts.alerts()}
    assert {path.stem for path in artifacts.RUNBOOKS.glob("*.md")} == names


def test_pages_are_the_fast_burns_and_a_node_down() -> None:
    critical = {
        rule["alert"] for rule in artifacts.alerts() if rule["labels"]["severity"] == "critical"
    }
    assert critical == {
        "EncoreAvailabilityBudgetFastBurn",
        "EncoreHitLatencyBudgetFastBurn",
        "EncoreEdgeDown",
    }


def test_every_ratio_alert_has_a_low_traffic_guard() -> None:
    """An alert on a recorded ratio also requires a minimum rate of traffic (`and ... :rate`)."""
    for rule in artifacts.alerts():
        expr = rule["expr"]
        ratios = re.findall(r"(?::ratio_|_ratio:)rate\w+", expr)
        if not ratios:
            continue
        guards = re.findall(r"and\s+(?:region|instance):encore_\w+:rate\w+\s*>\s*[0-9.e]+", expr)
        assert guards, f"{rule['alert']}: a ratio without a traffic guard"
        # Each `or` branch of a multi-window alert has its own guard.
        assert len(guards) >= expr.count(" or") + expr.count("\nor"), rule["alert"]


def test_burn_rate_alerts_use_the_sre_workbook_windows_and_factors() -> None:
    alerts = {rule["alert"]: rule["expr"] for rule in artifacts.alerts()}
    for slo, budget in (("Availability", "0.001"), ("HitLatency", "0.01")):
        fast = alerts[f"Encore{slo}BudgetFastBurn"]
        for window in ("1h", "5m"):
            assert f"ratio_rate{window} > (14.4 * {budget})" in fast
        for window in ("6h", "30m"):
            assert f"ratio_rate{window} > (6 * {budget})" in fast
        slow = alerts[f"Encore{slo}BudgetSlowBurn"]
        for window in ("3d", "6h"):
            assert f"ratio_rate{window} > (1 * {budget})" in slow


def test_the_hit_latency_threshold_is_a_ttfb_bucket() -> None:
    from edge.telemetry import metrics  # noqa: PLC0415

    buckets = metrics.TTFB._upper_bounds
    thresholds = {
        float(le)
        for rule in artifacts.recordings()
        for le in re.findall(r'le="([0-9.]+)"', rule["expr"])
    }
    assert thresholds == {0.025}
    assert thresholds <= set(buckets)


def test_every_recorded_series_used_is_recorded() -> None:
    recorded = {rule["record"] for rule in artifacts.recordings()}
    used = set()
    for rule in artifacts.rules():
        used |= set(RECORDED.findall(rule["expr"]))
    for query in artifacts.panel_queries():
        used |= set(RECORDED.findall(query.expr))
    assert used - recorded == set()
    # ...and every recording is used by an alert, a panel or another recording.
    assert recorded - used == set()

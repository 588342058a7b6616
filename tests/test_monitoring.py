"""monitoring/ (Prometheus rules, Grafana dashboard) checked against what the scorer exports.

A renamed metric would leave a dashboard panel empty and an alert rule silently never firing;
here every series a query names must be one `ScorerMetrics` really exposes (its exposition text,
labelled series filled in), with the labels the query groups by, and the files must point at
each other and at the compose file's scorer.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest

from services.scorer.metrics import DEFAULT_METRICS_PORT, ScorerMetrics

ROOT = Path(__file__).resolve().parent.parent
MONITORING = ROOT / "monitoring"
DASHBOARD = json.loads((MONITORING / "grafana/dashboards/fraudstream.json").read_text())
RULES = yaml.safe_load((MONITORING / "prometheus/alerts.yml").read_text())
PROMETHEUS = yaml.safe_load((MONITORING / "prometheus/prometheus.yml").read_text())
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())

JOB = "fraudstream-scorer"
PROMQL_WORDS = {
    "sum", "rate", "deriv", "histogram_quantile", "by", "and", "or", "up", "le", "job",
    "version", "partition", "reason", "humanize",
}  # fmt: skip


def exported() -> dict[str, set[str]]:
    """Series names in the scorer's exposition text, with their label names."""
    metrics = ScorerMetrics()
    metrics.set_model("v1", 1.5)
    metrics.dlq.labels(reason="decode").inc()
    metrics.lag.labels(partition="0").set(3)
    metrics.model_ignored.labels(reason="stale").inc()
    metrics.model_watcher_errors.labels(kind="broker").inc()
    metrics.batch_latency.observe(0.01)
    metrics.commit_latency.observe(0.002)
    metrics.batch_size.observe(10)
    series: dict[str, set[str]] = {}
    for line in generate_latest(metrics.registry).decode().splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})?", line)
        assert m is not None
        labels = {part.split("=")[0] for part in (m.group(2) or "").split(",") if part}
        series.setdefault(m.group(1), set()).update(labels)
    return series


def queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every dashboard target and alert rule."""
    out = [
        (f"panel {panel['title']!r}", target["expr"])
        for panel in DASHBOARD["panels"]
        for target in panel["targets"]
    ]
    out += [
        (f"rule {rule['alert']}", rule["expr"])
        for group in RULES["groups"]
        for rule in group["rules"]
    ]
    return out


def metric_names(expr: str) -> set[str]:
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_strings)
    words = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", without_ranges))
    return {w for w in words if w.startswith("fraudstream_")}


@pytest.mark.parametrize(("where", "expr"), queries())
def test_every_query_names_an_exported_metric(where: str, expr: str) -> None:
    series = exported()
    names = metric_names(expr)
    assert names or "up{" in expr, f"{where}: no scorer metric in {expr!r}"
    for name in names:
        assert name in series, f"{where}: {name} is not exported (have {sorted(series)})"
    for grouping in re.findall(r"by \(([^)]*)\)", expr):
        for label in (w.strip() for w in grouping.split(",")):
            assert any(label in series[n] for n in names), (
                f"{where}: groups by {label!r}, which none of {sorted(names)} carries"
            )


def test_the_names_checked_are_not_vacuous() -> None:
    """The parser finds the metrics the dashboard must show (the issue's six)."""
    named = set().union(*(metric_names(e) for _w, e in queries()))
    for needed in (
        "fraudstream_scorer_records_total",
        "fraudstream_scorer_consumer_lag",
        "fraudstream_scorer_alerts_total",
        "fraudstream_scorer_batch_seconds_bucket",
        "fraudstream_scorer_model_info",
        "fraudstream_scorer_dlq_total",
    ):
        assert needed in named
    assert "fraudstream_scorer_missing" not in exported()


def test_rules_cover_lag_dead_letters_and_scorer_down() -> None:
    exprs = {rule["alert"]: rule["expr"] for g in RULES["groups"] for rule in g["rules"]}
    assert any(f'up{{job="{JOB}"}} == 0' in e for e in exprs.values())
    assert any("consumer_lag" in e and "deriv" in e for e in exprs.values())
    assert any("dlq_total" in e for e in exprs.values())


def test_prometheus_scrapes_the_compose_scorer_and_loads_the_rules() -> None:
    scorer: dict[str, Any] = COMPOSE["services"]["scorer"]
    prometheus: dict[str, Any] = COMPOSE["services"]["prometheus"]
    (job,) = PROMETHEUS["scrape_configs"]
    assert job["job_name"] == JOB
    assert job["static_configs"][0]["targets"] == [f"scorer:{DEFAULT_METRICS_PORT}"]
    assert scorer["environment"]["FRAUDSTREAM_METRICS_HOST"] == "0.0.0.0"
    assert f"127.0.0.1:{DEFAULT_METRICS_PORT}:{DEFAULT_METRICS_PORT}" in scorer["ports"]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in prometheus["volumes"] if ":" in v}
    for rule_file in PROMETHEUS["rule_files"]:
        assert mounted.get(rule_file) == "./monitoring/prometheus/alerts.yml"


def test_grafana_provisions_the_dashboard_on_the_datasource_it_names() -> None:
    datasources = yaml.safe_load(
        (MONITORING / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"]
    uids = {ds["uid"] for ds in datasources}
    for panel in DASHBOARD["panels"]:
        assert panel["datasource"]["uid"] in uids, panel["title"]
    provider = yaml.safe_load(
        (MONITORING / "grafana/provisioning/dashboards/fraudstream.yml").read_text()
    )["providers"][0]
    grafana = COMPOSE["services"]["grafana"]
    assert f"./monitoring/grafana/dashboards:{provider['options']['path']}:ro" in grafana["volumes"]
    assert "http://prometheus:9090" in {ds["url"] for ds in datasources}

"""The monitoring files agree with the code: the dashboard and the alert rules name only metrics it
exports, and Prometheus scrapes every API and worker where they serve /metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from .stack import MANIFESTS, ROOT, SERVICES, compose_config

MONITORING = ROOT / "deploy" / "monitoring"
SOURCES = [*ROOT.glob("libs/*/src/**/*.py"), *ROOT.glob("services/*/src/**/*.py")]
_DEFINED = re.compile(r"\b(Counter|Gauge|Histogram|Summary)\(\s*\"([a-z_:][a-z0-9_:]*)\"")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def metrics_in_code() -> dict[str, str]:
    """Every metric the code defines, by name: its type."""
    return {name: kind for path in SOURCES for kind, name in _DEFINED.findall(path.read_text())}


def series_names(metrics: dict[str, str]) -> set[str]:
    """What a query may name: each metric, and a histogram's _bucket, _sum and _count series."""
    names = set(metrics)
    for name, kind in metrics.items():
        if kind == "Histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (not its functions, labels, keywords or variables)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings (label values, regexes)
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range selectors
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    found = re.findall(r"(?<![\w$.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", expr)
    return {name for name in found if name.lower() not in _KEYWORDS}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((MONITORING / "grafana" / "dashboards" / "fastmicro.json").read_text())
    return loaded


def dashboard_queries() -> list[str]:
    return [target["expr"] for panel in dashboard()["panels"] for target in panel.get("targets", [])]


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_the_name_reader_finds_names_and_nothing_else() -> None:
    expr = 'histogram_quantile(0.99, sum by (service, le) (rate(htp_requests_total{a="b", c=~"$x"}[$__rate_interval])))'
    assert metric_names(expr) == {"htp_requests_total"}
    assert metric_names("max by (queue) (a_gauge) > 0 and on (queue) b_total offset 5m") == {"a_gauge", "b_total"}


@pytest.mark.parametrize("source", ["dashboard", "alert rules"])
def test_every_metric_named_is_one_the_code_exports(source: str) -> None:
    exported = series_names(metrics_in_code())
    assert {"http_requests_total", "outbox_lag_seconds", "notifications_emails_total"} <= exported
    queries = dashboard_queries() if source == "dashboard" else [rule["expr"] for rule in alert_rules()]
    assert queries
    named = set().union(*(metric_names(query) for query in queries))
    assert named, queries
    assert named <= exported, named - exported


def test_the_dashboard_shows_what_an_operator_looks_at() -> None:
    named = set().union(*(metric_names(query) for query in dashboard_queries()))
    assert {
        "http_requests_total",  # requests
        "http_request_duration_seconds_bucket",  # latency
        "outbox_lag_seconds",
        "outbox_published_total",
        "consumer_messages_total",  # consumer rates
        "consumer_handler_duration_seconds_bucket",
        "consumer_queue_messages",  # dead-letter and retry depths
        "notifications_emails_total",
        "db_pool_connections_in_use",
    } <= named
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "prometheus", panel["title"]


def test_the_dashboards_data_sources_are_provisioned() -> None:
    provisioned = yaml.safe_load(
        (MONITORING / "grafana" / "provisioning" / "datasources" / "datasources.yml").read_text()
    )
    uids = {source["uid"]: source for source in provisioned["datasources"]}
    assert uids["prometheus"]["url"] == "http://prometheus:9090"
    assert uids["jaeger"]["type"] == "jaeger"


def test_the_alerts_are_those_operations_calls_for() -> None:
    named = {rule["alert"]: metric_names(rule["expr"]) for rule in alert_rules()}
    assert named == {
        "OutboxLagging": {"outbox_lag_seconds"},
        "OutboxPublishFailing": {"outbox_publish_failures_total"},
        "MessagesDeadLettered": {"consumer_messages_total"},
        "DeadLetterQueueNotEmpty": {"consumer_queue_messages"},
        "EmailsFailing": {"notifications_emails_total"},
    }
    operations = (ROOT / "docs" / "operations.md").read_text()
    assert all(f"`{alert}`" in operations for alert in named), "each alert is explained in operations.md"


def test_prometheus_scrapes_every_api_and_worker_where_they_serve(tmp_path: Path) -> None:
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = {name: {t for static in job["static_configs"] for t in static["targets"]} for name, job in jobs.items()}
    assert targets["api"] == {f"{name}:{port}" for name, port in SERVICES.items()}
    compose = compose_config(ROOT / ".env.example", tmp_path)["services"]
    for name in MANIFESTS:
        environment = compose[f"{name}-worker"]["environment"]
        port = environment.get("WORKER_METRICS_PORT") or int(environment["HTTP_PORT"]) + 1000  # the setting's default
        assert f"{name}-worker:{port}" in targets["worker"]
    assert len(targets["worker"]) == len(MANIFESTS)
    for job in ("api", "worker"):  # the token the services require, written by compose before Prometheus starts
        assert jobs[job]["authorization"]["credentials_file"] == "/prometheus/metrics-token"
    assert "/prometheus/metrics-token" in " ".join(compose["prometheus"]["command"])
    mounted = {volume["target"]: volume.get("source", "") for volume in compose["prometheus"]["volumes"]}
    assert Path(mounted["/etc/prometheus/prometheus.yml"]) == MONITORING / "prometheus.yml"
    assert Path(mounted["/etc/prometheus/alerts.yml"]) == MONITORING / "alerts.yml"
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]


def test_the_services_send_their_traces_to_the_stacks_jaeger(tmp_path: Path) -> None:
    compose = compose_config(ROOT / ".env.example", tmp_path)["services"]
    for name in MANIFESTS:
        for container in (name, f"{name}-worker"):
            assert compose[container]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318"
    assert "4318" in {str(port["target"]) for port in compose["jaeger"]["ports"]}


def test_the_kubernetes_alert_rules_are_the_compose_ones() -> None:
    documents = list(yaml.safe_load_all((ROOT / "deploy" / "k8s" / "base" / "monitoring.yaml").read_text()))
    [rule] = [document for document in documents if document["kind"] == "PrometheusRule"]
    assert rule["spec"]["groups"] == yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"]
    monitors = {document["metadata"]["name"]: document for document in documents if document["kind"] == "PodMonitor"}
    assert {monitor["spec"]["podMetricsEndpoints"][0]["port"] for monitor in monitors.values()} == {"http", "metrics"}

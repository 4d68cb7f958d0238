"""The SRE kit in deploy/: Prometheus config and rules pass promtool, every alert
fires on one series and stays silent on another, manifests pass their schemas,
and every query names a metric a worker exposes."""

from __future__ import annotations

import importlib.resources
import json
import shutil
import subprocess
import tomllib
import urllib.parse
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from streams.metrics import DeliveryMetrics, Metrics
from tests.deploy import (
    DASHBOARD,
    DEPLOY,
    PROMETHEUS,
    RULES,
    RUNBOOK,
    alerts,
    dashboard_queries,
    exposed,
    names_in,
    promtool,
    recorded,
    rule_queries,
)

K8S = DEPLOY / "k8s"
K8S_VERSION = "1.30.0"


def worker_names() -> set[str]:
    """What the pipeline's workers and the delivery worker expose."""
    pipeline = generate_latest(Metrics(CollectorRegistry()).registry).decode()
    delivery = generate_latest(DeliveryMetrics(CollectorRegistry()).registry).decode()
    return exposed(pipeline) | exposed(delivery)


def test_prometheus_config_passes_promtool() -> None:
    result = promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout


def test_compose_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    """The compose copy differs only in its target; it loads the same rules."""
    shutil.copy(DEPLOY / "compose" / "prometheus.yml", tmp_path / "prometheus.yml")
    shutil.copy(RULES, tmp_path / "rules.yml")
    result = promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_pass_promtool() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(recorded()) + len(alerts())} rules found" in result.stdout


def test_every_alert_fires_on_one_series_and_stays_silent_on_another() -> None:
    result = promtool("test", "rules", str(PROMETHEUS / "rules.test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    tested = yaml.safe_load((PROMETHEUS / "rules.test.yml").read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tested
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    assert fired == {a["alert"] for a in alerts()}


def test_a_broken_alert_fails_its_promtool_test(tmp_path: Path) -> None:
    """The promtool tests can fail: a worker-down alert that never fires is caught."""
    broken = RULES.read_text().replace('up{job="passerelle"} == 0', 'up{job="passerelle"} < 0')
    assert broken != RULES.read_text()
    (tmp_path / "rules.yml").write_text(broken)
    shutil.copy(PROMETHEUS / "rules.test.yml", tmp_path / "rules.test.yml")
    result = promtool("test", "rules", str(tmp_path / "rules.test.yml"))
    assert result.returncode != 0
    assert "PasserelleWorkerDown" in result.stdout + result.stderr


def test_every_alert_has_a_summary_a_severity_and_a_runbook_section() -> None:
    runbook = RUNBOOK.read_text()
    for alert in alerts():
        name = alert["alert"]
        assert alert["labels"]["severity"] in ("page", "ticket"), name
        assert alert["annotations"]["summary"], name
        runbook_url = alert["annotations"]["runbook_url"]
        assert runbook_url == "{{ $externalLabels.runbook_base }}#" + name.lower(), name
        assert f"\n### {name}\n" in runbook, f"no runbook section for {name}"


def test_the_runbook_base_is_an_absolute_url_to_the_runbook() -> None:
    """Alerts link to `runbook_base`, an external label every Prometheus config sets."""
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    base = urllib.parse.urlsplit(config["global"]["external_labels"]["runbook_base"])
    assert base.scheme == "https" and base.netloc, base
    assert base.path.endswith("/docs/runbook.md") and not base.fragment, base


def test_every_query_names_only_metrics_a_worker_exposes_or_rules_record() -> None:
    known = worker_names() | recorded()
    for query in dashboard_queries() + rule_queries():
        unknown = names_in(query) - known
        assert not unknown, f"{query!r} names {sorted(unknown)}"


def test_the_dashboard_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    assert all(p["targets"] and p["datasource"]["type"] == "prometheus" for p in panels)
    titles = " ".join(p["title"].lower() for p in panels)
    for topic in ("events in", "decisions", "latency", "lag", "dlq", "recovery"):
        assert topic in titles, topic


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_k8s_manifests_pass_the_kubernetes_schemas() -> None:
    validated = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in _documents(path):
            if doc["apiVersion"].startswith(("monitoring.coreos.com/", "kustomize.config")):
                continue  # CRDs: no published schema on PyPI; checked below
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
            validated.append(doc["kind"])
    assert sorted(validated) == ["ConfigMap", "Namespace", "Service", "StatefulSet"]


def test_a_wrong_manifest_fails_the_kubernetes_schemas() -> None:
    (statefulset,) = _documents(K8S / "statefulset.yaml")
    statefulset["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(statefulset, K8S_VERSION, strict=True)


def test_k8s_pieces_fit_together() -> None:
    """Kustomize lists every file; probes, monitor and service find the worker's port."""
    listed = _documents(K8S / "kustomization.yaml")[0]["resources"]
    assert sorted(listed) == sorted(p.name for p in K8S.glob("*.yaml") if p.stem != "kustomization")
    (statefulset,) = _documents(K8S / "statefulset.yaml")
    pod = statefulset["spec"]["template"]
    labels = pod["metadata"]["labels"]
    (container,) = pod["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"name": "metrics", "containerPort": 6066} in container["ports"]
    (monitor,) = _documents(K8S / "podmonitor.yaml")
    assert monitor["spec"]["selector"]["matchLabels"] == labels
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    (service,) = _documents(K8S / "service.yaml")
    assert service["spec"]["selector"] == labels
    (config,) = _documents(K8S / "configmap.yaml")
    assert config["data"]["PASSERELLE_WEB_HOST"] == "0.0.0.0"
    assert not any("PASSWORD" in k or "HASH_KEY" in k for k in config["data"]), (
        "secrets go in a Secret"
    )


def test_every_secret_the_worker_reads_is_generated_from_an_uncommitted_file() -> None:
    """Each Secret key the StatefulSet references is made by the kustomization from a file
    of deploy/k8s/secrets/, which git ignores (only its README is committed); the image
    is tagged by the kustomization with the project's version, never `latest`."""
    kustomization = _documents(K8S / "kustomization.yaml")[0]
    generated = {
        (g["name"], f.split("=", 1)[0]): f.split("=", 1)[1]
        for g in kustomization["secretGenerator"]
        for f in g["files"]
    }
    (statefulset,) = _documents(K8S / "statefulset.yaml")
    pod = statefulset["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    wanted = {
        (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
        for e in container["env"]
        if "valueFrom" in e
    }
    wanted |= {
        (v["secret"]["secretName"], item["key"])
        for v in pod["volumes"]
        if "secret" in v
        for item in v["secret"].get("items", [{"key": "ca.crt"}])
    }
    assert len(wanted) == 5 and wanted == set(generated)
    assert all(path.startswith("secrets/") for path in generated.values())
    ignored = subprocess.run(
        ["git", "check-ignore", *(str(K8S / p) for p in generated.values())],
        capture_output=True,
        text=True,
        cwd=K8S,
    )
    assert len(ignored.stdout.split()) == len(generated), "a secret's file could be committed"
    version = tomllib.loads((K8S.parents[1] / "pyproject.toml").read_text())["project"]["version"]
    assert container["image"] == "passerelle"
    assert kustomization["images"] == [{"name": "passerelle", "newTag": version}]


def test_the_prometheus_rule_is_rules_yml_wrapped() -> None:
    """deploy/k8s/prometheusrule.yaml is generated from rules.yml (`make deploy-rules`)."""
    (rule,) = _documents(K8S / "prometheusrule.yaml")
    assert rule["kind"] == "PrometheusRule"
    assert rule["spec"] == yaml.safe_load(RULES.read_text())


def _compose_schema() -> dict[str, Any]:
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    schema: dict[str, Any] = json.loads(vendor.joinpath("compose-spec.json").read_text())
    return schema


def test_compose_passes_the_compose_specification() -> None:
    compose = _documents(DEPLOY / "compose" / "compose.yaml")[0]
    jsonschema.Draft7Validator(_compose_schema()).validate(compose)
    assert set(compose["services"]) == {"kafka", "topics", "worker", "prometheus", "grafana"}
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / "compose" / source).exists(), source


def test_a_wrong_compose_file_fails_the_compose_specification() -> None:
    compose = _documents(DEPLOY / "compose" / "compose.yaml")[0]
    compose["services"]["worker"]["restart_policy"] = "always"  # not a service key
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(_compose_schema()).validate(compose)

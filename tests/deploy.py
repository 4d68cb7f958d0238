"""What the deploy/ kit refers to, read from its files: metric names, alerts, promtool."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
RULES = PROMETHEUS / "rules.yml"
DASHBOARD = DEPLOY / "grafana" / "passerelle.json"
RUNBOOK = REPO / "docs" / "runbook.md"

# A metric of ours (passerelle_…) or a recording rule (passerelle:…).
_OURS = re.compile(r"passerelle[_:][A-Za-z0-9_:]*")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run promtool; a machine without it fails the test with the fix."""
    tool = shutil.which("promtool")
    assert tool, "promtool not found: `make prometheus` installs Debian's prometheus package"
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=120)


def rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load(RULES.read_text())["groups"]
    return groups


def alerts() -> list[dict[str, Any]]:
    return [r for g in rule_groups() for r in g["rules"] if "alert" in r]


def recorded() -> set[str]:
    return {r["record"] for g in rule_groups() for r in g["rules"] if "record" in r}


def dashboard_queries() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [t["expr"] for p in panels for t in p["targets"]]


def rule_queries() -> list[str]:
    return [r["expr"] for g in rule_groups() for r in g["rules"]]


def names_in(query: str) -> set[str]:
    """The metrics and recording rules of ours that a PromQL query names."""
    return set(_OURS.findall(query))


def exposed(metrics_text: str) -> set[str]:
    """Every series name a /metrics page can carry, children or not yet."""
    names: set[str] = set()
    for family in text_string_to_metric_families(metrics_text):
        if family.type == "counter":
            names |= {f"{family.name}_total", f"{family.name}_created"}
        elif family.type == "histogram":
            names |= {f"{family.name}_{s}" for s in ("bucket", "count", "sum", "created")}
        else:
            names.add(family.name)
        names |= {s.name for s in family.samples}
    return names

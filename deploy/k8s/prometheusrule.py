"""Write prometheusrule.yaml: deploy/prometheus/rules.yml wrapped for the Prometheus Operator.

Run `make deploy-rules` after editing rules.yml; a test fails while the two differ.
"""

from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
RULES = HERE.parent / "prometheus" / "rules.yml"
TARGET = HERE / "prometheusrule.yaml"
HEADER = "# Generated from deploy/prometheus/rules.yml by `make deploy-rules`; edit that file.\n"


def render() -> str:
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "passerelle",
            "labels": {"app.kubernetes.io/name": "passerelle-worker"},
        },
        "spec": yaml.safe_load(RULES.read_text()),
    }
    return HEADER + yaml.safe_dump(rule, sort_keys=False, width=100, allow_unicode=True)


if __name__ == "__main__":
    TARGET.write_text(render())

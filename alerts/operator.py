"""The rule files as Prometheus Operator ``PrometheusRule`` resources (monitoring.coreos.com/v1).

The same groups as ``alerts build`` writes to recording.yaml and alerts.yaml, one resource per
file, so a cluster running kube-prometheus-stack loads them through its rule selector
(``--label release=kube-prometheus-stack`` or whatever ``ruleSelector`` matches).
"""

from __future__ import annotations

from typing import Any

import yaml

from alerts.build import ALERTS_FILE, HEADER, RECORDING_FILE, dump

OPERATOR_FILE = "prometheusrules.yaml"
_NAMES = {RECORDING_FILE: "carekpi-recording", ALERTS_FILE: "carekpi-alerts"}


def resources(files: dict[str, str], *, namespace: str | None = None,
              labels: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """One PrometheusRule per rule file of ``alerts.build.build_files``."""
    result = []
    for name in (RECORDING_FILE, ALERTS_FILE):
        metadata: dict[str, Any] = {
            "name": _NAMES[name],
            "labels": {"app.kubernetes.io/name": "carekpi",
                       "app.kubernetes.io/component": "rules", **(labels or {})},
        }
        if namespace:
            metadata["namespace"] = namespace
        groups = yaml.safe_load(files[name])["groups"]
        result.append({"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
                       "metadata": metadata, "spec": {"groups": groups}})
    return result


def build_file(files: dict[str, str], *, namespace: str | None = None,
               labels: dict[str, str] | None = None) -> dict[str, str]:
    """``{prometheusrules.yaml: multi-document YAML}``."""
    documents = resources(files, namespace=namespace, labels=labels)
    text = "---\n".join(dump(document)[len(HEADER):] for document in documents)
    return {OPERATOR_FILE: HEADER + text}

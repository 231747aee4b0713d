"""Deployment artifacts operators expect: PrometheusRule, dashboard ConfigMaps, the exporter's
Deployment/Service/ServiceMonitor and a hardened systemd unit, each validated by the tool that
the platform itself would use (kubernetes-validate for core kinds, the Prometheus Operator's
CRD schemas for its kinds, promtool for the rules inside, systemd-analyze for the unit)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner

from alerts import build as alerts_build
from alerts import operator
from collectors import deploy
from dashboards import build as dashboards_build
from dashboards import configmap
from kpis.cli import main
from kpis.errors import CareKPIError
from kpis.names import resource_labels
from kpis.sharding import Shard

SCHEMAS = Path(__file__).parent / "schemas"
K8S_VERSION = kubernetes_validate.utils.latest_version()
CONFIG_TEXT = """\
version: 1
sources:
  scheduling:
    url: ${file:/etc/carekpi/secrets/scheduling-url}
  contact:
    url: ${env:CONTACT_URL}
entities:
  appointments:
    source: scheduling
    table: appointment
    fields: {id: id, clinic: site, start: starts_at, status: state}
"""


def validate_crd(document: dict, name: str) -> None:
    """Against the operator's CRD schema (its Go-syntax patterns, such as ``^(?i)...``, are not
    all Python regexes, so the schema itself is not meta-validated)."""
    schema = json.loads((SCHEMAS / f"{name}_v1.json").read_text())
    jsonschema.Draft7Validator(schema).validate(document)


def validate_core(document: dict) -> None:
    kubernetes_validate.validate(document, K8S_VERSION, strict=True)


def test_prometheus_rules_match_the_operator_schema_and_pass_promtool(tmp_path):
    files = alerts_build.build_files()
    documents = operator.resources(files, namespace="monitoring",
                                   labels=resource_labels(("release=kps",)))
    assert [d["metadata"]["name"] for d in documents] == ["carekpi-recording", "carekpi-alerts"]
    for document in documents:
        validate_crd(document, "prometheusrule")
        assert document["metadata"]["labels"]["release"] == "kps"
    # the rules inside are exactly the rule files, and promtool accepts them
    for document, name in zip(documents, (alerts_build.RECORDING_FILE,
                                          alerts_build.ALERTS_FILE), strict=True):
        assert document["spec"]["groups"] == yaml.safe_load(files[name])["groups"]
    text = operator.build_file(files)[operator.OPERATOR_FILE]
    assert [d["kind"] for d in yaml.safe_load_all(text)] == ["PrometheusRule"] * 2


@pytest.mark.prometheus
def test_rules_inside_the_prometheus_rules_pass_promtool(tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus)")
    for document in operator.resources(alerts_build.build_files()):
        path = tmp_path / f"{document['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump(document["spec"]))
        done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                              text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr


def test_a_malformed_label_is_one_line():
    with pytest.raises(CareKPIError, match="expected KEY=VALUE"):
        resource_labels(("release",))


def test_dashboard_configmaps_are_valid_and_labelled_for_the_sidecar():
    files = dashboards_build.build_files()
    documents = configmap.resources(files, namespace="monitoring")
    assert len(documents) == len(files)
    for document in documents:
        validate_core(document)
        assert document["metadata"]["labels"][configmap.SIDECAR_LABEL] == "1"
        (name, text), = document["data"].items()
        assert name.endswith(".json")
        assert json.loads(text)["uid"] == document["metadata"]["name"]
        assert len(text.encode()) < 1024 * 1024  # a ConfigMap holds at most 1 MiB


def test_exporter_manifests_are_valid_hardened_and_read_the_url_from_a_secret():
    raw = yaml.safe_load(CONFIG_TEXT)
    documents = deploy.kubernetes(CONFIG_TEXT, raw, "carekpi.yaml", image="carekpi:0.1.0",
                                  namespace="carekpi", monitor_labels={"release": "kps"})
    kinds = [d["kind"] for d in documents]
    assert kinds == ["ConfigMap", "Deployment", "Service", "ServiceMonitor"]
    for document in documents:
        if document["kind"] == "ServiceMonitor":
            validate_crd(document, "servicemonitor")
        else:
            validate_core(document)
    deployment = documents[1]
    pod = deployment["spec"]["template"]["spec"]
    container, = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["livenessProbe"]["httpGet"]["path"] == "/-/healthy"
    assert container["readinessProbe"]["httpGet"]["path"] == "/-/healthy"
    assert container["resources"]["limits"]["memory"]
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    secret_volume, = (v for v in pod["volumes"] if "secret" in v)
    assert secret_volume["secret"]["secretName"] == deploy.SECRET_NAME
    assert documents[0]["data"]["carekpi.yaml"] == CONFIG_TEXT
    assert "kubectl create secret generic carekpi-db --namespace=carekpi" in deploy.secret_command(
        raw, "carekpi.yaml", "carekpi")


def test_one_deployment_and_service_per_shard_one_service_monitor():
    raw = yaml.safe_load(CONFIG_TEXT)
    documents = deploy.kubernetes(CONFIG_TEXT, raw, "c.yaml", image="carekpi:0.1.0", shards=3)
    deployments = [d for d in documents if d["kind"] == "Deployment"]
    assert [d["metadata"]["name"] for d in deployments] == [
        "carekpi-shard-1-of-3", "carekpi-shard-2-of-3", "carekpi-shard-3-of-3"]
    assert [d["spec"]["template"]["spec"]["containers"][0]["args"][-1]
            for d in deployments] == ["1/3", "2/3", "3/3"]
    monitor, = (d for d in documents if d["kind"] == "ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    services = [d for d in documents if d["kind"] == "Service"]
    assert len(services) == 3
    assert all(selector.items() <= s["metadata"]["labels"].items() for s in services)
    for d in documents:
        if d["kind"] in ("Deployment", "Service"):
            validate_core(d)


@pytest.mark.parametrize("url", [
    "postgresql+psycopg://carekpi:s3cret@db/scheduling",
    "postgresql+psycopg://carekpi@db/scheduling?password=s3cret",
    "postgresql+psycopg://carekpi@db/scheduling?sslmode=require&sslpassword=s3cret",
    "mysql+pymysql://carekpi@db/scheduling?passwd=s3cret",
    "postgresql+psycopg://carekpi:p@ss@s3cret@db/scheduling",  # an unencoded @
])
def test_a_literal_password_never_lands_in_a_configmap_or_a_unit(url):
    text = CONFIG_TEXT.replace("${env:CONTACT_URL}", url)
    raw = yaml.safe_load(text)
    with pytest.raises(CareKPIError) as caught:
        deploy.kubernetes(text, raw, "carekpi.yaml", image="carekpi:0.1.0")
    message = str(caught.value)
    assert "sources.contact.url" in message and "s3cret" not in message
    assert "${file:/etc/carekpi/secrets/contact-url}" in message  # where the Secret is mounted
    with pytest.raises(CareKPIError) as caught:
        deploy.systemd_unit(raw, "carekpi.yaml", executable="/usr/bin/carekpi",
                            config="/etc/carekpi/carekpi.yaml")
    # The hint names the file the unit's LoadCredential= makes, not the Kubernetes mount.
    assert "${file:/run/credentials/carekpi.service/contact-url}" in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_shard_spec_parsing():
    assert Shard.parse("2/3") == Shard(2, 3)
    for bad in ("0/3", "4/3", "1/0", "two/3", ""):
        with pytest.raises(CareKPIError, match="--shard"):
            Shard.parse(bad)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_unit_is_hardened_and_verifies(tmp_path):
    raw = yaml.safe_load(CONFIG_TEXT)
    executable = str(Path(sys.executable).with_name("carekpi"))
    unit = deploy.systemd_unit(raw, "carekpi.yaml", executable=executable,
                               config="/etc/carekpi/carekpi.yaml")
    for setting in ("NoNewPrivileges=yes", "ProtectSystem=strict", "User=carekpi",
                    "LoadCredential=scheduling-url:/etc/carekpi/credentials/scheduling-url",
                    "LoadCredential=contact-url:/etc/carekpi/credentials/contact-url"):
        assert setting in unit.splitlines()
    path = tmp_path / "carekpi.service"
    path.write_text(unit)
    done = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr


def test_the_validators_used_here_do_reject_a_broken_manifest():
    raw = yaml.safe_load(CONFIG_TEXT)
    documents = deploy.kubernetes(CONFIG_TEXT, raw, "c.yaml", image="carekpi:0.1.0")
    monitor = documents[-1]
    monitor["spec"]["endpoints"] = "metrics"
    with pytest.raises(jsonschema.ValidationError):
        validate_crd(monitor, "servicemonitor")
    deployment = documents[1]
    deployment["spec"]["replicas"] = "one"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_core(deployment)


@pytest.mark.parametrize("name", ["de mo", "emr%i", "a/b"])
def test_a_source_name_that_cannot_name_a_secret_is_refused(name):
    raw = yaml.safe_load(CONFIG_TEXT)
    raw["sources"] = {name: {"url": "${file:/etc/carekpi/secrets/x-url}"}}
    for make in (lambda: deploy.kubernetes(CONFIG_TEXT, raw, "carekpi.yaml", image="c:1"),
                 lambda: deploy.systemd_unit(raw, "carekpi.yaml", executable="/usr/bin/carekpi",
                                             config="/etc/carekpi/carekpi.yaml")):
        with pytest.raises(CareKPIError, match=f"sources.{re.escape(name)}: to deploy"):
            make()


def test_unit_paths_with_a_space_or_a_percent_stay_one_word():
    raw = yaml.safe_load(CONFIG_TEXT)
    unit = deploy.systemd_unit(raw, "carekpi.yaml", executable="/opt/care kpi/bin/carekpi",
                               config="/etc/carekpi/my%h config.yaml")
    assert ('ExecStart="/opt/care kpi/bin/carekpi" serve --config '
            '"/etc/carekpi/my%%h config.yaml" --port') in unit
    with pytest.raises(CareKPIError, match="--user"):
        deploy.systemd_unit(raw, "carekpi.yaml", executable="/usr/bin/carekpi",
                            config="/etc/carekpi/carekpi.yaml", user="a b")


def test_a_secret_read_from_where_the_deployment_puts_none_is_warned_about(tmp_path):
    config = tmp_path / "carekpi.yaml"
    config.write_text(CONFIG_TEXT.replace("${env:CONTACT_URL}", "${file:/run/secrets/contact}"))
    result = CliRunner().invoke(main, ["deploy", "kubernetes", "--config", str(config),
                                       "--out", str(tmp_path / "k8s"), "--image", "c:1"])
    assert result.exit_code == 0, result.output
    assert (f"carekpi: warning: {config}: sources.contact.url reads "
            "${file:/run/secrets/contact}, outside /etc/carekpi/secrets") in result.stderr
    assert "sources.scheduling" not in result.stderr  # read from the mount: nothing to say

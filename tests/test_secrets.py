"""Secrets are never echoed: an error about a value that came from ${file:...} or ${env:...}
names the reference, never the content (URL, time zone, any key; no traceback); `config show`
prints the reference; every credential form SQLAlchemy and the drivers accept is masked in
every output (config show, config validate, collect, checks run, demo, debug logs)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from kpis import config as config_module
from kpis.errors import ConfigError
from kpis.secrets import mask_url

CANARY = "Zq7CanarySecret"
CARE = [sys.executable, "-m", "kpis"]
URL_FORMS = {  # every way a driver takes a password, each holding the canary
    "userinfo": f"postgresql+psycopg://carekpi:{CANARY}@127.0.0.1:1/x",
    "unencoded @": f"postgresql+psycopg://carekpi:{CANARY}@x@127.0.0.1:1/x",
    "unencoded ? and /": f"mysql+pymysql://carekpi:a/{CANARY}?b@127.0.0.1:1/x",
    "password=": f"postgresql+psycopg://carekpi@127.0.0.1:1/x?password={CANARY}",
    "passwd=": f"mysql+pymysql://carekpi@127.0.0.1:1/x?charset=utf8mb4&passwd={CANARY}",
    "pwd=": f"mysql+pymysql://carekpi@127.0.0.1:1/x?PWD={CANARY}",
    "sslpassword=": f"postgresql+psycopg://carekpi@127.0.0.1:1/x?sslpassword={CANARY}&a=b",
    "ssl_key=": f"mysql+pymysql://carekpi@127.0.0.1:1/x?ssl_key=/keys/{CANARY}.pem",
    "libpq keywords": f"host=127.0.0.1 user=carekpi password={CANARY} dbname=x",
    "libpq quoted value": f"host=127.0.0.1 user=carekpi password = 'a b {CANARY}' dbname=x",
    "percent-encoded name": f"mysql+pymysql://carekpi@127.0.0.1:1/x?%70assword={CANARY}",
    "; in the value": f"postgresql+psycopg://carekpi@127.0.0.1:1/x?password=abc;{CANARY}",
    "space in the value": f"postgresql+psycopg://carekpi@127.0.0.1:1/x?password=a {CANARY}",
}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CARE, *args], capture_output=True, text=True, timeout=180)


@pytest.mark.parametrize("url", URL_FORMS.values(), ids=URL_FORMS.keys())
def test_every_credential_form_is_masked(url: str) -> None:
    masked = mask_url(url)
    assert CANARY not in masked and "***" in masked
    assert "carekpi" in masked  # the user and host stay readable


@pytest.mark.parametrize("url", [u for u in URL_FORMS.values() if "://" in u],
                         ids=[k for k, u in URL_FORMS.items() if "://" in u])
def test_the_password_the_driver_would_be_given_is_masked(url: str) -> None:
    """Masked as SQLAlchemy reads the URL, not as it looks: the driver's own arguments."""
    parsed = sa.engine.make_url(url)
    _, kwargs = parsed.get_dialect()().create_connect_args(parsed)
    flat = [(k, v) for k, v in kwargs.items() if not isinstance(v, dict)]
    flat += [(f"{k}_{k2}", v2) for k, v in kwargs.items() if isinstance(v, dict)
             for k2, v2 in v.items()]  # PyMySQL's ssl={"key": ...}
    secrets = [str(v) for k, v in flat if v and re.search("(?i)pass|pwd|key", k)]
    assert secrets and all(secret not in mask_url(url) for secret in secrets)


def write(tmp_path: Path, data: dict, name: str = "carekpi.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def base(url: str) -> dict:
    return {"version": 1, "sources": {"db": {"url": url, "connect_timeout": "1s"}},
            "entities": {"appointments": {"source": "db", "table": "appt", "fields": {
                "id": "id", "clinic": "site", "start": "start_at", "status": "st"}}}}


SHADOW = f"root:$6${CANARY}$x:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n"


@pytest.mark.parametrize(("key", "value"), [
    (("sources", "db", "url"), SHADOW),
    (("sources", "db", "url"), f"not a url {CANARY}"),
    (("entities", "appointments", "timezone"), SHADOW),
    (("entities", "appointments", "timezone"), CANARY * 30),  # a name too long for the OS
    (("sources", "db", "query_timeout"), CANARY),
    (("entities", "appointments", "fields", "clinic"), {"sql": f"pg_sleep({CANARY}())"}),
])
@pytest.mark.parametrize("kind", ["file", "env"])
def test_an_error_names_the_reference_not_the_content(key: tuple[str, ...], value, kind: str,
                                                      tmp_path: Path, monkeypatch) -> None:
    data = base("sqlite:///x.db")
    secret = value["sql"] if isinstance(value, dict) else value
    (tmp_path / "secret").write_text(secret)
    monkeypatch.setenv("CAREKPI_TEST_SECRET", secret)
    reference = "${file:secret}" if kind == "file" else "${env:CAREKPI_TEST_SECRET}"
    node = data
    for part in key[:-1]:
        node = node[part]
    node[key[-1]] = {"sql": reference} if isinstance(value, dict) else reference
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as caught:
        config_module.load(path)
    message = str(caught.value)
    assert CANARY not in message and "root:" not in message
    assert reference in message and len(message.splitlines()) == 1
    assert caught.value.key.startswith(".".join(key))


def test_the_cli_names_the_reference_without_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "shadow").write_text(SHADOW)
    data = base("sqlite:///x.db")
    data["entities"]["appointments"]["timezone"] = "${file:shadow}"
    data["sources"]["db"]["url"] = "${file:shadow}"
    path = write(tmp_path, data)
    for command in (["config", "validate"], ["config", "show"], ["collect", "--once"]):
        result = run(*command, "--config", str(path))
        assert result.returncode == 2, result
        assert result.stderr == (f"carekpi: {path}: sources.db.url: not a SQLAlchemy database "
                                 "URL (the value of ${file:shadow}, not shown)\n")
        assert CANARY not in result.stdout + result.stderr
    data["sources"]["db"]["url"] = "sqlite:///x.db"
    data["entities"]["appointments"]["timezone"] = "${env:CAREKPI_TEST_TZ}"
    path = write(tmp_path, data)
    result = subprocess.run([*CARE, "config", "validate", "--offline", "--config", str(path)],
                            capture_output=True, text=True, timeout=120,
                            env={**__import__("os").environ, "CAREKPI_TEST_TZ": CANARY * 30})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr == (f"carekpi: {path}: entities.appointments.timezone: unknown time "
                             "zone (the value of ${env:CAREKPI_TEST_TZ}, not shown)\n")


def test_config_show_prints_the_reference(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CAREKPI_TEST_URL", URL_FORMS["password="])
    (tmp_path / "pw").write_text(CANARY)
    data = base("${env:CAREKPI_TEST_URL}")
    data["sources"]["other"] = {"url": "postgresql+psycopg://carekpi:${file:pw}@db/x"}
    shown = yaml.safe_dump(config_module.masked(config_module.load(write(tmp_path, data))))
    assert CANARY not in shown
    again = yaml.safe_load(shown)
    assert again["sources"]["db"]["url"] == "${env:CAREKPI_TEST_URL}"
    assert again["sources"]["other"]["url"] == "postgresql+psycopg://carekpi:${file:pw}@db/x"


@pytest.mark.slow
def test_no_command_prints_a_canary_password_in_any_url_form(tmp_path: Path) -> None:
    """One source per URL form (unreachable), one entity on each: config show, validate,
    collect (debug logs), checks run and demo print the hosts, never the canary."""
    forms = {name: url for name, url in URL_FORMS.items() if "://" in url}
    entities = ("appointments", "messages", "calls", "follow_ups", "complaints", "surveys",
                "survey_invitations", "appointments")
    data: dict = {"version": 1, "sources": {}, "entities": {}}
    for i, (entity, url) in enumerate(zip(entities, forms.values(), strict=False)):
        data["sources"][f"s{i}"] = {"url": url, "connect_timeout": "1s"}
        data["entities"].setdefault(entity, {"source": f"s{i}", "table": "t",
                                             "fields": {"id": "id", "clinic": "site"}})
    path = str(write(tmp_path, data))
    outputs = [run("config", "show", "--config", path),
               run("config", "validate", "--config", path),
               run("collect", "--once", "--config", path, "--log-level", "debug"),
               run("checks", "run", "--config", path, "--format", "json")]
    outputs += [run("demo", "--seed-only", "--db", url) for url in
                (URL_FORMS["unencoded @"], URL_FORMS["password="])]
    everything = "\n".join(r.stdout + r.stderr for r in outputs)
    assert CANARY not in everything
    assert "Traceback" not in everything
    assert "carekpi:***@" in everything and "password=***" in everything

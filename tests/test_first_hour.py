"""A newcomer's first hour, between the README and a working install: each paper cut of issue 19
has a test here that would have caught it (the README's own commands and links are tested in
test_readme.py and test_readme_commands.py)."""

from __future__ import annotations

import os
import re
import socket
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from click.testing import CliRunner

from kpis import catalog
from kpis.cli import main
from kpis.config import parse
from kpis.demo import config_yaml
from kpis.demo.database import create, is_missing
from kpis.errors import CareKPIError, ConfigError
from tests.cli_reference import README
from tests.conftest import SERVER_URLS, server_or_skip

CONFIG = {
    "version": 1,
    "sources": {"main": {"url": "sqlite:///clinic.db"}},
    "entities": {"appointments": {"source": "main", "table": "appt",
                                  "fields": {"id": "id", "clinic": "site", "start": "slot"}}},
}


def _error(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        parse(data, "carekpi.yaml")
    return str(caught.value)


# ---------------------------------------------------------------- references

def test_every_kpi_carries_its_own_reference() -> None:
    for kpi in catalog.load():
        assert len(kpi.reference) > 20, kpi.id
        assert "KPIS.md" not in kpi.reference + kpi.definition, kpi.id
    cited = " ".join(k.reference for k in catalog.load())
    for source in ("IHI", "HCAHPS", "CMS", "MGMA", "ICMI", "FHIR Appointment.status", "Kahn"):
        assert source in cited, source


def test_kpis_show_is_self_contained() -> None:
    shown = CliRunner().invoke(main, ["kpis", "show", "A1"])
    assert shown.exit_code == 0, shown.output
    assert "KPIS.md" not in shown.output
    assert "MGMA" in shown.output and "FHIR Appointment.status" in shown.output
    assert "ratio <= 0.1" in shown.output


# ---------------------------------------------------------------- consistency

def test_kpis_list_has_a_header_and_targets_as_durations() -> None:
    listed = CliRunner().invoke(main, ["kpis", "list"])
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert lines[0].split() == ["ID", "KEY", "KIND", "ENTITY", "TARGET"]
    lead_time = next(line for line in lines if line.split()[1] == "lead_time")
    assert lead_time.split()[-3:] == ["p50", "<=", "7d"]
    assert "604800" not in listed.output


def test_target_text_reads_like_the_config() -> None:
    assert catalog.get("A4").target_text == "p90 <= 30m"
    assert catalog.get("A1").target_text == "ratio <= 0.1"
    assert catalog.get("A7").target_text == "trend only"


def test_the_demo_config_maps_every_code_the_demo_writes() -> None:
    config = parse(yaml.safe_load(config_yaml("sqlite:///demo.db")), "demo.yaml")
    status = config.entities["appointments"].codes["status"]
    assert "RSC" in status["cancelled"]


# ---------------------------------------------------------------- messages

def test_an_unknown_key_gets_did_you_mean() -> None:
    data = dict(CONFIG)
    data["entites"] = data.pop("entities")
    assert _error(data) == "carekpi.yaml: entites: unknown key; did you mean 'entities'?"


def test_an_unknown_key_with_no_near_miss_lists_the_keys() -> None:
    message = _error({**CONFIG, "zzz": 1})
    assert message.startswith("carekpi.yaml: zzz: unknown key; one of version, sources, "
                              "entities, kpis, labels, ")
    assert "path" not in message  # the config's own bookkeeping is not a key


def test_a_misspelt_nested_key_field_or_kpi_gets_did_you_mean() -> None:
    source = {"url": "sqlite:///clinic.db", "refresh_intervall": "60s"}
    assert _error({**CONFIG, "sources": {"main": source}}).endswith(
        "sources.main.refresh_intervall: unknown key; did you mean 'refresh_interval'?")
    entity = {**CONFIG["entities"]["appointments"], "fields": {"id": "id", "strt": "slot"}}
    assert _error({**CONFIG, "entities": {"appointments": entity}}).endswith(
        "entities.appointments.fields.strt: not a field of appointments; did you mean 'start'?")
    assert _error({**CONFIG, "kpis": {"no_shw": {"target": 0.1}}}).startswith(
        "carekpi.yaml: kpis.no_shw: unknown KPI; did you mean 'no_show'?")


# ---------------------------------------------------------------- the demo's own database

def _missing_database(dialect: str) -> tuple[sa.Engine, sa.URL]:
    admin = server_or_skip(dialect)
    name = f"carekpi_create_{os.getpid()}"
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
    return admin, sa.make_url(SERVER_URLS[dialect]).set(database=name)


@pytest.mark.parametrize("dialect", [pytest.param("postgresql", marks=pytest.mark.postgresql),
                                     pytest.param("mysql", marks=pytest.mark.mysql)])
def test_a_missing_demo_database_is_recognised_and_created(dialect: str) -> None:
    admin, url = _missing_database(dialect)
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with pytest.raises(sa.exc.OperationalError) as refused:
            engine.connect()
        assert is_missing(url, refused.value)
        create(url)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {url.database}"))


@pytest.mark.postgresql
def test_a_demo_database_the_user_may_not_create_says_how_in_one_line() -> None:
    admin, url = _missing_database("postgresql")
    role = f"carekpi_nocreate_{os.getpid()}"
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP ROLE IF EXISTS {role}"))
        conn.execute(sa.text(f"CREATE ROLE {role} LOGIN NOCREATEDB"))
    try:
        with pytest.raises(CareKPIError) as caught:
            create(url.set(username=role))
        message = str(caught.value)
        assert message.startswith(f"cannot seed demo database postgresql+psycopg://{role}@")
        assert f"create it with `CREATE DATABASE {url.database}`" in message
        assert "\n" not in message and "cannot read" not in message
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP ROLE IF EXISTS {role}"))


def test_demo_errors_say_seed_not_read(tmp_path: Any) -> None:
    result = CliRunner().invoke(main, ["demo", "--seed-only", "--db",
                                       "postgresql+psycopg://demo:secret@127.0.0.1:1/demo"])
    assert result.exit_code == 2
    assert re.match(r"^carekpi: cannot seed demo database postgresql\+psycopg://demo:\*\*\*@",
                    result.output), result.output
    assert "secret" not in result.output and len(result.output.splitlines()) == 1


def _one_line_exit_2(args: list[str]) -> str:
    result = CliRunner().invoke(main, args, prog_name="carekpi")
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("carekpi: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def test_serve_without_config_says_where_a_config_comes_from() -> None:
    line = _one_line_exit_2(["serve"])
    assert "carekpi demo --seed-only --config-out carekpi.yaml" in line
    assert 'README.md, section "Point it at your database"' in line
    assert "## Point it at your database" in README.read_text(encoding="utf-8")


def test_a_port_in_use_suggests_port(tmp_path: Any) -> None:
    path = tmp_path / "carekpi.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, "sources": {
        "main": {"url": f"sqlite:///{tmp_path}/clinic.db"}}}))
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        line = _one_line_exit_2(["serve", "--config", str(path), "--bind", "127.0.0.1",
                                 "--port", str(port)])
    assert line == (f"carekpi: port {port} on 127.0.0.1 is already in use; "
                    "choose another with --port")


def test_validate_against_an_unreachable_database_is_one_line(tmp_path: Any) -> None:
    path = tmp_path / "carekpi.yaml"
    entities = {name: {"source": "main", "table": name, "fields": {"id": "id"}}
                for name in ("appointments", "messages", "calls", "complaints")}
    path.write_text(yaml.safe_dump({"version": 1, "entities": entities, "sources": {
        "main": {"url": "postgresql+psycopg://carekpi@127.0.0.1:1/clinic",
                 "connect_timeout": "3s"}}}))
    result = CliRunner().invoke(main, ["config", "validate", "--config", str(path)])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"carekpi: {path}: valid file; database unreachable: ")
    assert "refused" in lines[0].lower()


@pytest.mark.mysql
@pytest.mark.parametrize(("where", "words"), [
    ("root:wrong-password@127.0.0.1:3306/test", "(1045) Access denied for user"),
    ("root@127.0.0.1:3306/carekpi_no_such_database", "(1049) Unknown database"),
    ("root@127.0.0.1:1/test", "(2003) Can't connect to MySQL server on"),
])
def test_a_mariadb_connection_error_says_what_went_wrong(where: str, words: str,
                                                         tmp_path: Any) -> None:
    """PyMySQL quotes its whole message: blanking quoted text left only '(1045, '?')'."""
    path = tmp_path / "carekpi.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "sources": {"main": {
        "url": f"mysql+pymysql://{where}", "connect_timeout": "3s"}}, "entities": {
        "appointments": {"source": "main", "table": "appt", "fields": {"id": "id"}}}}))
    result = CliRunner().invoke(main, ["config", "validate", "--config", str(path)])
    assert result.exit_code == 2, result.output
    assert words in result.stderr and "wrong-password" not in result.stderr, result.stderr


def test_collect_evaluates_once_without_once() -> None:
    option = next(p for p in main.commands["collect"].params if p.name == "once")
    assert not option.required
    assert "--once" not in CliRunner().invoke(main, ["collect", "--help"]).output



@pytest.mark.parametrize(("dialect", "scheme"), [
    pytest.param("postgresql", "postgres", marks=pytest.mark.postgresql),
    pytest.param("postgresql", "postgresql", marks=pytest.mark.postgresql),
    pytest.param("mysql", "mysql", marks=pytest.mark.mysql),
])
def test_demo_db_takes_the_url_forms_a_config_takes(dialect: str, scheme: str, fresh_database,
                                                    tmp_path: Any) -> None:
    """The README: postgres://, postgresql:// and mysql:// URLs work (CareKPI's drivers)."""
    url = fresh_database(dialect)
    plain = f"{scheme}://{url.split('://', 1)[1]}"
    out = tmp_path / "carekpi.yaml"
    result = CliRunner().invoke(main, ["demo", "--seed-only", "--days", "7", "--no-checks",
                                       "--db", plain, "--config-out", str(out)])
    assert result.exit_code == 0, result.output
    assert parse(yaml.safe_load(out.read_text()), str(out)).sources

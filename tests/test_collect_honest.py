"""`carekpi collect` fails honestly: exit codes (0 evaluated, 1 breach with
--fail-on-breach, 2 not evaluated), no_data before any data, --kpi by id or key with only that
KPI printed, the database's own words for schema and access errors (never a data value), and
database URLs as users have them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from kpis import catalog, report
from kpis import config as config_module
from kpis.cli import main
from kpis.snapshot import Cell, KpiResult
from tests import known_data
from tests.conftest import free_port

AS_OF = "2026-03-02T12:00:00Z"


def collect(tmp_path: Path, data: dict[str, Any], *args: str) -> tuple[int, str, str]:
    path = tmp_path / "carekpi.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    result = CliRunner().invoke(main, ["collect", "--once", "--config", str(path), *args])
    assert "Traceback" not in result.stderr
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def sqlite_known(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/known.db"
    known_data.load(url)
    return url


def test_exit_codes_evaluated_and_breach(tmp_path: Path, sqlite_known: str) -> None:
    data = known_data.config(sqlite_known)
    code, out, _ = collect(tmp_path, data, "--as-of", AS_OF)
    assert code == 0
    code, _, _ = collect(tmp_path, data, "--as-of", AS_OF, "--fail-on-breach")
    breaches = [k["kpi"] for k in json.loads(out)["kpis"] if k.get("breaches")]
    assert breaches and code == 1


def test_an_unreachable_database_exits_2(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://nobody@127.0.0.1:{free_port(23000, 23999)}/none"
    data = known_data.config(url)
    data["sources"]["main"]["connect_timeout"] = "2s"
    code, out, err = collect(tmp_path, data, "--as-of", AS_OF, "--kpi", "A1")
    assert code == 2
    entry = json.loads(out)["kpis"][0]
    assert (entry["id"], entry["status"]) == ("A1", "error")
    assert "not evaluated: A1" in err


def test_as_of_before_any_data_says_no_data(tmp_path: Path, sqlite_known: str) -> None:
    code, out, _ = collect(tmp_path, known_data.config(sqlite_known),
                           "--as-of", "2001-01-01T00:00:00Z", "--kpi", "no_show")
    assert code == 0
    assert [(k["kpi"], k["status"]) for k in json.loads(out)["kpis"]] == [("no_show", "no_data")]


def test_kpi_by_id_or_key_prints_only_that_kpi(tmp_path: Path, sqlite_known: str) -> None:
    data = known_data.config(sqlite_known)
    _, by_id, _ = collect(tmp_path, data, "--as-of", AS_OF, "--kpi", "a1")
    _, by_key, _ = collect(tmp_path, data, "--as-of", AS_OF, "--kpi", "no_show")
    assert by_id == by_key
    assert [k["id"] for k in json.loads(by_id)["kpis"]] == ["A1"]
    _, text, _ = collect(tmp_path, data, "--as-of", AS_OF, "--kpi", "C2", "--format",
                         "prometheus")
    kpi_series = {line.split("{")[0] for line in text.splitlines()
                  if line and not line.startswith("#") and 'kpi="' not in line
                  and not line.startswith(("carekpi_source", "carekpi_build", "carekpi_label"))}
    assert kpi_series == {"carekpi_call_abandonment_numerator",
                          "carekpi_call_abandonment_denominator"}
    kpis = {part.split('"')[0] for part in text.split('kpi="')[1:]}
    assert kpis == {"call_abandonment"}


def test_a_kpi_typo_lists_the_valid_ones(tmp_path: Path, sqlite_known: str) -> None:
    code, _, err = collect(tmp_path, known_data.config(sqlite_known), "--kpi", "no_shw")
    assert code == 2
    assert "unknown KPI 'no_shw'" in err and "A1/no_show" in err and "C4/" in err


def test_schema_errors_name_the_server_message(tmp_path: Path, db_url: str) -> None:
    known_data.load(db_url)
    data = known_data.config(db_url)
    data["entities"]["appointments"]["fields"]["departed"] = {"sql": "no_such_col + 1"}
    code, out, _ = collect(tmp_path, data, "--as-of", AS_OF, "--kpi", "A5")
    assert code == 2
    reason = json.loads(out)["kpis"][0]["reason"]
    assert "no_such_col" in reason, reason


@pytest.mark.postgresql
def test_postgres_scheme_urls_work(tmp_path: Path, fresh_database) -> None:
    url = fresh_database("postgresql")
    known_data.load(url)
    plain = "postgres://" + url.split("://", 1)[1]
    code, out, _ = collect(tmp_path, known_data.config(plain), "--as-of", AS_OF, "--kpi", "A1")
    assert code == 0
    assert json.loads(out)["kpis"][0]["status"] == "ok"


@pytest.mark.parametrize(("url", "message"), [
    ("mysql+mysqldb://root@127.0.0.1/test",
     "the database driver 'mysqldb' for mysql is not installed: pip install 'mysqlclient'"),
    ("foo://x/y", "unknown database dialect 'foo'"),
])
def test_a_missing_driver_or_unknown_dialect_is_one_line(tmp_path: Path, url: str,
                                                         message: str) -> None:
    code, _, err = collect(tmp_path, known_data.config(url), "--kpi", "A1")
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1


def test_a_cell_without_a_value_has_the_same_status_word_as_a_kpi_without_cells() -> None:
    config = config_module.parse({"version": 1, "sources": {"main": {"url": "sqlite://"}}},
                                 "carekpi.yaml")
    as_of = datetime(2026, 3, 2, tzinfo=UTC)
    kpi = catalog.get("A1")
    empty = Cell((("clinic", "north"), ("window", "1h")), {"numerator": 0, "denominator": 0})
    data = report.as_data([KpiResult(kpi, "main", as_of, (empty,)),
                           KpiResult(catalog.get("A2"), "main", as_of, ())], config, as_of)
    assert data["kpis"][0]["results"][0]["status"] == "no_data"
    assert data["kpis"][1]["status"] == "no_data"

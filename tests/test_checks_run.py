"""Checks on SQLite, PostgreSQL and MariaDB with planted defects: exact counts and exit codes."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from checks.commands import checks_group
from checks.results import exit_code
from checks.runner import run_suites
from kpis import config as kpi_config
from tests import test_checks_data as data
from tests.conftest import execute


def _by_key(results):
    return {(r.entity, r.check, r.column): r for r in results}


@pytest.fixture
def planted(db_url):
    moment = data.now()
    data.build(db_url, moment)
    return db_url, moment


def test_exact_unexpected_counts_on_every_dialect(planted):
    url, moment = planted
    config = kpi_config.parse(data.config(url), "carekpi.yaml")
    results = _by_key(run_suites(config, now=moment))
    expected = {
        ("appointments", "completeness", "clinic"): (50, 3, False),
        ("appointments", "completeness", "id"): (50, 0, True),
        ("appointments", "completeness", "status"): (50, 0, True),
        ("appointments", "record_completeness", "*"): (50, 3, False),
        ("appointments", "conformance", "status"): (50, 2, False),
        ("appointments", "time_order", "created<=start"): (50, 3, False),
        ("appointments", "time_order", "arrived<=provider_start"): (50, 1, False),
        ("appointments", "not_future", "arrived"): (50, 1, False),
        ("appointments", "not_future", "created"): (50, 0, True),
        ("appointments", "department_code", "department"): (50, 2, False),
        ("messages", "time_order", "received<=first_response"): (10, 1, False),
        ("messages", "completeness", "received"): (10, 0, True),
        ("surveys", "score_range", "score"): (10, 2, False),
    }
    for key, (elements, unexpected, passed) in expected.items():
        result = results[key]
        assert (result.elements, result.unexpected, result.passed) == (elements, unexpected,
                                                                       passed), key
        assert isinstance(result.unexpected, int)  # MySQL returns floats
    clinic = results[("appointments", "completeness", "clinic")]
    assert clinic.observed == pytest.approx(0.94) and clinic.threshold == 0.98
    assert clinic.severity == "error"
    fresh = results[("appointments", "freshness", "created")]
    assert fresh.passed and fresh.observed == pytest.approx(3600, abs=2)
    assert fresh.severity == "warning" and fresh.threshold == 7200
    assert results[("appointments", "department_code", "department")].severity == "warning"
    assert all(r.error is None for r in results.values())


def test_one_pass_counts_match_great_expectations_check_for_check(planted):
    """The built-in suite's single aggregate gives GX's own counts and verdicts."""
    url, moment = planted
    config = kpi_config.parse(data.config(url), "carekpi.yaml")
    fast = run_suites(config, now=moment, since=timedelta(days=30))
    slow = run_suites(config, now=moment, since=timedelta(days=30), builtin_via_gx=True)

    def outcome(r):
        return (r.entity, r.check, r.column, r.elements, r.unexpected, r.passed,
                None if r.observed is None else round(r.observed, 6))

    assert [outcome(r) for r in fast] == [outcome(r) for r in slow]
    assert sum(r.unexpected or 0 for r in fast) > 10  # the planted defects were seen


def test_since_window_restricts_every_check(planted):
    url, moment = planted
    config = kpi_config.parse(data.config(url), "carekpi.yaml")
    results = _by_key(run_suites(config, entity="appointments", since=timedelta(hours=24),
                                 now=moment))
    assert {r.elements for r in results.values() if r.elements is not None} == {
        data.IN_LAST_24H}
    assert results[("appointments", "completeness", "clinic")].unexpected == 3
    assert results[("appointments", "conformance", "status")].unexpected == 2


def test_a_near_miss_code_fails_conformance_on_every_dialect(planted):
    """'fu' and 'FU ' are not the mapped code FU, although MariaDB's collations say so."""
    url, moment = planted
    execute(url, "UPDATE appt SET status_cd = 'fu' WHERE appt_id = 20",
            "UPDATE appt SET status_cd = 'FU ' WHERE appt_id = 21")
    config = kpi_config.parse(data.config(url), "carekpi.yaml")
    results = _by_key(run_suites(config, entity="appointments", suite="conformance", now=moment,
                                 show_failing_keys=True))
    conformance = results[("appointments", "conformance", "status")]
    assert conformance.unexpected == len(data.BAD_STATUS) + 2
    assert sorted(conformance.failing_keys, key=int) == ["4", "5", "20", "21"]


def test_failing_keys_only_on_request(planted):
    url, moment = planted
    config = kpi_config.parse(data.config(url), "carekpi.yaml")
    plain = _by_key(run_suites(config, entity="appointments", suite="plausibility", now=moment))
    assert all(r.failing_keys == () for r in plain.values())
    keyed = _by_key(run_suites(config, entity="appointments", now=moment,
                               show_failing_keys=True))
    assert keyed[("appointments", "time_order", "created<=start")].failing_keys == (
        "6", "7", "8")
    assert keyed[("appointments", "conformance", "status")].failing_keys == ("4", "5")
    assert keyed[("appointments", "completeness", "clinic")].failing_keys == ("1", "2", "3")


def test_cli_exit_codes_and_json(planted, tmp_path):
    url, _ = planted
    path = data.write_config(tmp_path / "carekpi.yaml", url)
    runner = CliRunner()
    failed = runner.invoke(checks_group, ["run", "--config", path, "--format", "json"])
    assert failed.exit_code == 1, failed.output
    report = json.loads(failed.stdout)
    assert report["exit_code"] == 1 and report["summary"]["checks_failed"] == 8
    assert report["summary"]["checks_warned"] == 1  # the custom department_code check
    assert set(report["summary"]) == {"checks_run", "checks_passed", "checks_failed",
                                      "checks_warned", "checks_not_evaluated"}
    assert report["window"]["mode"] == "full" and report["config"] == path
    assert report["carekpi_version"] and report["great_expectations_version"].startswith("1.")
    assert report["sources"] == [f"clinicdb ({url.split(':')[0].split('+')[0]})"]
    only_fresh = runner.invoke(checks_group, ["run", "--config", path, "--suite", "freshness"])
    assert only_fresh.exit_code == 0, only_fresh.output
    assert "3 checks: 3 passed" in only_fresh.stdout


def test_warnings_exit_zero_unless_strict(fresh_database, tmp_path):
    url = fresh_database("sqlite")
    data.build(url, data.now(), fresh=False, clean=True)
    path = data.write_config(tmp_path / "carekpi.yaml", url)
    runner = CliRunner()
    relaxed = runner.invoke(checks_group, ["run", "--config", path, "--format", "junit"])
    assert relaxed.exit_code == 0, relaxed.output
    assert 'failures="0"' in relaxed.stdout and "warning:" in relaxed.stdout
    strict = runner.invoke(checks_group, ["run", "--config", path, "--strict"])
    assert strict.exit_code == 1
    assert "3 warnings" in strict.stdout
    overridden = data.write_config(tmp_path / "severe.yaml", url,
                                   rules={"freshness": {"severity": "error"}})
    assert runner.invoke(checks_group, ["run", "--config", overridden]).exit_code == 1


def test_thresholds_and_severity_overrides(fresh_database):
    url = fresh_database("sqlite")
    moment = data.now()
    data.build(url, moment)
    config = kpi_config.parse(data.config(url, rules={
        "completeness": {"threshold": 0.9},
        "appointments.conformance": {"severity": "warning"},
        "time_order": {"enabled": False},
    }), "carekpi.yaml")
    results = _by_key(run_suites(config, now=moment))
    assert results[("appointments", "completeness", "clinic")].passed
    assert results[("appointments", "conformance", "status")].severity == "warning"
    assert not any(check == "time_order" for _, check, _ in results)
    assert exit_code(list(results.values())) == 1  # not_future and score_range still fail


@pytest.mark.parametrize("custom, message", [
    ({"expectation": "expect_column_values_to_be_purple", "kwargs": {"column": "clinic"}},
     "checks.custom.0.expectation: unknown expectation 'expect_column_values_to_be_purple'"),
    ({"expectation": "expect_column_values_to_be_between", "kwargs": {"column": "clinic",
                                                                     "mostly": 7}},
     "checks.custom.0.kwargs: bad argument for expect_column_values_to_be_between: mostly"),
    ({"expectation": "expect_column_values_to_not_be_null", "kwargs": {"column": "wing"}},
     "checks.custom.0.kwargs: column 'wing' is not a mapped field of appointments"),
    ({"expectation": "expect_column_values_to_not_be_null", "kwargs": {"colum": "clinic"}},
     "checks.custom.0.kwargs: bad argument for expect_column_values_to_not_be_null"),
])
def test_custom_check_mistakes_are_one_line_exit_2(fresh_database, tmp_path, custom, message):
    url = fresh_database("sqlite")
    data.build(url, data.now())
    path = data.write_config(tmp_path / "carekpi.yaml", url,
                             custom=[{"entity": "appointments", **custom}])
    result = CliRunner().invoke(checks_group, ["run", "--config", path])
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


NOT_NULL = "expect_column_values_to_not_be_null"


@pytest.mark.parametrize("custom, message", [
    ([{"name": "freshness", "expectation": NOT_NULL, "kwargs": {"column": "clinic"}}],
     "checks.custom.0.name: 'freshness' is a built-in check's name; choose another"),
    ([{"expectation": NOT_NULL, "kwargs": {"column": "clinic", "mostly": 0.9}},
      {"expectation": NOT_NULL, "kwargs": {"column": "clinic", "mostly": 0.99}}],
     f"checks.custom.1: another check of appointments is named {NOT_NULL!r} on clinic; "
     "give this one a different name"),
])
def test_two_checks_never_share_one_identity(fresh_database, tmp_path, custom, message):
    """A result is known by entity, check and column: in the report, the history and the
    metrics (two would be one series twice, and a failure could hide behind a pass)."""
    url = fresh_database("sqlite")
    data.build(url, data.now())
    path = data.write_config(tmp_path / "carekpi.yaml", url,
                             custom=[{"entity": "appointments", **c} for c in custom])
    result = CliRunner().invoke(checks_group, ["run", "--config", path])
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_mapped_column_missing_and_unreachable_database(fresh_database, tmp_path):
    url = fresh_database("sqlite")
    data.build(url, data.now())
    document = data.config(url)
    document["entities"]["appointments"]["fields"]["start"] = "strt_ts"
    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps(document))
    result = CliRunner().invoke(checks_group, ["run", "--config", str(path)])
    assert result.exit_code == 2
    assert result.stderr.strip() == (f"carekpi: {path}: entities.appointments.fields.start: "
                                     "column 'strt_ts' not found in table 'appt'")
    down = data.write_config(tmp_path / "down.yaml",
                             "postgresql+psycopg://nobody:secret@127.0.0.1:1/none")
    result = CliRunner().invoke(checks_group, ["run", "--config", down])
    assert result.exit_code == 2
    assert result.stderr.startswith("carekpi: source clinicdb (postgresql+psycopg://nobody:***@")
    assert "secret" not in result.output and len(result.stderr.strip().splitlines()) == 1


def test_unknown_checks_key_is_a_config_error(fresh_database, tmp_path):
    url = fresh_database("sqlite")
    data.build(url, data.now())
    path = data.write_config(tmp_path / "carekpi.yaml", url, thresholds={"x": 1})
    result = CliRunner().invoke(checks_group, ["run", "--config", path])
    assert result.exit_code == 2
    assert "checks.thresholds: unknown key" in result.stderr.strip()


def test_timestamptz_columns_are_checked_in_the_entitys_zone(fresh_database):
    """The bounds of --since and not_future are New York wall-clock times: PostgreSQL must
    read them in that zone against timestamptz (in UTC every recent record was 'future')."""
    url = fresh_database("postgresql")
    engine = sa.create_engine(url)
    hours_ago = (1, 3, 23, 26, 28, 40)  # received; the first two were answered
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE inbox (msg_id int, site text, chan text, "
                             "recv timestamptz, resp timestamptz)"))
        for i, h in enumerate(hours_ago, 1):
            conn.execute(sa.text(
                "INSERT INTO inbox VALUES (:i, 'north', 'portal', now() - make_interval("
                "hours => :h), CASE WHEN :i <= 2 THEN now() - make_interval(hours => :h) "
                "+ interval '30 minutes' END)"), {"i": i, "h": h})
    engine.dispose()
    config = kpi_config.parse({
        "version": 1, "sources": {"s": {"url": url}},
        "entities": {"messages": {
            "source": "s", "table": "inbox", "timezone": "America/New_York",
            "fields": {"id": "msg_id", "clinic": "site", "channel": "chan",
                       "received": "recv", "first_response": "resp"}}}}, "carekpi.yaml")
    results = _by_key(run_suites(config, since=timedelta(hours=24)))
    within = sum(h < 24 for h in hours_ago)
    assert results[("messages", "completeness", "id")].elements == within
    assert results[("messages", "not_future", "received")].unexpected == 0
    assert results[("messages", "not_future", "first_response")].unexpected == 0
    assert 3600 <= results[("messages", "freshness", "received")].observed < 3600 + 60


def test_a_record_dated_in_the_future_does_not_make_stale_data_fresh(db_url):
    moment = data.now()
    data.build(db_url, moment, fresh=False)  # the newest message is 5 hours old
    execute(db_url, "INSERT INTO msg (msg_id, site, chan, recv_ts) "
                    "VALUES (999, 'north', 'portal', '2030-01-01 00:00:00')")
    config = kpi_config.parse(data.config(db_url), "carekpi.yaml")
    results = _by_key(run_suites(config, entity="messages", now=moment))
    freshness = results[("messages", "freshness", "received")]
    assert 5 * 3600 <= freshness.observed < 5 * 3600 + 60
    assert not freshness.passed
    assert results[("messages", "not_future", "received")].unexpected == 1


@pytest.mark.parametrize("since, message", [
    ("0s", "must be longer than zero"),
    ("abc", "expected a duration such as 30s"),
    ("999999d", "a duration must be finite and at most 10 years"),
])
def test_a_bad_since_is_one_line_exit_2(fresh_database, tmp_path, since, message):
    url = fresh_database("sqlite")
    data.build(url, data.now())
    path = data.write_config(tmp_path / "carekpi.yaml", url)
    result = CliRunner().invoke(checks_group, ["run", "--config", path, "--since", since])
    assert result.exit_code == 2
    assert "--since" in result.stderr and message in result.stderr
    assert "Traceback" not in result.output and "unexpected" not in result.stderr


def test_a_windowed_run_still_sees_records_without_their_main_timestamp(db_url):
    moment = data.now()
    data.build(db_url, moment)
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO msg (msg_id, site, chan) VALUES "
                             "(901, 'north', 'portal'), (902, 'north', 'portal')"))
        in_window = conn.execute(sa.text("SELECT count(*) FROM msg WHERE recv_ts >= :b"),
                                 {"b": (moment - timedelta(hours=24)).replace(tzinfo=None)}
                                 ).scalar()
    engine.dispose()
    config = kpi_config.parse(data.config(db_url), "carekpi.yaml")
    results = _by_key(run_suites(config, entity="messages", suite="completeness",
                                 since=timedelta(hours=24), now=moment))
    received = results[("messages", "completeness", "received")]
    assert (received.elements, received.unexpected) == (in_window + 2, 2)
    # The other checks judge the window's records only.
    assert results[("messages", "completeness", "clinic")].elements == in_window

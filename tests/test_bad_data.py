"""Bad rows never crash a refresh and never skew a KPI silently: each is left out with a
counted reason, or falls in no window; the numbers with the bad rows are known exactly."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from collectors.validate import check_live
from kpis import config as config_module
from kpis.db.engines import opened
from kpis.errors import CareKPIError
from kpis.snapshot import KpiResult
from tests import known_data
from tests.conftest import execute
from tests.test_kpi_numbers import cell, counts, evaluate_at


def live_findings(data: dict[str, Any], about: str = "") -> list[str]:
    """``config validate``'s live findings for a config (those mentioning ``about``)."""
    config = config_module.parse(data, "known.yaml")
    with opened(config) as engines:
        return [str(f) for f in check_live(config, engines) if about in str(f)]


@pytest.fixture(scope="module")
def bad_rows_url(module_db_url: str) -> str:
    known_data.load(module_db_url)
    known_data.load_bad(module_db_url)
    return module_db_url


@pytest.fixture(scope="module")
def with_bad_rows(bad_rows_url: str) -> dict[str, KpiResult]:
    results = evaluate_at(bad_rows_url)
    errors = [r.error for r in results.values() if r.error]
    assert errors == []
    return results


def excluded(result: KpiResult, reason: str, **labels: str) -> float:
    return cell(result, **labels).counts[f"excluded:{reason}"]


def test_unknown_and_missing_status_codes_are_counted_not_guessed(
        with_bad_rows: dict[str, KpiResult]) -> None:
    r = with_bad_rows["no_show"]
    # The three valid fulfilled additions count; the unknown and missing statuses do not.
    assert counts(r, clinic="north", window="1d") == (1, 6)
    assert excluded(r, "unmapped_status", clinic="north", window="1d") == 2
    assert excluded(r, "unmapped_status", clinic="north", window="1h") == 0


def test_a_code_matches_exactly_on_every_database(with_bad_rows: dict[str, KpiResult]) -> None:
    # 'ns' and 'NS ' are not the mapped code NS, although MariaDB's default collations say so.
    r = with_bad_rows["no_show"]
    assert counts(r, clinic="south", window="1d") == (0, 1)  # appointment 6, arrived
    assert excluded(r, "unmapped_status", clinic="south", window="1d") == 2


def test_config_validate_lists_near_miss_codes_exactly(bad_rows_url: str) -> None:
    findings = live_findings(known_data.config(bad_rows_url),
                             "entities.appointments.codes.status")
    assert findings == ["warning: entities.appointments.codes.status: 3 local code(s) in the "
                        "data are not mapped (their records are left out of the KPIs that "
                        "read it, counted as unmapped_status): 'NS ', 'XX', 'ns'"]


def test_config_validate_says_an_unmapped_priority_gets_the_default_sla(
        fresh_database) -> None:
    url = fresh_database("sqlite")
    known_data.load(url)
    execute(url, "UPDATE inbox SET prio = 'X' WHERE msg_id = 1")
    findings = live_findings(known_data.config(url), "priority")
    assert findings == ["warning: entities.messages.codes.priority: 1 local code(s) in the data "
                        "are not mapped (their records are given the default SLA: no override "
                        "matches them): 'X'"]


def test_negative_and_implausible_waits_are_left_out(with_bad_rows: dict[str, KpiResult]
                                                     ) -> None:
    r = with_bad_rows["wait_to_be_seen"]
    h = cell(r, clinic="north", window="1d").histogram
    assert (h.count, h.sum) == (2, 2100.0)  # exactly the clean answer (112, in error, not)
    assert excluded(r, "negative_duration", clinic="north", window="1d") == 1
    assert excluded(r, "implausible_duration", clinic="north", window="1d") == 1


def test_a_record_entered_in_error_is_in_no_visit_time(with_bad_rows: dict[str, KpiResult]
                                                       ) -> None:
    # 112 (in error) waited 10 min and stayed 30: the clean answers stand (test_kpi_numbers).
    wait = cell(with_bad_rows["wait_to_be_seen"], clinic="north", window="1d").histogram
    cycle = cell(with_bad_rows["visit_cycle_time"], clinic="north", window="1d").histogram
    assert (wait.count, wait.sum) == (2, 2100.0)
    assert (cycle.count, cycle.sum) == (1, 3000.0)


def test_a_booking_dated_1900_does_not_stretch_lead_times(with_bad_rows: dict[str, KpiResult]
                                                          ) -> None:
    r = with_bad_rows["lead_time"]
    h = cell(r, clinic="north", window="1d").histogram
    assert (h.count, h.sum) == (5, 14 * 86400.0)
    assert excluded(r, "implausible_duration", clinic="north", window="1d") == 1


def test_a_cancellation_of_unknown_time_is_counted_not_scored_as_timely(
        with_bad_rows: dict[str, KpiResult]) -> None:
    r = with_bad_rows["late_cancellation"]
    # south at 12:00: appointment 6 (arrived) is the only booking judged; 109 (cancelled at
    # 10:00 with no cancellation time) is neither late nor on time.
    assert counts(r, clinic="south", window="1d") == (0, 1)
    assert excluded(r, "unknown_cancellation_time", clinic="south", window="1d") == 1
    assert excluded(r, "unknown_cancellation_time", clinic="north", window="1d") == 0


def test_a_reply_before_receipt_is_not_scored(with_bad_rows: dict[str, KpiResult]) -> None:
    r = with_bad_rows["response_sla"]
    assert counts(r, clinic="north", channel="portal", window="1h") == (1, 2)
    assert excluded(r, "response_before_receipt", clinic="north", channel="portal",
                    window="1h") == 1
    first = with_bad_rows["first_response_time"]  # the same record, left out for the same reason
    assert excluded(first, "response_before_receipt", clinic="north", channel="portal",
                    window="7d") == 1
    assert excluded(first, "negative_duration", clinic="north", channel="portal",
                    window="7d") == 0


def test_scores_off_their_scale_are_counted(with_bad_rows: dict[str, KpiResult]) -> None:
    assert counts(with_bad_rows["top_box"], clinic="north", window="1d") == (3, 5)
    assert excluded(with_bad_rows["top_box"], "score_out_of_range", clinic="north",
                    window="1d") == 1
    assert counts(with_bad_rows["csat"], clinic="north", window="1d") == (1, 2)
    assert excluded(with_bad_rows["csat"], "score_out_of_range", clinic="north",
                    window="1d") == 2  # the clean data's 11 on a 1-5 item, and the 0


def test_records_dated_1900_or_2100_fall_in_no_window(with_bad_rows: dict[str, KpiResult]
                                                      ) -> None:
    assert counts(with_bad_rows["no_show"], clinic="north", window="30d") == (1, 6)
    newest = {c.label("entity"): c.counts["timestamp"] for c in with_bad_rows["freshness"].cells}
    assert newest["appointments"] == known_data.D(2026, 3, 2, 11, tzinfo=known_data.UTC
                                                  ).timestamp()


OUT_OF_RANGE = {"postgresql": "'infinity'", "mysql": "'0000-00-00 00:00:00'",
                "sqlite": "'not a time'"}


def test_one_out_of_range_timestamp_is_one_excluded_record(db_url: str) -> None:
    """PostgreSQL's 'infinity' (MariaDB's zero date, SQLite's garbage text) in one row: the
    durations that need it leave that record out with a reason; every clinic still counts."""
    known_data.load(db_url)
    engine = sa.create_engine(db_url)
    bad = OUT_OF_RANGE[engine.dialect.name]
    with engine.begin() as conn:
        if engine.dialect.name == "mysql":
            conn.execute(sa.text("SET SESSION sql_mode = ''"))
        conn.execute(sa.text(
            "INSERT INTO appt (appt_id, site, slot_start, booked_at, st, checkin_at, roomed_at,"
            f" checkout_at, chan, is_virtual) VALUES (77, 'north', '2026-03-02 09:00:00', "
            f"'2026-02-20 09:00:00', 'DONE', '2026-03-02 08:55:00', {bad}, {bad}, 'PHONE', "
            f"{'false' if engine.dialect.name == 'postgresql' else '0'})"))
    engine.dispose()
    results = evaluate_at(db_url)
    assert [r.error for r in results.values() if r.error] == []
    for key, clean in (("wait_to_be_seen", (2, 2100.0)), ("visit_cycle_time", (1, 3000.0))):
        h = cell(results[key], clinic="north", window="1d").histogram
        assert (h.count, h.sum) == clean
        assert excluded(results[key], "unusable_duration", clinic="north", window="1d") == 1
    south = cell(results["wait_to_be_seen"], clinic="south", window="1d").histogram
    assert (south.count, south.sum) == (1, 2100.0)


@pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
def test_a_text_column_mapped_as_a_number_is_named_not_a_crash(fresh_database, dialect) -> None:
    url = fresh_database(dialect)
    known_data.load(url)
    execute(url, "ALTER TABLE survey_answer DROP COLUMN points",
            "ALTER TABLE survey_answer ADD COLUMN points VARCHAR(20)")
    findings = live_findings(known_data.config(url), "points")
    assert len(findings) == 1
    assert findings[0].startswith("error: entities.surveys.fields.score: column 'points' has "
                                  "type VARCHAR(20); a number or boolean is needed")


def test_the_automatic_acknowledgement_is_never_the_response(fresh_database, tmp_path) -> None:
    data = known_data.config("sqlite:///unused.db")
    data["entities"]["messages"]["fields"]["first_response"] = "ack_at"
    with pytest.raises(CareKPIError, match=r"entities\.messages\.fields\.auto_ack: the same "
                                           r"column as first_response"):
        config_module.parse(data, "known.yaml")
    # Mapped to a column that holds the acknowledgement time: config validate says so.
    url = fresh_database("sqlite")
    known_data.load(url)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE inbox ADD COLUMN first_out_at DATETIME"))
        conn.execute(sa.text("UPDATE inbox SET first_out_at = coalesce(ack_at, replied_at)"))
        both, equal = conn.execute(sa.text(
            "SELECT count(*), sum(first_out_at = ack_at) FROM inbox "
            "WHERE first_out_at IS NOT NULL AND ack_at IS NOT NULL")).one()
    engine.dispose()
    data = known_data.config(url)
    data["entities"]["messages"]["fields"]["first_response"] = "first_out_at"
    findings = live_findings(data, "first_response")
    assert both and equal * 2 > both
    assert findings == [f"warning: entities.messages.fields.first_response: equals auto_ack in "
                        f"{equal} of {both} messages that have both: it seems to hold the "
                        "automatic acknowledgement, which never counts as a response; map it "
                        "to the first reply by staff"]


@pytest.mark.parametrize("late, unknown, doubtful", [
    (0, 15, True),  # the cancellation-time column empty: 0 % late rests on nothing
    (20, 15, False),  # most cancellations judged
    (0, 9, False),  # too few to judge
])
def test_a_late_cancellation_rate_over_mostly_unknown_times_is_suspect(
        late: int, unknown: int, doubtful: bool) -> None:
    from kpis import catalog, plausibility
    from kpis.snapshot import Cell

    kpi = next(k for k in catalog.load() if k.key == "late_cancellation")
    cell = Cell((("clinic", "north"), ("window", "7d")),
                {"numerator": late, "denominator": 100,
                 "excluded:unknown_cancellation_time": unknown})
    reasons = [d.reason for d in plausibility.doubts(kpi, cell)]
    assert reasons == (["most_excluded"] if doubtful else [])


@pytest.mark.parametrize("column, codes, matches", [
    ("d", ["3"], 1),  # a DECIMAL 3.00 is the code '3' (no letter: compared as before)
    ("b", ["1"], 1),  # a BIT(1)
    ("u", ["NS"], 1), ("u", ["ns"], 0),  # a utf16 column, exactly
    ("l", ["Annulé"], 1), ("l", ["ANNULÉ"], 0),  # latin1, a non-ASCII code, exactly
    ("l", ["NS", "Annulé"], 1),
])
def test_exact_codes_on_mariadb_column_types(fresh_database, column: str, codes: list[str],
                                             matches: int) -> None:
    from kpis.db.entity import _code_literal, exact

    engine = sa.create_engine(fresh_database("mysql"))
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE t (d DECIMAL(5,2), b BIT(1), "
                                 "u VARCHAR(10) CHARACTER SET utf16, "
                                 "l VARCHAR(10) CHARACTER SET latin1)"))
            conn.execute(sa.text("INSERT INTO t VALUES (3, 1, 'NS', 'Annulé')"))
            col = sa.column(column)
            found = conn.execute(sa.select(sa.func.count()).select_from(sa.table("t")).where(
                exact(col, codes).in_([_code_literal(c) for c in codes]))).scalar()
    finally:
        engine.dispose()
    assert found == matches

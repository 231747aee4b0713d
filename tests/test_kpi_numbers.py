"""KPI numbers on data whose answers are known by construction, on every dialect."""

from __future__ import annotations

from typing import Any

import pytest

from collectors import evaluate
from kpis import config as config_module
from kpis import plausibility
from kpis.db.engines import create_all as create_engines
from kpis.snapshot import KpiResult
from tests import known_data


@pytest.fixture(scope="module")
def loaded(module_db_url: str) -> str:
    known_data.load(module_db_url)
    return module_db_url


def evaluate_at(url: str, calendar: bool = False) -> dict[str, KpiResult]:
    config = config_module.parse(known_data.config(url, calendar), "known.yaml")
    engines = create_engines(config)
    try:
        out = evaluate.evaluate(config, engines, known_data.AS_OF)
    finally:
        for engine in engines.values():
            engine.dispose()
    return {r.kpi.key: r for r in out}


@pytest.fixture(scope="module")
def results(loaded: str) -> dict[str, KpiResult]:
    return evaluate_at(loaded)


@pytest.fixture(scope="module")
def business(loaded: str) -> dict[str, KpiResult]:
    """The same data with opening hours Mon-Fri 08:00-18:00 UTC (1 business day = 10 h)."""
    return evaluate_at(loaded, calendar=True)


def cell(result: KpiResult, **labels: str) -> Any:
    matches = [c for c in result.cells if all(c.label(k) == v for k, v in labels.items())]
    assert len(matches) == 1, f"{result.kpi.key} {labels}: {len(matches)} cells; {result.error}"
    return matches[0]


def counts(result: KpiResult, **labels: str) -> tuple[float, float]:
    c = cell(result, **labels).counts
    return c["numerator"], c["denominator"]


def test_no_show_counts_only_attended_or_noshow(results: dict[str, KpiResult]) -> None:
    r = results["no_show"]
    assert counts(r, clinic="north", window="1d") == (1, 3)  # cancelled and pending left out
    assert counts(r, clinic="north", window="1h") == (0, 1)
    assert counts(r, clinic="north", window="7d") == (1, 3)  # the early cancellation too
    assert counts(r, clinic="south", window="7d") == (0, 1)  # arrived counts; error, future not


def test_late_cancellation_is_under_24_hours_notice(results: dict[str, KpiResult]) -> None:
    r = results["late_cancellation"]
    assert counts(r, clinic="north", window="1d") == (1, 4)
    assert counts(r, clinic="north", window="7d") == (1, 5)


def test_wait_clock_starts_at_the_later_of_arrival_and_start(results: dict[str, KpiResult]
                                                             ) -> None:
    h = cell(results["wait_to_be_seen"], clinic="north", window="1d").histogram
    assert (h.count, h.sum) == (2, 2100.0)  # 20 min (early arrival) + 15 min (late arrival)
    assert dict(zip(h.bounds, h.cumulative, strict=True))[900] == 1
    assert dict(zip(h.bounds, h.cumulative, strict=True))[1200] == 2
    south = cell(results["wait_to_be_seen"], clinic="south", window="1d").histogram
    assert (south.count, south.sum) == (1, 2100.0)


def test_cycle_time_needs_a_departure(results: dict[str, KpiResult]) -> None:
    h = cell(results["visit_cycle_time"], clinic="north", window="1d").histogram
    assert (h.count, h.sum) == (1, 3000.0)


def test_lead_time_in_calendar_days(results: dict[str, KpiResult]) -> None:
    h = cell(results["lead_time"], clinic="north", window="1d").histogram
    assert (h.count, h.sum) == (3, 12 * 86400.0)
    le = dict(zip(h.bounds, h.cumulative, strict=True))
    assert (le[0], le[86400], le[172800], le[604800], le[1209600]) == (1, 1, 2, 2, 3)


def test_reminder_coverage_window_is_48_to_24_hours(results: dict[str, KpiResult]) -> None:
    assert counts(results["reminder_coverage"], clinic="north", window="1d") == (1, 3)


def test_no_show_split_by_reminder_and_lead_time(results: dict[str, KpiResult]) -> None:
    r = results["no_show_by_reminder"]
    assert counts(r, clinic="north", window="1d", reminder="sent", lead_time="8-30d") == (0, 1)
    assert counts(r, clinic="north", window="1d", reminder="none", lead_time="1-2d") == (1, 1)
    assert counts(r, clinic="north", window="1d", reminder="none", lead_time="0d") == (0, 1)


def test_online_booking_and_telehealth_shares(results: dict[str, KpiResult]) -> None:
    assert counts(results["online_booking"], clinic="north", window="1d") == (1, 2)
    assert counts(results["telehealth"], clinic="north", window="1d") == (1, 3)


def test_response_sla_by_deadline_window(results: dict[str, KpiResult]) -> None:
    r = results["response_sla"]
    assert counts(r, clinic="north", channel="portal", window="1h") == (1, 2)
    assert counts(r, clinic="north", channel="portal", window="1d") == (2, 3)
    assert counts(r, clinic="north", channel="email", window="1d") == (0, 1)
    # 6 was answered after the evaluation time: a miss as of then.
    assert counts(r, clinic="north", channel="portal", window="7d") == (2, 4)


def test_backlog_is_unanswered_past_deadline_now(results: dict[str, KpiResult]) -> None:
    r = results["sla_breach_backlog"]
    assert cell(r, clinic="north", channel="portal").counts["value"] == 2
    assert cell(r, clinic="north", channel="chat").counts["value"] == 0  # auto-ack, not due


def test_first_response_excludes_unanswered_and_auto_acks(results: dict[str, KpiResult]
                                                          ) -> None:
    r = results["first_response_time"]
    portal = cell(r, clinic="north", channel="portal", window="1d").histogram
    assert (portal.count, portal.sum) == (1, 10800.0)
    assert cell(r, clinic="north", channel="chat", window="1d").histogram.count == 0
    week = cell(r, clinic="north", channel="portal", window="7d").histogram
    assert (week.count, week.sum) == (2, 28800.0)
    # 2, 5 and 6 are unanswered as of now: pending, not records left out as unusable (which
    # would count toward 'most records excluded' and mark a healthy inbox suspect).
    counts_7d = cell(r, clinic="north", channel="portal", window="7d").counts
    assert counts_7d.get("excluded:unusable_duration", 0) == 0
    assert r.cells and not [c for c in r.cells if plausibility.doubts(r.kpi, c)]


def test_business_time_clock_stops_outside_opening_hours(business: dict[str, KpiResult]
                                                          ) -> None:
    # Weekend receipts are due Monday 18:00: only 6 (Fri 10:00, due Mon 10:00) fell due.
    assert counts(business["response_sla"], clinic="north", channel="portal", window="1d") == (
        0, 1)
    assert counts(business["response_sla"], clinic="north", channel="portal", window="7d") == (
        0, 1)
    assert cell(business["sla_breach_backlog"], clinic="north", channel="portal"
                ).counts["value"] == 1
    # Sunday reply to a Sunday message: 0 business seconds; urgent Mon 07:00 -> 10:00: 2 h.
    h = cell(business["first_response_time"], clinic="north", channel="portal", window="7d"
             ).histogram
    assert (h.count, h.sum) == (2, 7200.0)


def test_answer_speed_counts_straight_to_agent_as_zero(results: dict[str, KpiResult]) -> None:
    h = cell(results["call_answer_wait"], clinic="north", queue="billing", window="1d").histogram
    assert (h.count, h.sum) == (3, 110.0)
    le = dict(zip(h.bounds, h.cumulative, strict=True))
    assert (le[5], le[20], le[90]) == (1, 2, 3)


def test_abandonment_leaves_out_short_abandons_and_ivr(results: dict[str, KpiResult]) -> None:
    assert counts(results["call_abandonment"], clinic="north", queue="billing", window="1d") == (
        2, 5)
    assert counts(results["call_abandonment"], clinic="north", queue="billing", window="1h") == (
        0, 1)


def test_service_level_counts_abandons_after_threshold(results: dict[str, KpiResult]) -> None:
    assert counts(results["service_level"], clinic="north", queue="billing", window="1d") == (2, 4)


def test_first_contact_resolution_looks_for_repeats_within_7_days(
        results: dict[str, KpiResult]) -> None:
    assert counts(results["first_contact_resolution"], clinic="north", window="7d") == (2, 4)


def test_follow_up_needs_a_two_way_contact_within_2_business_days(
        results: dict[str, KpiResult]) -> None:
    r = results["follow_up"]
    assert counts(r, clinic="north", window="1h") == (0, 1)
    assert counts(r, clinic="north", window="1d") == (0, 2)
    assert counts(r, clinic="north", window="7d") == (2, 4)


def test_complaints_response_and_overdue(results: dict[str, KpiResult]) -> None:
    r = results["complaint_response"]
    assert counts(r, clinic="north", window="1d") == (0, 1)
    assert counts(r, clinic="north", window="7d") == (1, 2)
    assert counts(r, clinic="north", window="30d") == (2, 4)
    assert cell(results["overdue_complaints"], clinic="north").counts["value"] == 2


def test_survey_scores(results: dict[str, KpiResult]) -> None:
    assert counts(results["top_box"], clinic="north", window="1d") == (3, 5)
    assert counts(results["csat"], clinic="north", window="1d") == (1, 2)
    day = cell(results["nps"], clinic="north", window="1d").counts
    assert (day["promoters"], day["detractors"], day["responses"]) == (1, 0, 2)
    week = cell(results["nps"], clinic="north", window="7d").counts
    assert (week["promoters"], week["detractors"], week["responses"]) == (1, 3, 5)
    assert counts(results["detractor_follow_up"], clinic="north", window="7d") == (1, 2)
    assert counts(results["survey_response"], clinic="north", window="1d") == (1, 3)


def test_freshness_is_the_newest_record_not_in_the_future(results: dict[str, KpiResult]) -> None:
    newest = {c.label("entity"): c.counts["timestamp"] for c in results["freshness"].cells}
    assert newest["appointments"] == known_data.D(2026, 3, 2, 11, tzinfo=known_data.UTC
                                                  ).timestamp()
    assert newest["messages"] == known_data.D(2026, 3, 2, 9, tzinfo=known_data.UTC).timestamp()
    assert results["freshness"].unavailable is None


def test_unmapped_fields_make_a_kpi_unavailable(loaded: str) -> None:
    data = known_data.config(loaded)
    del data["entities"]["appointments"]["fields"]["departed"]
    del data["entities"]["calls"]
    config = config_module.parse(data, "known.yaml")
    out = {r.kpi.key: r for r in evaluate.unavailable(config, known_data.AS_OF)}
    assert out["visit_cycle_time"].unavailable == "appointments.departed not mapped"
    assert out["call_abandonment"].unavailable == "entity calls not mapped"
    assert "no_show" not in out

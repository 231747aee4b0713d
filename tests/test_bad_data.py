"""Bad rows never crash a refresh and never skew a KPI silently: each is left out with a
counted reason, or falls in no window; the numbers with the bad rows are known exactly."""

from __future__ import annotations

import pytest

from kpis.snapshot import KpiResult
from tests import known_data
from tests.test_kpi_numbers import cell, counts, evaluate_at


@pytest.fixture(scope="module")
def with_bad_rows(module_db_url: str) -> dict[str, KpiResult]:
    known_data.load(module_db_url)
    known_data.load_bad(module_db_url)
    results = evaluate_at(module_db_url)
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


def test_negative_and_implausible_waits_are_left_out(with_bad_rows: dict[str, KpiResult]
                                                     ) -> None:
    r = with_bad_rows["wait_to_be_seen"]
    h = cell(r, clinic="north", window="1d").histogram
    assert (h.count, h.sum) == (2, 2100.0)  # exactly the clean answer
    assert excluded(r, "negative_duration", clinic="north", window="1d") == 1
    assert excluded(r, "implausible_duration", clinic="north", window="1d") == 1


def test_a_booking_dated_1900_does_not_stretch_lead_times(with_bad_rows: dict[str, KpiResult]
                                                          ) -> None:
    r = with_bad_rows["lead_time"]
    h = cell(r, clinic="north", window="1d").histogram
    assert (h.count, h.sum) == (5, 14 * 86400.0)
    assert excluded(r, "implausible_duration", clinic="north", window="1d") == 1


def test_a_reply_before_receipt_is_not_scored(with_bad_rows: dict[str, KpiResult]) -> None:
    r = with_bad_rows["response_sla"]
    assert counts(r, clinic="north", channel="portal", window="1h") == (1, 2)
    assert excluded(r, "response_before_receipt", clinic="north", channel="portal",
                    window="1h") == 1
    first = with_bad_rows["first_response_time"]
    assert excluded(first, "negative_duration", clinic="north", channel="portal",
                    window="7d") == 1


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

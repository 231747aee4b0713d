"""Durations as users write them (kpis/durations.py) and the bounds every config key applies
(kpis/strict.py): pure code, the quick tier."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kpis import strict
from kpis.durations import Duration, format_seconds, parse


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30), ("15m", 900), ("2h", 7200), ("1d", 86400), ("1w", 604800), ("250ms", 0.25),
    (" 90 s ", 90), ("1.5h", 5400), (45, 45), (2.5, 2.5),
])
def test_units_become_seconds(text, seconds):
    assert parse(text) == Duration(seconds)


def test_business_days_only_where_an_sla_is_meant():
    assert parse("2bd", business=True) == Duration(0.0, 2.0)
    assert parse("2bd", business=True).is_business and str(parse("2bd", business=True)) == "2bd"
    with pytest.raises(ValueError, match="only allowed for SLAs"):
        parse("2bd")
    with pytest.raises(ValueError, match="longer than zero"):
        parse("0bd", business=True)


@pytest.mark.parametrize("text", ["", "5", "-5m", "5 minutes", "1y", "m", "1h30m", True, -1])
def test_anything_else_is_refused_with_what_was_expected(text):
    with pytest.raises(ValueError, match="duration"):
        parse(text)


@pytest.mark.parametrize(("seconds", "text"), [
    (3600, "1h"), (90, "90s"), (604800, "7d"), (86400 * 30, "30d"), (120, "2m"), (0.5, "0.5s"),
])
def test_seconds_print_in_their_shortest_exact_form(seconds, text):
    assert format_seconds(seconds) == text


@given(st.integers(min_value=1, max_value=10 * 366 * 86400))
def test_a_printed_duration_parses_back_to_the_same_seconds(seconds):
    assert parse(format_seconds(seconds)).seconds == seconds


@pytest.mark.parametrize("value", [float("inf"), float("nan"), "600w", 10 * 366 * 86400 + 1])
def test_config_durations_are_finite_and_at_most_ten_years(value):
    with pytest.raises(ValueError, match="finite and at most 10 years"):
        strict.duration(value)


def test_an_sla_is_positive_and_at_most_366_business_days():
    assert strict.sla_duration("366bd") == Duration(0.0, 366.0)
    with pytest.raises(ValueError, match="366 business days"):
        strict.sla_duration("367bd")
    with pytest.raises(ValueError, match="longer than zero"):
        strict.sla_duration("0s")


def test_window_intervals_name_the_window_they_refuse():
    assert strict.parse_window_intervals({"7d": "5m"}) == {Duration(604800): Duration(300)}
    with pytest.raises(ValueError, match=r"^30d: expected a duration"):
        strict.parse_window_intervals({"30d": "often"})

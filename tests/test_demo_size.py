"""The demo generator's size knob: a week of history where a week proves the point."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kpis.demo import generator

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)


def test_a_week_of_history_holds_only_that_week_and_keeps_its_planted_defects():
    data = generator.generate(NOW, days=7)
    naive_now = NOW.replace(tzinfo=None)
    starts = [r["slot_start"] for r in data.tables["appointment"]]
    past = [s for s in starts if s <= naive_now]
    assert past and min(past) >= naive_now - timedelta(days=8)
    received = [r["received_at"] for r in data.tables["portal_message"]]
    assert min(received) >= naive_now - timedelta(days=8)
    overall = [r for r in data.tables["survey_answer"] if r["score"] == 11]
    assert len(overall) == 1  # the out-of-range score the checks must find

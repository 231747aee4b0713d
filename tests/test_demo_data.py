"""The demo database: determinism, seeding on every dialect, its config, and KPI values.

The KPI values are computed here by an independent plain-Python reference over the generated
rows (not by the collectors): without incidents every KPI is within its catalog target, with
margin, for every clinic and overall; each incident pushes its KPI past the target.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
import yaml

from kpis import catalog
from kpis.config import parse
from kpis.demo import DIRTY_RECORDS, INCIDENTS, config_yaml, existing, generate, schema, seed
from kpis.errors import CareKPIError

NOW = datetime(2026, 3, 11, 19, 30, tzinfo=UTC)  # a Wednesday, 15:30 in New York (EDT)
MONDAY_EARLY = datetime(2026, 3, 16, 10, 0, tzinfo=UTC)  # Monday 06:00 New York: clinics shut
NY = ZoneInfo("America/New_York")
WINDOWS = {"1h": 3600, "1d": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
STATUS = {"SCH": "booked", "ARR": "arrived", "CHK": "checked-in", "CMP": "fulfilled",
          "CAN": "cancelled", "RSC": "cancelled", "NOS": "noshow", "ERR": "entered-in-error",
          "PND": "pending", "WL": "waitlist"}
SEEN = {"fulfilled", "arrived", "checked-in", "noshow"}
NOT_BOOKED = {"proposed", "pending", "waitlist", "entered-in-error", None}
H = timedelta(hours=1)
Rows = list[dict[str, Any]]


# ---------------------------------------------------------------- reference building blocks

class Clock:
    """Business time from the generated config's calendar (Mon-Fri 08-18 New York)."""

    def __init__(self, holidays: Iterable[date]) -> None:
        self.holidays = set(holidays)

    def _span(self, day: date) -> tuple[datetime, datetime] | None:
        if day.weekday() >= 5 or day in self.holidays:
            return None
        return tuple(  # type: ignore[return-value]
            datetime.combine(day, t, NY).astimezone(UTC).replace(tzinfo=None)
            for t in (time(8), time(18)))

    def add(self, moment: datetime, seconds: float) -> datetime:
        day = moment.replace(tzinfo=UTC).astimezone(NY).date()
        while True:
            span = self._span(day)
            if span and max(moment, span[0]) < span[1]:
                start = max(moment, span[0])
                left = (span[1] - start).total_seconds()
                if seconds <= left:
                    return start + timedelta(seconds=seconds)
                seconds -= left
            day += timedelta(days=1)

    def between(self, a: datetime, b: datetime) -> float:
        total, day = 0.0, a.replace(tzinfo=UTC).astimezone(NY).date()
        last = b.replace(tzinfo=UTC).astimezone(NY).date()
        while day <= last:
            span = self._span(day)
            if span:
                total += max(0.0, (min(b, span[1]) - max(a, span[0])).total_seconds())
            day += timedelta(days=1)
        return total


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Reference:
    """KPI values per clinic (and None = overall) from in-memory rows."""

    def __init__(self, tables: dict[str, Rows], now: datetime, clock: Clock) -> None:
        self.t, self.now, self.clock = tables, now.replace(tzinfo=None), clock

    def since(self, window: str) -> datetime:
        return self.now - timedelta(seconds=WINDOWS[window])

    def _in(self, moment: datetime | None, window: str) -> bool:
        return moment is not None and self.since(window) < moment <= self.now

    def _by_clinic(self, rows: Iterable[dict[str, Any]]) -> dict[str | None, Rows]:
        groups: dict[str | None, Rows] = defaultdict(list)
        for row in rows:
            if row["site_code"] is not None:
                groups[row["site_code"]].append(row)
                groups[None].append(row)
        return groups

    def _ratio(self, rows: Iterable[dict[str, Any]], num: Callable[[dict[str, Any]], bool]
               ) -> dict[str | None, tuple[float, int]]:
        return {c: (sum(map(num, g)) / len(g), len(g)) for c, g in self._by_clinic(rows).items()}

    def _stat(self, rows: Iterable[dict[str, Any]], value: Callable[[dict[str, Any]], float],
              stat: Callable[[list[float]], float]) -> dict[str | None, tuple[float, int]]:
        return {c: (stat([value(r) for r in g]), len(g))
                for c, g in self._by_clinic(rows).items()}

    # access
    def appts(self, window: str) -> Rows:
        return [a for a in self.t["appointment"] if self._in(a["slot_start"], window)]

    def no_show(self, w: str = "7d") -> dict[str | None, tuple[float, int]]:
        rows = [a for a in self.appts(w) if STATUS.get(a["appt_status"]) in SEEN]
        return self._ratio(rows, lambda a: a["appt_status"] == "NOS")

    def late_cancellation(self, w: str = "7d") -> dict[str | None, tuple[float, int]]:
        rows = [a for a in self.appts(w) if STATUS.get(a["appt_status"]) not in NOT_BOOKED]
        return self._ratio(rows, lambda a: STATUS[a["appt_status"]] == "cancelled"
                           and a["slot_start"] - a["cancelled_at"] < 24 * H)

    def lead_time(self, w: str = "7d") -> dict[str | None, tuple[float, int]]:
        rows = [a for a in self.appts(w) if STATUS.get(a["appt_status"]) not in NOT_BOOKED]
        return self._stat(rows, lambda a: (a["slot_start"].date() - a["booked_at"].date()).days
                          * 86400.0, lambda v: quantile(v, 0.5))

    def wait(self, w: str = "1d") -> dict[str | None, tuple[float, int]]:
        rows = [a for a in self.appts(w) if a["checkin_at"] and a["provider_seen_at"]]
        return self._stat(rows, lambda a: (a["provider_seen_at"] - max(
            a["checkin_at"], a["slot_start"])).total_seconds(), lambda v: quantile(v, 0.9))

    def cycle(self, w: str = "1d") -> dict[str | None, tuple[float, int]]:
        rows = [a for a in self.appts(w) if a["checkin_at"] and a["checkout_at"]]
        return self._stat(rows, lambda a: (a["checkout_at"] - max(
            a["checkin_at"], a["slot_start"])).total_seconds(), lambda v: quantile(v, 0.5))

    def reminder_coverage(self, w: str = "1d") -> dict[str | None, tuple[float, int]]:
        rows = [a for a in self.appts(w) if STATUS.get(a["appt_status"]) not in NOT_BOOKED
                and a["slot_start"] - a["booked_at"] >= 48 * H
                and not (a["cancelled_at"] and a["cancelled_at"] < a["slot_start"] - 48 * H)]
        return self._ratio(rows, lambda a: a["first_reminder_at"] is not None and
                           a["slot_start"] - 48 * H <= a["first_reminder_at"]
                           <= a["slot_start"] - 24 * H)

    # messages
    def deadline(self, m: dict[str, Any]) -> datetime:
        sla = 4 * 3600.0 if m["priority"] == "urgent" else 36000.0
        return self.clock.add(m["received_at"], sla)

    def first_response(self, w: str = "1d") -> dict[str | None, tuple[float, int]]:
        rows = [m for m in self.t["portal_message"] if self._in(m["received_at"], w)
                and m["first_staff_reply_at"] and m["first_staff_reply_at"] <= self.now]
        return self._stat(rows, lambda m: self.clock.between(
            m["received_at"], m["first_staff_reply_at"]), lambda v: quantile(v, 0.9))

    def response_sla(self, w: str = "1d") -> dict[str | None, tuple[float, int]]:
        rows = [m for m in self.t["portal_message"] if self._in(self.deadline(m), w)]
        return self._ratio(rows, lambda m: m["first_staff_reply_at"] is not None
                           and m["first_staff_reply_at"] <= self.deadline(m))

    def backlog(self) -> dict[str | None, int]:
        late = [m for m in self.t["portal_message"] if self.deadline(m) <= self.now
                and (m["first_staff_reply_at"] is None or m["first_staff_reply_at"] > self.now)]
        return {c: len(g) for c, g in self._by_clinic(late).items()}

    # calls
    def offered(self, w: str = "1d") -> Rows:
        return [c for c in self.t["call_log"] if self._in(c["queue_entered_at"], w)
                and not (c["abandoned_at"] and
                         (c["abandoned_at"] - c["queue_entered_at"]).total_seconds() <= 5)]

    def asa(self, w: str = "1d") -> dict[str | None, tuple[float, int]]:
        rows = [c for c in self.offered(w) if c["answered_at"]]
        return self._stat(rows, lambda c: (c["answered_at"] - c["queue_entered_at"])
                          .total_seconds(), lambda v: sum(v) / len(v))

    def abandonment(self, w: str = "1d") -> dict[str | None, tuple[float, int]]:
        return self._ratio(self.offered(w), lambda c: c["abandoned_at"] is not None)

    def service_level(self, w: str = "1d") -> dict[str | None, tuple[float, int]]:
        def waited(c: dict[str, Any]) -> float:
            end = c["answered_at"] or c["abandoned_at"]
            return float((end - c["queue_entered_at"]).total_seconds())
        rows = [c for c in self.offered(w) if c["answered_at"] or
                (c["abandoned_at"] and waited(c) > 30)]
        return self._ratio(rows, lambda c: c["answered_at"] is not None and waited(c) <= 30)

    def fcr(self, w: str = "7d") -> dict[str | None, tuple[float, int]]:
        calls = [c for c in self.t["call_log"] if c["queue_entered_at"]]
        by_caller: dict[tuple[str, str], list[datetime]] = defaultdict(list)
        for c in calls:
            by_caller[(c["caller_phone"], c["reason_code"])].append(c["queue_entered_at"])
        rows = [c for c in calls if c["answered_at"] and c["caller_phone"] and c["reason_code"]
                and self._in(c["queue_entered_at"] + 7 * 24 * H, w)]

        def first_contact(c: dict[str, Any]) -> bool:
            t0 = c["queue_entered_at"]
            again = any(t0 < t <= t0 + 7 * 24 * H
                        for t in by_caller[(c["caller_phone"], c["reason_code"])])
            return bool(c["resolved"]) and not again
        return self._ratio(rows, first_contact)

    # follow-up, complaints
    def follow_up(self, w: str = "7d") -> dict[str | None, tuple[float, int]]:
        def due(f: dict[str, Any]) -> datetime:
            return self.clock.add(f["visit_end_at"], 72000.0)
        rows = [f for f in self.t["post_visit_followup"] if self._in(due(f), w)]
        return self._ratio(rows, lambda f: f["outcome"] == "REACHED"
                           and f["contact_at"] <= due(f))

    def complaint_response(self, w: str = "30d") -> dict[str | None, tuple[float, int]]:
        rows = [c for c in self.t["patient_complaint"]
                if self._in(c["received_at"] + 7 * 24 * H, w)]
        return self._ratio(rows, lambda c: c["responded_at"] is not None
                           and c["responded_at"] <= c["received_at"] + 7 * 24 * H)

    def overdue_complaints(self) -> int:
        return sum(1 for c in self.t["patient_complaint"]
                   if c["received_at"] < self.now - 7 * 24 * H
                   and (c["resolved_at"] is None or c["resolved_at"] > self.now))

    # experience
    def answers(self, w: str = "30d") -> Rows:
        return [a for a in self.t["survey_answer"] if self._in(a["submitted_at"], w)
                and a["score"] is not None]

    def top_box(self, w: str = "30d") -> dict[str | None, tuple[float, int]]:
        top = {"0-10": 9, "1-5": 5, "1-4": 4}
        return self._ratio(self.answers(w), lambda a: a["score"] >= top[a["scale"]])

    def nps(self, w: str = "30d") -> dict[str | None, tuple[float, int]]:
        rows = [a for a in self.answers(w) if a["item"] == "recommend"]
        return self._stat(rows, lambda a: 100.0 if a["score"] >= 9 else -100.0
                          if a["score"] <= 6 else 0.0, lambda v: sum(v) / len(v))

    def csat(self, w: str = "30d") -> dict[str | None, tuple[float, int]]:
        rows = [a for a in self.answers(w) if a["scale"] == "1-5"]
        return self._ratio(rows, lambda a: a["score"] >= 4)

    def survey_response(self, w: str = "30d") -> dict[str | None, tuple[float, int]]:
        rows = [i for i in self.t["survey_invite"] if self._in(i["sent_at"], w)]
        return self._ratio(rows, lambda i: i["completed_at"] is not None)

    def detractor_follow_up(self, w: str = "30d") -> dict[str | None, tuple[float, int]]:
        def due(a: dict[str, Any]) -> datetime:
            return self.clock.add(a["submitted_at"], 72000.0)
        rows = [a for a in self.t["survey_answer"] if a["item"] == "recommend"
                and a["score"] is not None and a["score"] <= 6 and self._in(due(a), w)]
        return self._ratio(rows, lambda a: a["detractor_contacted_at"] is not None
                           and a["detractor_contacted_at"] <= due(a))

    def newest(self) -> dict[str, datetime]:
        columns = {"appointment": "booked_at", "portal_message": "received_at",
                   "call_log": "queue_entered_at", "post_visit_followup": "visit_end_at",
                   "patient_complaint": "received_at", "survey_invite": "sent_at",
                   "survey_answer": "submitted_at"}
        return {t: max(r[c] for r in self.t[t] if r[c] is not None) for t, c in columns.items()}


# KPI key -> (reference method, margin that the value must keep from the target).
CHECKED = {
    "no_show": ("no_show", 0.02), "late_cancellation": ("late_cancellation", 0.01),
    "lead_time": ("lead_time", 86400), "wait_to_be_seen": ("wait", 300),
    "visit_cycle_time": ("cycle", 120), "reminder_coverage": ("reminder_coverage", 0.02),
    "first_response_time": ("first_response", 36000), "response_sla": ("response_sla", 0.03),
    "call_answer_wait": ("asa", 10), "call_abandonment": ("call_abandonment_ref", 0.01),
    "service_level": ("service_level", 0.05), "first_contact_resolution": ("fcr", 0.05),
    "follow_up": ("follow_up", 0.02), "complaint_response": ("complaint_response", 0.05),
    "top_box": ("top_box", 0.04), "nps": ("nps", 8), "csat": ("csat", 0.05),
    "survey_response": ("survey_response", 0.05),
    "detractor_follow_up": ("detractor_follow_up", 0.05),
}
Reference.call_abandonment_ref = Reference.abandonment  # type: ignore[attr-defined]


def _reference(now: datetime, incidents: tuple[str, ...] = ()) -> tuple[Reference, Any]:
    config = parse(yaml.safe_load(config_yaml("sqlite:///demo.db", now=now)), "carekpi.yaml")
    assert config.kpis.calendar is not None
    data = generate(now, incidents_on=incidents)
    return Reference(data.tables, now, Clock(config.kpis.calendar.holidays)), data


@pytest.fixture(scope="module")
def baseline() -> tuple[Reference, Any]:
    return _reference(NOW)


@pytest.fixture(scope="module")
def incident_ref() -> Reference:
    return _reference(NOW, tuple(INCIDENTS))[0]


def _evaluate(ref: Reference, key: str) -> dict[str | None, tuple[float, int]]:
    kpi = catalog.get(key)
    method, _margin = CHECKED[key]
    result: dict[str | None, tuple[float, int]] = getattr(ref, method)(kpi.alert_window)
    return result


# ---------------------------------------------------------------- tests

def test_same_seed_and_now_give_the_same_rows(baseline: tuple[Reference, Any]) -> None:
    again = generate(NOW)
    assert again.counts() == baseline[1].counts()
    digest = [hashlib.sha256(repr(d.tables).encode()).hexdigest() for d in (again, baseline[1])]
    assert digest[0] == digest[1]
    assert generate(NOW, seed=8).tables["appointment"][:50] != again.tables["appointment"][:50]


def test_volume_and_shape(baseline: tuple[Reference, Any]) -> None:
    ref, data = baseline
    counts = data.counts()
    assert 25_000 <= counts["appointment"] <= 40_000
    clinics = {a["site_code"] for a in ref.t["appointment"]} - {None}
    assert clinics == {"DTN", "RVL", "PED", "TEL"}
    future = [a for a in ref.t["appointment"] if a["slot_start"] > ref.now]
    assert max(a["slot_start"] for a in future) > ref.now + timedelta(days=50)
    for row in ref.t["appointment"]:
        if row["appt_status"] not in ("SCH", "PND", "WL") or row["slot_start"] <= ref.now:
            local = row["slot_start"].replace(tzinfo=UTC).astimezone(NY)
            on_demand = row["dept_code"] == "VUC"
            assert on_demand or (local.weekday() < 5 and 8 <= local.hour < 18)
    stamps = [v for t in ref.t.values() for r in t for k, v in r.items()
              if isinstance(v, datetime) and k != "slot_start"]
    assert max(stamps) <= ref.now  # nothing recorded in the future
    phones = {r["patient_phone"] for r in ref.t["appointment"]}
    assert all(re.fullmatch(r"\(\d{3}\) 555-01\d\d", p) for p in phones)


@pytest.mark.parametrize("key", sorted(CHECKED))
def test_every_kpi_within_target_with_margin(baseline: tuple[Reference, Any], key: str) -> None:
    kpi = catalog.get(key)
    assert kpi.target is not None
    values = _evaluate(baseline[0], key)
    assert values[None][1] >= kpi.min_volume  # the overall value is never vacuous
    margin = CHECKED[key][1]
    for clinic, (value, volume) in values.items():
        if volume < kpi.min_volume:
            continue
        tightened = kpi.target.value - margin if kpi.target.op == "<=" else \
            kpi.target.value + margin
        assert kpi.target.met(value) and kpi.target.met(tightened) and (
            value <= tightened if kpi.target.op == "<=" else value >= tightened
        ), f"{key} {clinic or 'overall'}: {value:.3f} over {volume} vs {kpi.target}"


def test_no_backlog_and_every_feed_fresh(baseline: tuple[Reference, Any]) -> None:
    ref = baseline[0]
    assert sum(ref.backlog().values()) == 0
    assert ref.overdue_complaints() == 0
    for table, newest in ref.newest().items():
        assert ref.now - newest < H, table
    # Messages received lately and not answered yet exist, but none is past its deadline.
    open_now = [m for m in ref.t["portal_message"] if m["first_staff_reply_at"] is None]
    assert open_now and all(ref.deadline(m) > ref.now for m in open_now)


def test_monday_before_opening_is_healthy_too() -> None:
    ref, _data = _reference(MONDAY_EARLY)
    assert sum(ref.backlog().values()) == 0
    for table, newest in ref.newest().items():
        assert ref.now - newest < H, table
    for key in CHECKED:
        kpi = catalog.get(key)
        assert kpi.target is not None
        for clinic, (value, volume) in _evaluate(ref, key).items():
            assert volume < kpi.min_volume or kpi.target.met(value), (key, clinic, value)


def test_each_incident_pushes_its_kpi_past_target(incident_ref: Reference) -> None:
    ref = incident_ref
    assert ref.backlog()["DTN"] >= 20
    assert ref.response_sla("1d")["DTN"][0] < 0.9
    assert ref.response_sla("1h")["DTN"][0] < 0.5
    assert ref.no_show("7d")["PED"][0] > 0.10
    assert ref.wait("1d")["DTN"][0] > 3600
    assert ref.abandonment("1d")[None][0] > 0.05
    for clinic, (value, volume) in ref.abandonment("1d").items():
        assert value > 0.05 or volume < 20, clinic
    assert ref.now - ref.newest()["appointment"] >= 6 * H


def test_incidents_leave_the_other_clinics_alone(incident_ref: Reference,
                                                 baseline: tuple[Reference, Any]) -> None:
    def delivered(ref: Reference) -> Reference:  # what the stale feed delivered
        cutoff = ref.now - 6 * H
        tables = {**ref.t, "appointment": [a for a in ref.t["appointment"]
                                           if a["booked_at"] <= cutoff]}
        return Reference(tables, ref.now, ref.clock)

    before, after = delivered(baseline[0]), delivered(incident_ref)
    assert after.no_show()["DTN"] == before.no_show()["DTN"]
    assert after.wait()["RVL"] == before.wait()["RVL"]
    assert incident_ref.backlog().get("RVL", 0) == 0


def test_unknown_incident_is_a_one_line_error() -> None:
    with pytest.raises(CareKPIError, match=r"'bogus'.*portal-backlog.*stale-feed"):
        generate(NOW, incidents_on=("bogus",))


def test_config_loads_and_maps_existing_columns() -> None:
    text = config_yaml("postgresql+psycopg://demo:s3cret@localhost/demo", now=NOW)
    config = parse(yaml.safe_load(text), "carekpi.yaml")
    assert config.sources["demo"].url.endswith("@localhost/demo")
    assert config.kpis.calendar is not None and date(2026, 1, 19) in config.kpis.calendar.holidays
    tables = {t.name: t for t in schema.metadata.tables.values()}
    for name, entity in config.entities.items():
        assert entity.table in tables, name
        for field, column in entity.fields.items():
            assert isinstance(column, str) and column in tables[entity.table].c, (name, field)
    assert "#" in text  # the example is commented for users


@functools.cache
def _stale_feed_counts() -> dict[str, int]:
    return generate(NOW, incidents_on=("stale-feed",)).counts()


def test_seed_on_every_dialect(db_url: str) -> None:
    summary = seed(db_url, now=NOW, incidents=("stale-feed",))
    expected = _stale_feed_counts()
    assert summary.rows == expected
    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            for table, count in expected.items():
                assert conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar_one() == count
            for dirty in DIRTY_RECORDS:
                sql = f"SELECT COUNT(*) FROM {dirty.table} WHERE {dirty.where}"
                assert int(conn.execute(sa.text(sql)).scalar_one()) == dirty.count, dirty
            first = conn.execute(sa.text(
                "SELECT MIN(slot_start) FROM appointment")).scalar_one()
            assert first is not None
            if engine.dialect.name == "postgresql":  # planned from statistics, not guesses
                unanalyzed = conn.execute(sa.text(
                    "SELECT relname FROM pg_stat_user_tables WHERE relname = ANY(:names) "
                    "AND last_analyze IS NULL AND last_autoanalyze IS NULL"),
                    {"names": list(expected)}).scalars().all()
                assert unanalyzed == []
    finally:
        engine.dispose()
    found = existing(db_url)
    assert found is not None
    assert (found.now, found.incidents, found.seed, found.rows) == (
        NOW, ("stale-feed",), 7, expected)


def test_existing_on_an_empty_or_missing_database(tmp_path: Any) -> None:
    assert existing(f"sqlite:///{tmp_path}/missing.db") is None
    assert not (tmp_path / "missing.db").exists()
    sa.create_engine(f"sqlite:///{tmp_path}/empty.db").connect().close()
    assert existing(f"sqlite:///{tmp_path}/empty.db") is None


def test_seed_errors_are_one_line_and_masked(tmp_path: Any) -> None:
    with pytest.raises(CareKPIError, match=r"^cannot seed demo database sqlite:///.*") as exc:
        seed(f"sqlite:///{tmp_path}/no/such/dir/demo.db", now=NOW)
    assert "\n" not in str(exc.value)
    with pytest.raises(CareKPIError) as exc:
        seed("postgresql+psycopg://demo:hunter2@127.0.0.1:1/demo", now=NOW)
    assert "hunter2" not in str(exc.value) and "***" in str(exc.value)


def test_dirty_manifest_matches_the_rows(baseline: tuple[Reference, Any]) -> None:
    tables = baseline[0].t
    codes = set(STATUS)
    appts = tables["appointment"]
    # Every local status code is mapped (config validate has nothing to warn about), the
    # later-added RSC "rescheduled" included.
    assert sum(a["appt_status"] not in codes for a in appts) == 0
    assert sum(a["appt_status"] == "RSC" for a in appts) > 0
    assert sum(bool(a["provider_seen_at"] and a["checkin_at"]
                    and a["provider_seen_at"] < a["checkin_at"]) for a in appts) == 2
    assert sum(a["site_code"] is None for a in appts) == 2
    assert sum(a["booked_at"] > a["slot_start"] for a in appts) == 2
    assert sum(bool(m["first_staff_reply_at"] and m["first_staff_reply_at"] < m["received_at"])
               for m in tables["portal_message"]) == 1
    assert sum(a["scale"] == "0-10" and a["score"] is not None and a["score"] > 10
               for a in tables["survey_answer"]) == 1
    assert {d.count for d in DIRTY_RECORDS} <= {1, 2, 3}


# KPIs whose counts the collectors must reproduce exactly (proportions, per clinic, summed over
# their channel/queue dimensions, at the alert window).
EXACT = ("no_show", "late_cancellation", "reminder_coverage", "response_sla",
         "call_abandonment", "service_level", "first_contact_resolution", "follow_up",
         "complaint_response", "csat", "survey_response", "detractor_follow_up")


def test_the_collectors_agree_with_the_reference(tmp_path: Any, incident_ref: Reference) -> None:
    """`carekpi collect` on the seeded demo gives the reference's counts."""
    carekpi = Path(sys.executable).parent / "carekpi"
    if not carekpi.exists():
        pytest.skip("the carekpi console script is not installed")
    url = f"sqlite:///{tmp_path}/demo.db"
    seed(url, now=NOW, incidents=tuple(INCIDENTS))
    config = tmp_path / "carekpi.yaml"
    config.write_text(config_yaml(url, now=NOW), encoding="utf-8")
    done = subprocess.run([str(carekpi), "collect", "--once", "--config", str(config),
                           "--as-of", "2026-03-11T19:30:00Z", "--format", "json"],
                          capture_output=True, text=True, timeout=600, check=True)
    kpis = {k["kpi"]: k for k in json.loads(done.stdout)["kpis"]}
    for key in EXACT:
        kpi = catalog.get(key)
        counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for cell in kpis[key]["results"]:
            if cell["window"] == kpi.alert_window:
                counts[cell["clinic"]][0] += cell["numerator"]
                counts[cell["clinic"]][1] += cell["denominator"]
        method = CHECKED[key][0]
        expected = {c: [round(v * n), n] for c, (v, n) in
                    getattr(incident_ref, method)(kpi.alert_window).items() if c is not None}
        assert {c: v for c, v in counts.items() if v[1]} == expected, key
    backlog = {c["clinic"]: 0 for c in kpis["sla_breach_backlog"]["results"]}
    for cell in kpis["sla_breach_backlog"]["results"]:
        backlog[cell["clinic"]] += cell["value"]
    assert backlog == {"DTN": 90, "PED": 0, "RVL": 0, "TEL": 0} == {
        c: incident_ref.backlog().get(c, 0) for c in backlog}
    fresh = {c["entity"]: c["age_seconds"] for c in kpis["freshness"]["results"]}
    assert fresh["appointments"] > 6 * 3600 and max(
        v for k, v in fresh.items() if k != "appointments") < 3600

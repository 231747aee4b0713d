"""Scheduling: appointments (scheduled visits and TEL's on-demand video visits), the reminders
sent for them, and the post-visit follow-up calls of the care team."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from kpis.demo import fake_identities as fake
from kpis.demo.clinics import (
    BUSINESS_DAY,
    CLINICS,
    VIRTUAL_URGENT_CARE,
    WEEKDAY_FACTOR,
    Clinic,
    local_hour,
    to_utc,
)
from kpis.demo.world import Row, World

SLOT_MINUTES = 20
CANCELLED = 0.09  # share of bookings cancelled, a fifth of them late (< 24 h)
LATE_CANCEL_SHARE = 0.18
SHORT_NOTICE_CANCELLED = 0.01
ENTERED_IN_ERROR = 0.003
# Reminders the system failed to send. Rare: PED books about 35 eligible visits a day against
# a 95 % target with a 20-visit minimum, so two misses in one day would breach it (at 0.005
# that happened in about one clean run in a hundred; at 0.001, one in a few thousand).
REMINDER_MISSED = 0.001
NO_SHOW_SPIKE = ("PED", 0.30)  # clinic and no-show probability during the incident
LONG_WAITS_CLINIC = "DTN"
# On-demand video visits per hour, by New York hour of day.
VUC_RATE = tuple(2.0 if h < 7 else 5.0 if h < 19 else 3.5 for h in range(24))


def generate(world: World) -> tuple[list[Row], list[Row]]:
    """Appointments and follow-ups: 90 days back, 60 days of future bookings."""
    appointments: list[Row] = []
    for clinic in CLINICS:
        world.stream(f"appointments:{clinic.code}")
        for day in world.days(world.first_day, world.last_day):
            if not world.clock.is_open_day(day):
                continue
            mean = clinic.daily_visits * WEEKDAY_FACTOR[day.weekday()]
            for _ in range(world.poisson(mean)):
                row = _scheduled(world, clinic, day)
                if row is not None:
                    appointments.append(row)
    world.stream("appointments:on-demand")
    appointments.extend(_on_demand(world))
    world.stream("follow-ups")
    follow_ups = [f for a in appointments if (f := _follow_up(world, a)) is not None]
    return appointments, follow_ups


def _clinic(code: str) -> Clinic:
    return next(c for c in CLINICS if c.code == code)


def _lead_days(world: World, clinic: Clinic) -> int:
    u = world.rng.random()
    if u < clinic.same_day:
        return 0
    if u < clinic.same_day + 0.25:
        return world.rng.randint(1, 2)
    if u < clinic.same_day + 0.55:
        return world.rng.randint(3, 10)
    return world.rng.randint(11, 60)


def _channel(world: World, clinic: Clinic) -> str:
    rng = world.rng
    if rng.random() < clinic.online_booking:
        return "APP" if rng.random() < 0.55 else "WEB"
    return "PHONE" if rng.random() < 0.75 else "DESK"


def _booked_at(world: World, slot: datetime, day: date, lead: int, channel: str) -> datetime:
    rng = world.rng
    if lead == 0:
        return max(slot - timedelta(hours=rng.uniform(0.5, 6)), to_utc(day, time(6, 30))) \
            if slot - to_utc(day, time(6, 30)) > timedelta(minutes=30) \
            else slot - timedelta(minutes=rng.uniform(15, 29))
    online = channel in ("WEB", "APP")
    hour = rng.uniform(6, 23.5) if online else rng.uniform(8, 17.9)
    booking_day = day - timedelta(days=lead)
    return to_utc(booking_day, time(int(hour), int(hour % 1 * 60)))


def _scheduled(world: World, clinic: Clinic, day: date) -> Row | None:
    rng = world.rng
    slot_index = rng.randrange(0, (10 * 60) // SLOT_MINUTES)
    slot = to_utc(day, time(8)) + timedelta(minutes=slot_index * SLOT_MINUTES)
    channel = _channel(world, clinic)
    booked = _booked_at(world, slot, day, _lead_days(world, clinic), channel)
    if booked > world.now:
        return None  # not booked yet
    virtual = rng.random() < clinic.telehealth
    row = _base(world, clinic.code, rng.choice(clinic.departments), slot, booked, channel, virtual)
    _fill_status(world, row, clinic)
    return row


def booking_row(world: World, clinic: Clinic, slot: datetime, booked: datetime) -> Row:
    """A plain online booking of a future slot (status booked)."""
    channel = "APP" if world.rng.random() < 0.5 else "WEB"
    dept = world.rng.choice(clinic.departments)
    return _base(world, clinic.code, dept, slot, booked, channel, False)


def _on_demand(world: World) -> list[Row]:
    """TEL's virtual urgent care: video visits around the clock, started minutes after request."""
    rows: list[Row] = []
    tel = _clinic("TEL")
    hour = world.start.replace(minute=0, second=0, microsecond=0)
    while hour < world.now:
        rate = VUC_RATE[int(local_hour(hour))]
        for _ in range(world.poisson(rate)):
            booked = hour + timedelta(seconds=world.rng.uniform(0, 3600))
            if booked > world.now:
                continue
            slot = booked + timedelta(minutes=world.rng.uniform(5, 25))
            channel = "APP" if world.rng.random() < 0.7 else "WEB"
            row = _base(world, tel.code, VIRTUAL_URGENT_CARE, slot, booked, channel, True)
            _fill_status(world, row, tel)
            rows.append(row)
        hour += timedelta(hours=1)
    return rows


def _base(world: World, clinic: str, dept: str, slot: datetime, booked: datetime, channel: str,
          virtual: bool) -> Row:
    rng = world.rng
    return {
        "appt_id": world.next_id("appointment"), "site_code": clinic, "dept_code": dept,
        "slot_start": slot, "booked_at": booked, "appt_status": "SCH", "cancelled_at": None,
        "checkin_at": None, "roomed_at": None, "provider_seen_at": None, "checkout_at": None,
        "book_channel": channel, "is_telehealth": virtual, "first_reminder_at": None,
        "patient_name": fake.name(rng), "patient_phone": fake.phone(rng), "mrn": fake.mrn(rng),
        "visit_note": None,
    }


def _cancel_time(world: World, slot: datetime, booked: datetime) -> datetime:
    rng = world.rng
    lead = slot - booked
    if rng.random() < LATE_CANCEL_SHARE or lead <= timedelta(hours=25):
        earliest = max(booked, slot - timedelta(hours=23))
        return earliest + (slot - timedelta(minutes=30) - earliest) * rng.random() \
            if slot - timedelta(minutes=30) > earliest else booked + (slot - booked) / 2
    return booked + (lead - timedelta(hours=24)) * rng.uniform(0.05, 0.98)


def _fill_status(world: World, row: Row, clinic: Clinic) -> None:
    rng, now = world.rng, world.now
    slot, booked = row["slot_start"], row["booked_at"]
    if rng.random() < ENTERED_IN_ERROR:
        row["appt_status"] = "ERR"
        return
    # Short-notice bookings are rarely cancelled; those that are, are cancelled late.
    chance = CANCELLED if slot - booked > timedelta(hours=25) else SHORT_NOTICE_CANCELLED
    cancel = _cancel_time(world, slot, booked) if rng.random() < chance else None
    _remind(world, row, cancel)
    if cancel is not None and cancel <= now:
        # RSC "rescheduled" (the patient moved to another slot): a code the scheduling system
        # added later, mapped to cancelled like CAN. Every tenth id, so no random draw changes.
        code = "RSC" if row["appt_id"] % 10 == 0 else "CAN"
        row["appt_status"], row["cancelled_at"] = code, cancel
        return
    if slot > now:
        u = rng.random()
        row["appt_status"] = "PND" if u < 0.01 else "WL" if u < 0.02 else "SCH"
        return
    no_show = clinic.no_show
    code, spike = NO_SHOW_SPIKE
    if "no-show-spike" in world.incidents and clinic.code == code \
            and slot >= now - timedelta(days=7):
        no_show = spike
    if rng.random() < no_show:
        # Front desks mark no-shows once the slot is well past; until then it stays booked.
        row["appt_status"] = "NOS" if slot < now - timedelta(hours=2) else "SCH"
        return
    _visit(world, row, clinic)


def _remind(world: World, row: Row, cancel: datetime | None) -> None:
    """One text reminder 25-47 h before the slot for bookings made at least 48 h ahead."""
    slot, booked = row["slot_start"], row["booked_at"]
    if slot - booked < timedelta(hours=48) or world.rng.random() < REMINDER_MISSED:
        return
    opens, closes = slot - timedelta(hours=47), slot - timedelta(hours=25)
    if cancel is not None:
        if cancel < slot - timedelta(hours=48):
            return
        closes = min(closes, cancel)
    row["first_reminder_at"] = world.past(opens + (closes - opens) * world.rng.random())


def _visit(world: World, row: Row, clinic: Clinic) -> None:
    rng, now = world.rng, world.now
    slot, virtual = row["slot_start"], row["is_telehealth"]
    if virtual:
        arrived = slot + timedelta(minutes=rng.uniform(-6, 3))
    else:
        arrived = slot + timedelta(minutes=max(-30.0, min(20.0, rng.gauss(-9, 7))))
    median = clinic.wait_median_min * (0.6 if virtual else 1.0)
    wait = world.minutes(median, 0.65, cap=80)
    extra = timedelta(minutes=rng.uniform(50, 110))  # drawn always: same stream either way
    if "long-waits" in world.incidents and row["site_code"] == LONG_WAITS_CLINIC \
            and not virtual and slot >= world.today_start():
        wait += extra
    seen = max(arrived, slot) + wait
    roomed = arrived + (seen - arrived) * rng.uniform(0.5, 0.95)
    out = seen + world.minutes(11, 0.3) + timedelta(minutes=0 if virtual else rng.uniform(1, 3))
    row.update(checkin_at=world.past(arrived), roomed_at=world.past(roomed),
               provider_seen_at=world.past(seen), checkout_at=world.past(out),
               visit_note=fake.note(rng))
    if out <= now:
        row["appt_status"] = "CMP"
    elif roomed <= now:
        row["appt_status"] = "CHK"
    elif arrived <= now:
        row["appt_status"] = "ARR"
    else:
        row["visit_note"] = None  # a late patient: still booked


def _follow_up(world: World, appt: Row) -> Row | None:
    """Post-visit call by the care team, due within 2 business days of the visit end."""
    rng = world.rng
    if appt["appt_status"] != "CMP":
        return None
    share = 0.5 if appt["dept_code"] == VIRTUAL_URGENT_CARE else _clinic(
        appt["site_code"]).follow_up_share
    if rng.random() >= share:
        return None
    end = appt["checkout_at"]
    return follow_up_row(world, appt["appt_id"], appt["site_code"], end)


def follow_up_row(world: World, appt_id: int | None, clinic: str, end: datetime) -> Row:
    rng, clock = world.rng, world.clock
    u = rng.random()
    if u < 0.985:
        outcome, at = "REACHED", clock.add(end, rng.uniform(0.1, 1.8) * BUSINESS_DAY)
    elif u < 0.992:
        outcome, at = "VM", clock.add(end, rng.uniform(0.2, 1.9) * BUSINESS_DAY)
    elif u < 0.996:
        outcome, at = "NOANS", clock.add(end, rng.uniform(0.2, 1.9) * BUSINESS_DAY)
    else:
        outcome, at = "REACHED", clock.add(end, rng.uniform(2.1, 3.5) * BUSINESS_DAY)
    contact = world.past(at)
    return {
        "followup_id": world.next_id("post_visit_followup"), "appt_id": appt_id,
        "site_code": clinic, "visit_end_at": end, "contact_at": contact,
        "outcome": outcome if contact is not None else None,
        "call_notes": fake.note(rng) if contact is not None else None,
    }

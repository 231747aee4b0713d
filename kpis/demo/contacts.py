"""Patient contacts: portal/email/chat messages, phone calls (clinic queues and the
around-the-clock nurse line) and written complaints."""

from __future__ import annotations

import math
from datetime import datetime, time, timedelta

from kpis.demo import fake_identities as fake
from kpis.demo.clinics import BUSINESS_DAY, CLINICS, WEEKDAY_FACTOR, local_date, local_hour, to_utc
from kpis.demo.world import Row, World

# Relative inbound volume by New York hour of day (patients write in the evening too).
MESSAGE_PROFILE = (1, 0.5, 0.3, 0.3, 0.3, 0.5, 1, 2, 4, 5, 5, 5, 4.5, 4.5, 4.5, 4, 4, 3.5, 3.5,
                   3.5, 3.5, 3, 2, 1.5)
CALL_PROFILE = (1.4, 1.3, 1.1, 1.0, 0.9, 1.0, 0.9, 0.8, 0.8, 0.7)  # 08:00..17:00 hours
URGENT = 0.08
ROUTINE_ON_TIME = 0.965
URGENT_SLA = timedelta(hours=4)
QUEUES = (("SCHED", 0.6, ("APPT", "REFERRAL", "OTHER")), ("CLIN", 0.25, ("RX", "RESULTS")),
          ("BILL", 0.15, ("BILLING",)))
NURSE_LINE_PER_HOUR = 3.0
ABANDON, SHORT_ABANDON, IVR_ONLY = 0.012, 0.03, 0.12
INCIDENT_ABANDON = 0.18
RESOLVED = 0.86
PORTAL_BACKLOG_CLINIC = "DTN"


def hours(world: World) -> list[datetime]:
    """Every whole UTC hour of the 90 days up to now."""
    first = world.start.replace(minute=0, second=0, microsecond=0)
    count = math.ceil((world.now - first).total_seconds() / 3600)
    return [first + timedelta(hours=i) for i in range(count)]


def messages(world: World) -> list[Row]:
    rows: list[Row] = []
    total = sum(MESSAGE_PROFILE)
    for hour in hours(world):
        weekend = not world.clock.is_open_day(local_date(hour))
        weight = MESSAGE_PROFILE[int(local_hour(hour))] / total * (0.4 if weekend else 1.0)
        for clinic in CLINICS:
            for _ in range(world.poisson(clinic.messages_per_day * weight)):
                received = hour + timedelta(seconds=world.rng.uniform(0, 3600))
                if received <= world.now:
                    rows.append(message_row(world, clinic.code, received))
    if "portal-backlog" in world.incidents:
        _stop_answering(world, rows)
    return rows


def message_row(world: World, clinic: str, received: datetime) -> Row:
    rng, clock = world.rng, world.clock
    if clock.is_open(received):
        channel = rng.choices(("portal", "email", "chat"), (0.70, 0.15, 0.15))[0]
    else:
        channel = "portal" if rng.random() < 0.85 else "email"
    priority = "urgent" if channel != "chat" and rng.random() < URGENT else "routine"
    if priority == "urgent":  # the on-call nurse answers urgent messages around the clock
        reply = received + world.minutes(40, 0.6, cap=200)
    elif channel == "chat":
        reply = received + world.minutes(3, 0.8, cap=60)
    elif rng.random() < ROUTINE_ON_TIME:
        delay = min(rng.lognormvariate(math.log(2.5 * 3600), 0.9), 0.95 * BUSINESS_DAY)
        reply = clock.add(received, delay)
    else:
        reply = clock.add(received, rng.uniform(1.02, 1.6) * BUSINESS_DAY)
        deadline = clock.add(received, BUSINESS_DAY)
        if deadline <= world.now < reply:  # late, but answered by now: never a backlog
            reply = deadline + (world.now - deadline) * rng.uniform(0.1, 0.9)
    ack = {"portal": timedelta(seconds=rng.uniform(2, 30)),
           "email": timedelta(seconds=rng.uniform(5, 60)) if rng.random() < 0.8 else None,
           "chat": None}[channel]
    return {
        "msg_id": world.next_id("portal_message"), "site_code": clinic, "channel": channel,
        "priority": priority, "received_at": received,
        "auto_ack_at": world.past(received + ack) if ack is not None else None,
        "first_staff_reply_at": world.past(reply), "sender_name": fake.name(rng),
        "subject": "DEMO subject", "body": "DEMO message body, synthetic.",
    }


def _stop_answering(world: World, rows: list[Row]) -> None:
    """The portal inbox of one clinic has not been worked for 1 business day + 6 business
    hours: every message whose deadline fell in the last ~6 business hours is unanswered."""
    since = world.clock.back(world.now, BUSINESS_DAY + 6 * 3600)
    for row in rows:
        reply = row["first_staff_reply_at"]
        if row["site_code"] == PORTAL_BACKLOG_CLINIC and row["channel"] == "portal" and (
                reply is None or reply > since):
            row["first_staff_reply_at"] = None


def calls(world: World) -> list[Row]:
    rows: list[Row] = []
    weights = [c.calls_per_day for c in CLINICS]
    for hour in hours(world):
        local = int(local_hour(hour))
        day = local_date(hour)
        if world.clock.is_open_day(day) and 8 <= local < 18:
            for clinic in CLINICS:
                mean = clinic.calls_per_day * WEEKDAY_FACTOR[day.weekday()] * \
                    CALL_PROFILE[local - 8] / sum(CALL_PROFILE)
                for _ in range(world.poisson(mean)):
                    queue, _share, reasons = world.rng.choices(QUEUES, [q[1] for q in QUEUES])[0]
                    start = hour + timedelta(seconds=world.rng.uniform(0, 3600))
                    rows.extend(_call_with_repeat(world, clinic.code, queue, reasons, start))
        for _ in range(world.poisson(NURSE_LINE_PER_HOUR)):
            clinic = world.rng.choices(CLINICS, weights)[0]
            start = hour + timedelta(seconds=world.rng.uniform(0, 3600))
            rows.extend(_call_with_repeat(world, clinic.code, "NURSE", ("TRIAGE",), start))
    return rows


def _call_with_repeat(world: World, clinic: str, queue: str, reasons: tuple[str, ...],
                      start: datetime) -> list[Row]:
    rng = world.rng
    caller, reason = fake.phone(rng), rng.choice(reasons)
    first = call_row(world, clinic, queue, start, caller, reason)
    if first is None:
        return []
    rows = [first]
    if first["answered_at"] is not None and not first["resolved"] and rng.random() < 0.5:
        day = local_date(start) + timedelta(days=rng.randint(1, 6))
        again = to_utc(day, time(8)) + timedelta(hours=rng.uniform(0, 9.5))
        if world.clock.is_open_day(day) and queue != "NURSE":
            second = call_row(world, clinic, queue, again, caller, reason)
            rows.extend([second] if second is not None else [])
    return rows


def call_row(world: World, clinic: str, queue: str, start: datetime, caller: str,
             reason: str) -> Row | None:
    rng = world.rng
    if start > world.now:
        return None
    row: Row = {
        "call_id": world.next_id("call_log"), "site_code": clinic, "queue_name": queue,
        "call_started_at": start, "queue_entered_at": None, "answered_at": None,
        "abandoned_at": None, "ended_at": None, "caller_phone": caller,
        "reason_code": reason, "resolved": None,
    }
    if rng.random() < IVR_ONLY:  # self-service (refills, directions): never reaches an agent
        row.update(queue_name=None, ended_at=world.past(start + timedelta(seconds=rng.uniform(
            30, 180))))
        return row
    entered = start + timedelta(seconds=rng.uniform(20, 90))
    if entered > world.now:
        return None
    row["queue_entered_at"] = entered
    abandon = INCIDENT_ABANDON if "call-abandonment" in world.incidents and \
        entered >= world.today_start() else ABANDON
    u = rng.random()
    if u < SHORT_ABANDON:
        gone = entered + timedelta(seconds=rng.uniform(1, 5))
        row.update(abandoned_at=world.past(gone), ended_at=world.past(gone))
    elif u < SHORT_ABANDON + abandon:
        gone = entered + timedelta(seconds=rng.uniform(20, 150))
        row.update(abandoned_at=world.past(gone), ended_at=world.past(gone))
    else:
        wait = rng.uniform(0, 3) if rng.random() < 0.4 else min(rng.expovariate(1 / 12), 300)
        answered = entered + timedelta(seconds=wait)
        ended = answered + world.minutes(4, 0.5)
        row.update(answered_at=world.past(answered), ended_at=world.past(ended),
                   resolved=(rng.random() < RESOLVED) if ended <= world.now else None)
    return row


def complaints(world: World) -> list[Row]:
    """Written complaints (web form, letters), any hour; answered within 7 days."""
    rows: list[Row] = []
    for hour in hours(world):
        for clinic in CLINICS:
            for _ in range(world.poisson(clinic.complaints_per_month / 30 / 24)):
                received = hour + timedelta(seconds=world.rng.uniform(0, 3600))
                if received <= world.now:
                    rows.append(complaint_row(world, clinic.code, received))
    return rows


def complaint_row(world: World, clinic: str, received: datetime) -> Row:
    rng = world.rng
    responded = received + timedelta(days=rng.uniform(0.3, 6.0))
    limit = received + timedelta(days=6.9)
    resolved = responded + (limit - responded) * rng.uniform(0.0, 0.9)
    return {
        "complaint_id": world.next_id("patient_complaint"), "site_code": clinic,
        "category": rng.choice(("WAIT", "BILLING", "STAFF", "ACCESS", "CARE")),
        "received_at": received, "responded_at": world.past(responded),
        "resolved_at": world.past(resolved), "complainant_name": fake.name(rng),
        "complaint_text": "DEMO complaint text, synthetic.",
    }

"""Patient experience: a survey invitation after each completed visit, and the answers of those
who respond (one row per item, CG-CAHPS-like items in clinics, a short post-visit survey at TEL).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from kpis.demo import fake_identities as fake
from kpis.demo.clinics import BUSINESS_DAY
from kpis.demo.world import Row, World

RESPONSE_RATE = 0.30
# Score distributions (score -> weight); top box 9-10 / 5 / 4.
ZERO_TEN = {10: 0.56, 9: 0.22, 8: 0.09, 7: 0.05, 6: 0.03, 5: 0.02, 4: 0.01, 3: 0.005, 2: 0.005,
            1: 0.0025, 0: 0.0075}
ONE_FIVE = {5: 0.74, 4: 0.18, 3: 0.04, 2: 0.02, 1: 0.02}
ONE_FOUR = {4: 0.84, 3: 0.11, 2: 0.03, 1: 0.02}
SCALES = {"0-10": ZERO_TEN, "1-5": ONE_FIVE, "1-4": ONE_FOUR}
INSTRUMENTS = {
    "CGCAHPS": (("overall", "0-10"), ("recommend", "0-10"), ("courtesy", "1-4")),
    "PVS": (("csat", "1-5"), ("recommend", "0-10")),
}
NOT_ANSWERED = 0.015
DETRACTOR_CONTACTED = 0.975


def invitations(world: World, appointments: list[Row]) -> list[Row]:
    """An SMS or e-mail invitation 1-3 h after every completed visit."""
    rows: list[Row] = []
    for appt in appointments:
        if appt["appt_status"] != "CMP":
            continue
        sent = appt["checkout_at"] + timedelta(hours=world.rng.uniform(1, 3))
        if sent <= world.now:
            rows.append(invitation_row(world, appt["appt_id"], appt["site_code"], sent))
    return rows


def invitation_row(world: World, appt_id: int | None, clinic: str, sent: datetime,
                   respond: bool | None = None) -> Row:
    rng = world.rng
    responds = rng.random() < RESPONSE_RATE if respond is None else respond
    completed = sent + world.minutes(180, 1.3, cap=7 * 24 * 60) if responds else None
    return {
        "invite_id": world.next_id("survey_invite"), "appt_id": appt_id, "site_code": clinic,
        "send_channel": "SMS" if rng.random() < 0.7 else "EMAIL", "sent_at": sent,
        "completed_at": world.past(completed), "patient_phone": fake.phone(rng),
    }


def answers(world: World, invites: list[Row]) -> list[Row]:
    rows: list[Row] = []
    for invite in invites:
        if invite["completed_at"] is not None:
            rows.extend(answer_rows(world, invite))
    return rows


def answer_rows(world: World, invite: Row) -> list[Row]:
    rng = world.rng
    instrument = "PVS" if invite["site_code"] == "TEL" else "CGCAHPS"
    submitted = invite["completed_at"]
    rows: list[Row] = []
    for item, scale in INSTRUMENTS[instrument]:
        dist = SCALES[scale]
        score = None if rng.random() < NOT_ANSWERED else rng.choices(
            list(dist), list(dist.values()))[0]
        contacted = None
        if item == "recommend" and score is not None and score <= 6:
            contacted = _detractor_contact(world, submitted)
        rows.append({
            "answer_id": world.next_id("survey_answer"), "invite_id": invite["invite_id"],
            "site_code": invite["site_code"], "submitted_at": submitted,
            "instrument": instrument, "item": item, "score": score, "scale": scale,
            "detractor_contacted_at": contacted,
            "comment_text": "DEMO comment, synthetic." if rng.random() < 0.2 else None,
        })
    return rows


def _detractor_contact(world: World, submitted: datetime) -> datetime | None:
    """The service-recovery call to a detractor, usually within 2 business days."""
    rng = world.rng
    if rng.random() < DETRACTOR_CONTACTED:
        return world.past(world.clock.add(submitted, rng.uniform(0.1, 1.8) * BUSINESS_DAY))
    if rng.random() < 0.5:
        return world.past(world.clock.add(submitted, rng.uniform(2.2, 4) * BUSINESS_DAY))
    return None

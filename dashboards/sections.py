"""Topic dashboards: access and scheduling, responsiveness, patient experience.

Each shows only the KPIs the config enables; a panel for a disabled KPI would stay empty.
"""

from __future__ import annotations

from collections.abc import Callable

from grafana_foundation_sdk.builders.dashboard import Dashboard

from dashboards import board
from dashboards.kpi_panels import counts, distribution, enabled, quantiles, tile, trend
from kpis import names
from kpis.catalog import Kpi
from kpis.config import Config

ACCESS_UID = "carekpi-access"
RESPONSIVENESS_UID = "carekpi-responsiveness"
EXPERIENCE_UID = "carekpi-experience"

Picker = Callable[[str], Kpi | None]


def _picker(config: Config | None) -> Picker:
    """Look up an enabled KPI by key (None when the config switches it off)."""
    available = {k.key: k for k in enabled(config)}
    return available.get


def access(config: Config | None) -> Dashboard:
    """No-shows (and why), lead time, waits, cycle time, reminders, cancellations, channels."""
    kpi = _picker(config)
    dash = board.new(
        ACCESS_UID, "CareKPI / Access and scheduling",
        "No-show and late-cancellation rates, reminder coverage, lead time, wait to be seen, "
        "visit cycle time and the online-booking and telehealth shares, per clinic.", config)
    dash = dash.with_row(board.row("No-shows"))
    if (no_show := kpi("no_show")) is not None:
        dash = dash.with_panel(tile(no_show, config, width=6))
        dash = dash.with_panel(trend(no_show, config, width=18))
    if (split := kpi("no_show_by_reminder")) is not None:
        note = "Split by whether a reminder was sent."
        dash = dash.with_panel(trend(split, config, by=("reminder",), note=note))
        note = "Split by lead-time bucket."
        dash = dash.with_panel(trend(split, config, by=("lead_time",), note=note))
    if (late := kpi("late_cancellation")) is not None:
        dash = dash.with_panel(trend(late, config))
    if (reminders := kpi("reminder_coverage")) is not None:
        dash = dash.with_panel(trend(reminders, config))
    dash = dash.with_row(board.row("Lead time and waits"))
    for key in ("lead_time", "wait_to_be_seen", "visit_cycle_time"):
        if (duration := kpi(key)) is not None:
            dash = dash.with_panel(tile(duration, config, width=6))
            dash = dash.with_panel(quantiles(duration, config, by=(names.CLINIC,), width=18))
    dash = dash.with_row(board.row("Booking channels"))
    for key in ("online_booking", "telehealth"):
        if (share := kpi(key)) is not None:
            dash = dash.with_panel(trend(share, config))
    return dash


def responsiveness(config: Config | None) -> Dashboard:
    """Portal SLAs, the breach backlog, the phone queue, follow-ups and complaints."""
    kpi = _picker(config)
    dash = board.new(
        RESPONSIVENESS_UID, "CareKPI / Responsiveness",
        "Portal response-SLA compliance and breach backlog, first-response times, the phone "
        "queue (speed of answer, abandonment, service level, first-contact resolution), "
        "follow-ups and complaints.", config)
    dash = dash.with_row(board.row("Patient messages"))
    if (sla := kpi("response_sla")) is not None:
        dash = dash.with_panel(tile(sla, config, width=6))
        dash = dash.with_panel(trend(sla, config, by=("channel",), width=18))
    if (backlog := kpi("sla_breach_backlog")) is not None:
        dash = dash.with_panel(tile(backlog, config, width=6))
        dash = dash.with_panel(trend(backlog, config, by=(names.CLINIC, "channel"), width=18))
    if (first := kpi("first_response_time")) is not None:
        dash = dash.with_panel(quantiles(first, config, by=("channel",)))
        dash = dash.with_panel(distribution(first, config))
    dash = dash.with_row(board.row("Phone queue"))
    if (asa := kpi("call_answer_wait")) is not None:
        dash = dash.with_panel(tile(asa, config, width=6))
        dash = dash.with_panel(trend(asa, config, by=("queue",), width=18))
    for key in ("call_abandonment", "service_level"):
        if (call_kpi := kpi(key)) is not None:
            dash = dash.with_panel(trend(call_kpi, config, by=("queue",)))
    if (fcr := kpi("first_contact_resolution")) is not None:
        dash = dash.with_panel(trend(fcr, config, width=24))
    dash = dash.with_row(board.row("Follow-up and complaints"))
    for key in ("follow_up", "complaint_response", "overdue_complaints"):
        if (loop := kpi(key)) is not None:
            dash = dash.with_panel(trend(loop, config, width=8))
    return dash


def experience(config: Config | None) -> Dashboard:
    """Satisfaction scores, how many answered, and whether detractors were called back."""
    kpi = _picker(config)
    dash = board.new(
        EXPERIENCE_UID, "CareKPI / Patient experience",
        "Top-box, Net Promoter Score and CSAT per clinic, survey volumes and response rate, "
        "and detractor follow-up.", config)
    dash = dash.with_row(board.row("Scores"))
    for key in ("top_box", "nps", "csat"):
        if (score := kpi(key)) is not None:
            dash = dash.with_panel(tile(score, config, width=6))
            dash = dash.with_panel(trend(score, config, width=18))
    dash = dash.with_row(board.row("Responses"))
    if (nps := kpi("nps")) is not None:
        note = "Answers to the recommend item, and how many were promoters and detractors."
        dash = dash.with_panel(counts(nps, names.SCORE_COUNTS, "NPS answers by clinic", note))
    if (rate := kpi("survey_response")) is not None:
        note = "Invitations sent (denominator) and completed (numerator)."
        dash = dash.with_panel(counts(rate, ("numerator", "denominator"),
                                      "Survey invitations and completions by clinic", note))
        dash = dash.with_panel(trend(rate, config))
    if (detractors := kpi("detractor_follow_up")) is not None:
        dash = dash.with_panel(trend(detractors, config))
    return dash

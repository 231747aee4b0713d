"""The demo hospital's LOCAL schema, as its scheduling, portal, call-center and survey systems
store it. Names deliberately differ from the logical model: the demo config maps them.

Timestamps are naive UTC. The PHI-like columns (names, phones, MRNs, free text) hold obviously
fake values and are never mapped by the config.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

appointment = sa.Table(
    "appointment", metadata,
    sa.Column("appt_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("site_code", sa.String(8)),
    sa.Column("dept_code", sa.String(8)),
    sa.Column("slot_start", sa.DateTime, nullable=False),
    sa.Column("booked_at", sa.DateTime, nullable=False),
    sa.Column("appt_status", sa.String(4), nullable=False),
    sa.Column("cancelled_at", sa.DateTime),
    sa.Column("checkin_at", sa.DateTime),
    sa.Column("roomed_at", sa.DateTime),
    sa.Column("provider_seen_at", sa.DateTime),
    sa.Column("checkout_at", sa.DateTime),
    sa.Column("book_channel", sa.String(8)),
    sa.Column("is_telehealth", sa.Boolean, nullable=False),
    sa.Column("first_reminder_at", sa.DateTime),
    sa.Column("patient_name", sa.String(80)),
    sa.Column("patient_phone", sa.String(20)),
    sa.Column("mrn", sa.String(16)),
    sa.Column("visit_note", sa.Text),
    sa.Index("ix_appointment_slot_start", "slot_start"),
    sa.Index("ix_appointment_booked_at", "booked_at"),
    sa.Index("ix_appointment_site_slot", "site_code", "slot_start"),
)

portal_message = sa.Table(
    "portal_message", metadata,
    sa.Column("msg_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("site_code", sa.String(8)),
    sa.Column("channel", sa.String(8), nullable=False),
    sa.Column("priority", sa.String(8), nullable=False),
    sa.Column("received_at", sa.DateTime, nullable=False),
    sa.Column("auto_ack_at", sa.DateTime),
    sa.Column("first_staff_reply_at", sa.DateTime),
    sa.Column("sender_name", sa.String(80)),
    sa.Column("subject", sa.String(200)),
    sa.Column("body", sa.Text),
    sa.Index("ix_portal_message_received_at", "received_at"),
    sa.Index("ix_portal_message_site_received", "site_code", "received_at"),
)

call_log = sa.Table(
    "call_log", metadata,
    sa.Column("call_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("site_code", sa.String(8)),
    sa.Column("queue_name", sa.String(16)),
    sa.Column("call_started_at", sa.DateTime, nullable=False),
    sa.Column("queue_entered_at", sa.DateTime),
    sa.Column("answered_at", sa.DateTime),
    sa.Column("abandoned_at", sa.DateTime),
    sa.Column("ended_at", sa.DateTime),
    sa.Column("caller_phone", sa.String(20)),
    sa.Column("reason_code", sa.String(12)),
    sa.Column("resolved", sa.Boolean),
    sa.Index("ix_call_log_queue_entered_at", "queue_entered_at"),
    sa.Index("ix_call_log_site_queue_entered", "site_code", "queue_entered_at"),
    sa.Index("ix_call_log_caller", "caller_phone", "queue_entered_at"),  # ANI look-ups
)

post_visit_followup = sa.Table(
    "post_visit_followup", metadata,
    sa.Column("followup_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("appt_id", sa.Integer),
    sa.Column("site_code", sa.String(8)),
    sa.Column("visit_end_at", sa.DateTime, nullable=False),
    sa.Column("contact_at", sa.DateTime),
    sa.Column("outcome", sa.String(8)),
    sa.Column("call_notes", sa.Text),
    sa.Index("ix_post_visit_followup_visit_end_at", "visit_end_at"),
    sa.Index("ix_post_visit_followup_site_visit_end", "site_code", "visit_end_at"),
)

patient_complaint = sa.Table(
    "patient_complaint", metadata,
    sa.Column("complaint_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("site_code", sa.String(8)),
    sa.Column("category", sa.String(16)),
    sa.Column("received_at", sa.DateTime, nullable=False),
    sa.Column("responded_at", sa.DateTime),
    sa.Column("resolved_at", sa.DateTime),
    sa.Column("complainant_name", sa.String(80)),
    sa.Column("complaint_text", sa.Text),
    sa.Index("ix_patient_complaint_received_at", "received_at"),
    sa.Index("ix_patient_complaint_site_received", "site_code", "received_at"),
)

survey_invite = sa.Table(
    "survey_invite", metadata,
    sa.Column("invite_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("appt_id", sa.Integer),
    sa.Column("site_code", sa.String(8)),
    sa.Column("send_channel", sa.String(8)),
    sa.Column("sent_at", sa.DateTime, nullable=False),
    sa.Column("completed_at", sa.DateTime),
    sa.Column("patient_phone", sa.String(20)),
    sa.Index("ix_survey_invite_sent_at", "sent_at"),
    sa.Index("ix_survey_invite_site_sent", "site_code", "sent_at"),
)

survey_answer = sa.Table(
    "survey_answer", metadata,
    sa.Column("answer_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("invite_id", sa.Integer),
    sa.Column("site_code", sa.String(8)),
    sa.Column("submitted_at", sa.DateTime, nullable=False),
    sa.Column("instrument", sa.String(16), nullable=False),
    sa.Column("item", sa.String(16), nullable=False),
    sa.Column("score", sa.Integer),
    sa.Column("scale", sa.String(8), nullable=False),
    sa.Column("detractor_contacted_at", sa.DateTime),
    sa.Column("comment_text", sa.Text),
    sa.Index("ix_survey_answer_submitted_at", "submitted_at"),
    sa.Index("ix_survey_answer_site_submitted", "site_code", "submitted_at"),
)

demo_meta = sa.Table(
    "carekpi_demo_meta", metadata,
    sa.Column("meta_key", sa.String(32), primary_key=True),
    sa.Column("meta_value", sa.String(400), nullable=False),
)

# Logical entity -> local table, in insertion order.
ENTITY_TABLES: dict[str, sa.Table] = {
    "appointments": appointment,
    "messages": portal_message,
    "calls": call_log,
    "follow_ups": post_visit_followup,
    "complaints": patient_complaint,
    "survey_invitations": survey_invite,
    "surveys": survey_answer,
}
DATA_TABLES: tuple[str, ...] = tuple(t.name for t in ENTITY_TABLES.values())

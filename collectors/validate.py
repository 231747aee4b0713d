"""``carekpi config validate``, live part: every mapped table, column and expression exists and
has a usable type; local codes present in the data but missing from the mapping are listed.

Findings name the entity and the logical field; code values are listed only for coded fields
(status, channel codes: configuration vocabulary, not patient data), at most 20 of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import sqlalchemy as sa

from kpis import model
from kpis.config import Config
from kpis.db.entity import ExactText, MappedEntity
from kpis.db.errors import describe, ping, probe_mapping, scrub
from kpis.label_values import personal_or_free_text

# What a record with an unmapped code becomes, where it is not simply "none of the codes"
# (collectors/access_plans.unmapped_code, call_plans, deadline_plans.sla_classes).
UNMAPPED_MEANS = {
    ("appointments", "status"): "left out of the KPIs that read it, counted as unmapped_status",
    ("calls", "outcome"): "left out of the KPIs that read it, counted as unmapped_outcome",
    ("messages", "priority"): "given the default SLA: no override matches them",
}
_CODE = re.compile(r"^[A-Za-z0-9_.\-]{1,16}$")


@dataclass(frozen=True)
class Finding:
    level: str  # "error" or "warning"
    where: str  # entities.<name>.fields.<field>
    message: str

    def __str__(self) -> str:
        return f"{self.level}: {self.where}: {self.message}"


def unreachable(config: Config, engines: dict[str, sa.Engine]) -> dict[str, str]:
    """Source name -> why it cannot be connected to, for every source an entity uses."""
    down: dict[str, str] = {}
    for name in sorted({entity.source for entity in config.entities.values()}):
        try:
            ping(engines[name])
        except sa.exc.DBAPIError as exc:
            down[name] = scrub(exc)
    return down


def check_live(config: Config, engines: dict[str, sa.Engine]) -> list[Finding]:
    """Findings for every entity: its columns, codes and SQL, on its live source."""
    findings: list[Finding] = []
    for name, entity in config.entities.items():
        mapped = MappedEntity(name, entity)
        where = f"entities.{name}"
        try:
            with engines[entity.source].connect() as conn:
                findings.extend(_check_entity(conn, mapped, where))
                conn.rollback()
        except sa.exc.DBAPIError as exc:
            findings.append(Finding("error", f"sources.{entity.source}",
                                    f"cannot query: {describe(exc)}"))
    return findings


def _check_entity(conn: sa.Connection, e: MappedEntity, where: str) -> list[Finding]:
    problems = probe_mapping(conn, e)
    findings = [Finding("error", p.where, p.message) for p in problems]
    if any(p.where in (f"{where}.table", f"{where}.query") for p in problems):
        return findings
    for field_name in e.config.fields:
        kind = e.fields[field_name].type
        # A boolean field with a code map (Y/N, S/N, T/F) is checked against the data too.
        if kind is model.FieldType.CODE or (kind is model.FieldType.BOOL
                                            and field_name in e.config.codes):
            findings.extend(_unmapped_codes(conn, e, field_name, where))
    if e.mapped("first_response", "auto_ack") and not problems:
        findings.extend(_response_is_acknowledgement(conn, e, where))
    return findings


def _response_is_acknowledgement(conn: sa.Connection, e: MappedEntity, where: str
                                 ) -> list[Finding]:
    """first_response equal to auto_ack in most messages that have both: the mapped response
    is the automatic acknowledgement, which never counts as one (M1), and M1 and M2 would
    read as met however long staff take."""
    response, ack = e.col("first_response"), e.col("auto_ack")
    both = sa.and_(response.is_not(None), ack.is_not(None))
    query = sa.select(sa.func.count(sa.case((both, 1))),
                      sa.func.count(sa.case((sa.and_(both, response == ack), 1))))
    try:
        with_both, equal = conn.execute(query.select_from(e.from_)).one()
    except sa.exc.DBAPIError as exc:
        conn.rollback()
        return [Finding("warning", f"{where}.fields.first_response",
                        f"could not be compared with auto_ack ({describe(exc)})")]
    if not with_both or equal * 2 <= with_both:
        return []
    return [Finding("warning", f"{where}.fields.first_response",
                    f"equals auto_ack in {equal} of {with_both} messages that have both: it "
                    "seems to hold the automatic acknowledgement, which never counts as a "
                    "response; map it to the first reply by staff")]


def _unmapped_codes(conn: sa.Connection, e: MappedEntity, name: str, where: str
                    ) -> list[Finding]:
    codes = e.config.codes.get(name)
    known = {str(c) for local in (codes or {}).values() for c in local} if codes else set(
        e.fields[name].codes)
    col = e.col(name)
    # Distinct byte for byte: MariaDB's collations would fold 'ns' and 'NS ' into 'NS'.
    query = sa.select(col, ExactText(col)).select_from(e.from_).where(
        col.is_not(None)).distinct().limit(1000)
    try:
        present = {str(row[0]) for row in conn.execute(query)}
    except sa.exc.DBAPIError:
        conn.rollback()
        return []
    unknown = sorted(present - known)
    if not unknown:
        return []
    # Only values shaped like codes, and that a label could carry, are shown; anything else
    # (free text typed into a code field, a name, a record or phone number: the column may be
    # mapped by mistake) is counted, never printed.
    code_like = [c for c in unknown if _CODE.match(c.strip()) and not personal_or_free_text(c)]
    shown = ", ".join(repr(c) for c in code_like[:20]) + (" ..." if len(code_like) > 20 else "")
    hidden = len(unknown) - len(code_like)
    other = f"{'; ' if code_like else ''}{hidden} value(s) that are not code-like, not shown" \
        if hidden else ""
    consequence = UNMAPPED_MEANS.get((e.name, name), "read as none of the mapped codes")
    return [Finding("warning", f"{where}.codes.{name}",
                    f"{len(unknown)} local code(s) in the data are not mapped (their records "
                    f"are {consequence}): {shown}{other}")]

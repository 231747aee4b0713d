"""Patient data never becomes a label, real place names do: values shaped like personal data
(phone-like digit runs, e-mail addresses, capitalised words with digits, free text, long values)
fold into ``other``; any printable Unicode letters, marks, digits, spaces and ordinary
punctuation stay, typographic apostrophes included. ``labels.allow`` exports only listed codes.

Checked through the exporter's real /metrics body on SQLite, PostgreSQL and MariaDB. Data by
construction (evaluated at AS_OF, every appointment starts 2 hours earlier): clinic value i of
VALUES has i + 1 appointments, the first of them a no-show.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from prometheus_client import CollectorRegistry

from collectors.service import Exporter
from kpis import catalog
from kpis import config as config_module
from kpis.errors import ConfigError
from kpis.label_values import personal_or_free_text
from tests.test_exporter import samples, scrape_when

AS_OF = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
PLACES = ["D\u00b4ARC", "S\u00e3o Jos\u00e9", "\u00d1u\u00f1oa", "Saint-\u00c9tienne",
          "D\u2019Arc-la-Vall\u00e9e", "Sa\u0303o Bento", "St. Mary's (North)", "CL-01", "A&E",
          "Centro de Sa\u00fade Dr. Ricardo Jorge", "Clinic 2", "12345"]
PERSONAL = ["Jane Doe, 555-0100", "jane.doe@example.org", "Maria Silva 12", "MRN 12345678",
            "1980-05-17", "+1 (555) 010-0100", "call back Tuesday about the bill please now",
            "x" * 65, "Doe!", "ZQX\tCANARY", "\U0001f600"]
VALUES = PLACES + PERSONAL
ALLOW = ["CL-01", "S\u00e3o Jos\u00e9", "Jane Doe, 555-0100"]  # an operator vouches for these

appt = sa.Table("appt", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True),
                sa.Column("site", sa.Unicode(200)), sa.Column("start_at", sa.DateTime),
                sa.Column("booked_at", sa.DateTime), sa.Column("st", sa.String(4)),
                mysql_charset="utf8mb4", mysql_collate="utf8mb4_bin")


@pytest.mark.parametrize("value", PLACES)
def test_real_names_and_codes_are_labels(value: str) -> None:
    assert not personal_or_free_text(value)


@pytest.mark.parametrize("value", PERSONAL)
def test_values_shaped_like_personal_data_are_not(value: str) -> None:
    assert personal_or_free_text(value)


def expected(exported: set[str]) -> dict[str, tuple[int, int]]:
    """(no-shows, appointments) per exported clinic label, everything else summed as other."""
    out: dict[str, tuple[int, int]] = {}
    for i, value in enumerate(VALUES):
        label = value if value in exported else "other"
        noshows, total = out.get(label, (0, 0))
        out[label] = (noshows + 1, total + i + 1)
    return out


@pytest.fixture(scope="module")
def clinic_db(module_db_url: str) -> str:
    start = (AS_OF - timedelta(hours=2)).replace(tzinfo=None)
    rows = [{"site": value, "st": "NS" if n == 0 else "OK"}
            for i, value in enumerate(VALUES) for n in range(i + 1)]
    for n, row in enumerate(rows):
        row.update(id=n + 1, start_at=start, booked_at=start - timedelta(days=3))
    engine = sa.create_engine(module_db_url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        appt.create(conn)
        conn.execute(appt.insert(), rows)
        stored = {r[0] for r in conn.execute(sa.select(appt.c.site))}
    engine.dispose()
    assert stored == set(VALUES)  # the database kept every character
    return module_db_url


def served(url: str, labels: dict) -> tuple[str, dict[str, tuple[float, float]]]:
    off = {key: {"enabled": False} for key in catalog.by_key() if key != "no_show"}
    config = config_module.parse({
        "version": 1, "sources": {"main": {"url": url, "refresh_interval": "1h"}},
        "entities": {"appointments": {
            "source": "main", "table": "appt",
            "fields": {"id": "id", "clinic": "site", "start": "start_at",
                       "created": "booked_at", "status": "st"},
            "codes": {"status": {"noshow": ["NS"], "fulfilled": ["OK"]}}}},
        "kpis": {**off, "no_show": {"min_volume": 0}}, "labels": labels}, "labels.yaml")
    exporter = Exporter(config, registry=CollectorRegistry(), clock=lambda: AS_OF)
    server = exporter.start("127.0.0.1", 0)
    try:
        text = scrape_when(f"{server.url}/metrics", "carekpi_no_show_numerator{", timeout=120)
    finally:
        exporter.stop()
    got = samples(text)
    per_clinic: dict[str, tuple[float, float]] = {}
    for (name, labels_), value in got.items():
        labels_ = dict(labels_)
        if name.startswith("carekpi_no_show_") and labels_.get("window") == "1d":
            n, d = per_clinic.get(labels_["clinic"], (0.0, 0.0))
            per_clinic[labels_["clinic"]] = ((n + value, d) if name.endswith("numerator")
                                             else (n, d + value))
    return text, per_clinic


def test_personal_data_folds_and_real_names_stay_in_the_exported_body(clinic_db: str) -> None:
    text, per_clinic = served(clinic_db, {})
    assert per_clinic == expected(set(PLACES))
    for value in PERSONAL:
        assert value not in text
    exported = {value for _, labels in samples(text) for _, value in labels}
    for needle in ("555", "jane", "Jane", "12345678", "1980-05-17", "CANARY"):
        # in no label value (a timing such as 0.018026000001555076 may well hold "555")
        assert not any(needle in value for value in exported), needle


def test_with_an_allowlist_only_the_listed_codes_are_exported(clinic_db: str) -> None:
    """The operator's list wins both ways: unlisted real names fold too, a listed value is
    exported as written (the operator vouched for it)."""
    text, per_clinic = served(clinic_db, {"allow": {"clinic": ALLOW}})
    assert per_clinic == expected(set(ALLOW))
    assert "\u00d1u\u00f1oa" not in text


@pytest.mark.parametrize(("allow", "key"), [
    ({"clinic": ["ok", "bad\nvalue"]}, "labels.allow.clinic.1"),
    ({"clinic": ["x" * 65]}, "labels.allow.clinic.0"),
    ({"clinic": [""]}, "labels.allow.clinic.0"),
    ({"patient_name": ["x"]}, "labels.allow.patient_name"),
    ({"clinic": "CL-01"}, "labels.allow.clinic"),
])
def test_the_allowlist_is_validated(allow: dict, key: str, tmp_path: Path) -> None:
    path = tmp_path / "carekpi.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "sources": {"db": {"url": "sqlite:///x.db"}},
                                    "labels": {"allow": allow}}))
    with pytest.raises(ConfigError) as caught:
        config_module.load(path)
    assert caught.value.key == key
    assert len(str(caught.value).splitlines()) == 1


def test_numeric_codes_in_the_allowlist_are_codes(tmp_path: Path) -> None:
    path = tmp_path / "carekpi.yaml"
    path.write_text("version: 1\nsources: {db: {url: 'sqlite:///x.db'}}\n"
                    "labels: {allow: {clinic: [101, CL-01]}}\n")
    assert config_module.load(path).labels.allowed("clinic") == {"101", "CL-01"}
    assert config_module.load(path).labels.allowed("queue") is None

"""The mapped entity as SQL has one implementation (kpis.db.entity): an entity ``query:`` ending
in ``;`` works for the KPIs, for ``config validate`` and for the data-quality checks alike."""

from __future__ import annotations

import sqlalchemy as sa

from checks import batches
from collectors import evaluate
from collectors.validate import check_live
from kpis import config as config_module
from kpis.db import engines
from kpis.db.entity import MappedEntity, entity_query
from tests import known_data


def test_entity_query_drops_blanks_and_trailing_semicolons():
    assert entity_query("  SELECT a FROM t;  \n") == "SELECT a FROM t"
    assert entity_query("SELECT a FROM t ;;") == "SELECT a FROM t"
    assert entity_query("SELECT ';' AS a FROM t") == "SELECT ';' AS a FROM t"


def _with_query(url: str, query: str) -> config_module.Config:
    document = known_data.config(url)
    appointments = document["entities"]["appointments"]
    del appointments["table"]
    appointments["query"] = query
    return config_module.parse(document, "carekpi.yaml")


def test_a_query_ending_in_semicolon_serves_kpis_validation_and_checks(db_url):
    known_data.load(db_url)
    table = config_module.parse(known_data.config(db_url), "carekpi.yaml")
    config = _with_query(db_url, "SELECT * FROM appt;\n")
    with engines.opened(config) as opened:
        expected = {(r.kpi.key, c.labels, tuple(sorted(c.counts.items())))
                    for r in evaluate.evaluate(table, opened, known_data.AS_OF, ["no_show"])
                    if r.kpi.key == "no_show" for c in r.cells}
        results = [r for r in evaluate.evaluate(config, opened, known_data.AS_OF, ["no_show"])
                   if r.kpi.key == "no_show"]
        assert results and all(r.error is None for r in results), [r.error for r in results]
        got = {(r.kpi.key, c.labels, tuple(sorted(c.counts.items())))
               for r in results for c in r.cells}
        assert got == expected and got
        assert not [f for f in check_live(config, opened) if f.level == "error"]
        engine = opened["main"]
        query = batches.check_query(config, config.checks, "appointments",
                                    engine.dialect, None)
        with engine.connect() as conn:
            rows = conn.execute(sa.text(query)).all()
    assert len(rows) == len(known_data.APPOINTMENTS)


def test_collectors_and_checks_read_the_same_from_clause():
    config = _with_query("sqlite:///unused.db", "SELECT * FROM appt;")
    entity = MappedEntity("appointments", config.entities["appointments"])
    compiled = str(sa.select(entity.expression("id")).select_from(entity.from_))
    assert "(SELECT * FROM appt) AS e" in compiled

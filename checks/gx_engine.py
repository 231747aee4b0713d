"""Great Expectations on CareKPI's own engines.

GX's SQL datasource takes a connection string and builds its engine from it; that engine would
have none of what :mod:`kpis.db.engines` sets up (read-only session, server-side statement
timeout, application name, SQLite ``mode=ro``, client-side deadlines). So every datasource the
checks use is bound to the source's CareKPI engine, for its inspector and for the execution
engine that runs the expectations' queries, and the binding is verified before a batch runs.
"""

from __future__ import annotations

import warnings
from typing import Any

import sqlalchemy as sa

from kpis.errors import CareKPIError


def sql_datasource(context: Any, name: str, engine: sa.Engine) -> Any:
    """A GX SQL datasource named ``name`` whose every query runs on ``engine``."""
    from great_expectations.execution_engine import SqlAlchemyExecutionEngine

    url = engine.url.render_as_string(hide_password=False)
    with warnings.catch_warnings():  # "a more specific datasource may be more appropriate"
        warnings.simplefilter("ignore")
        datasource = context.data_sources.add_or_update_sql(name, connection_string=url)
    # GX 1.x caches its engines in these private attributes, keyed by the datasource's own
    # settings; filling them with ours means GX never calls create_engine for this datasource.
    datasource._engine = engine
    datasource._cached_connection_string = datasource.connection_string
    datasource._execution_engine = SqlAlchemyExecutionEngine(
        engine=engine, create_temp_table=False)
    datasource._cached_execution_engine_kwargs = datasource.dict(
        exclude=datasource._get_exec_engine_excludes(),
        config_provider=datasource._config_provider, exclude_unset=False)
    return datasource


def verify(datasource: Any, engine: sa.Engine) -> None:
    """Refuse to run when GX would use an engine of its own (a GX upgrade changed its cache)."""
    if datasource.get_engine() is not engine or (
            datasource.get_execution_engine().engine is not engine):
        raise CareKPIError("Great Expectations did not take CareKPI's read-only engine; "
                           "the checks do not run on an unprotected connection (a CareKPI bug)")


def release(datasource: Any) -> None:
    """Return the connection GX's execution engine holds on to (for SQLite's temporary tables,
    which the checks do not use) to the pool, which is bounded."""
    execution = datasource._execution_engine
    connection = getattr(execution, "_connection", None)
    if connection is not None:
        connection.close()
        execution._connection = None

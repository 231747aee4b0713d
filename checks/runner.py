"""Runs the suites with Great Expectations 1.x over one ephemeral context per run.

GX is imported here, lazily: ``carekpi serve`` and the rest of the CLI never load it. Every
result is reduced to counts right here (:mod:`checks.results`); GX's own result objects, which
may carry row values, never leave this module. GX and database exceptions are reduced to a
static description, since their messages can quote values.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from checks import batches, counts, gx_engine, suites
from checks.results import MAX_KEYS, CheckResult
from checks.suites import CheckSpec
from kpis import checks_config, model
from kpis.config import Config, Entity
from kpis.db import engines as db_engines
from kpis.db import errors as db_errors
from kpis.db.entity import MappedEntity
from kpis.errors import CareKPIError, ConfigError

log = logging.getLogger(__name__)

RESULT_FORMAT = {
    "result_format": "BASIC",
    "partial_unexpected_count": 0,
    "exclude_unexpected_values": True,
    "return_unexpected_index_query": False,
    "include_unexpected_rows": False,
}
Progress = Callable[[str, int, int], None]  # (entity, done, total)


def run_suites(config: Config, entity: str | None = None, suite: str | None = None,
               since: timedelta | None = None, *, now: datetime | None = None,
               show_failing_keys: bool = False, progress: Progress | None = None,
               builtin_via_gx: bool = False) -> list[CheckResult]:
    """Run the built-in and custom checks; ``since=None`` checks every record.

    The built-in checks of an entity are counted in one aggregate statement
    (:mod:`checks.counts`); custom checks run through Great Expectations by name.
    ``builtin_via_gx`` runs the built-in checks through GX too (the parity test, the benchmark).

    Raises CareKPIError (ConfigError, SourceError) when the run cannot happen.
    """
    checks = config.checks
    if entity is not None and entity not in config.entities:
        raise ConfigError(config.path, "entities",
                          f"entity {entity!r} is not mapped (mapped: "
                          f"{', '.join(sorted(config.entities)) or 'none'})")
    if suite is not None and suite not in checks_config.SUITES:
        raise CareKPIError(f"unknown suite {suite!r}; one of {', '.join(checks_config.SUITES)}")
    now = now or datetime.now(UTC)
    specs = suites.select(config, checks, now, entity, suite)
    by_gx = [i for i, spec in enumerate(specs) if builtin_via_gx or not counts.supported(spec)]
    gx = _quiet_gx() if by_gx else None  # the built-in suite alone never imports GX
    expectations = {i: _expectation(gx, config, checks, specs[i], i) for i in by_gx}
    context = _context(gx) if by_gx else None
    by_entity: dict[str, list[int]] = {}
    for index, spec in enumerate(specs):
        by_entity.setdefault(spec.entity, []).append(index)
    results: dict[int, CheckResult] = {}
    engines: dict[str, sa.Engine] = {}
    try:
        for done, (name, indexes) in enumerate(by_entity.items()):
            if progress:
                progress(name, done, len(by_entity))
            bound = None
            if since is not None:
                local = suites.local_time(now, config.entities[name].timezone)
                bound = local - since
            engine = _engine(config, config.entities[name], engines)
            typed = _probe(config, name, engine)
            one_pass = [i for i in indexes if i not in expectations]
            if one_pass:
                fields = counts.fields_of(config, checks, name, typed)
                results.update(_run_counts(config, checks, name, engine, fields,
                                           [(i, specs[i]) for i in one_pass], bound, now,
                                           show_failing_keys))
            through_gx = [i for i in indexes if i in expectations]
            if through_gx:
                results.update(_run_entity(gx, context, config, checks, name, engine,
                                           [(i, specs[i], expectations[i]) for i in through_gx],
                                           bound, now, show_failing_keys))
        if progress:
            progress("", len(by_entity), len(by_entity))
    finally:
        for engine in engines.values():
            engine.dispose()
    return [results[i] for i in range(len(specs))]


def _run_counts(config: Config, checks: checks_config.ChecksConfig, name: str,
                engine: sa.Engine, fields: counts.Fields, work: list[tuple[int, CheckSpec]],
                bound: datetime | None, now: datetime,
                show_failing_keys: bool) -> dict[int, CheckResult]:
    """The built-in checks of one entity from one aggregate statement (checks.counts)."""
    select = batches.check_select(config, checks, name, bound)
    timezone = config.entities[name].timezone
    source = config.entities[name].source
    log.debug("checking %s: %d built-in checks in one statement", name, len(work))
    try:
        with engine.connect() as conn:
            started = time.perf_counter()
            found = counts.run(conn, select, [spec for _, spec in work], fields)
            # A record without its main timestamp is in no window, yet a windowed (scheduled)
            # run must still see that defect: the timestamp's completeness counts them too.
            stamp = model.FRESHNESS_FIELD.get(name)
            missing = int(conn.execute(batches.undated(config, name)).scalar() or 0) if (
                bound is not None and any(s.check == "completeness" and s.column == stamp
                                          for _, s in work)) else 0
            shared = (time.perf_counter() - started) / len(work)
            results: dict[int, CheckResult] = {}
            for (index, spec), measured in zip(work, found, strict=True):
                if missing and spec.check == "completeness" and spec.column == stamp:
                    measured = counts.Counts(measured.elements + missing,
                                             measured.considered + missing,
                                             measured.unexpected + missing)
                result = _counted(spec, measured, now, shared, timezone)
                if show_failing_keys and not result.passed:
                    started = time.perf_counter()
                    keys = counts.failing_keys(conn, select, spec, fields)
                    result = replace(result, failing_keys=tuple(sorted(keys, key=_key_order)),
                                     duration_seconds=shared + time.perf_counter() - started)
                results[index] = result
    except sa.exc.SQLAlchemyError as exc:  # the message may quote values
        raise CareKPIError(f"checks of {name} failed on source {source}: "
                           f"{type(exc).__name__} (details withheld: may contain patient data)"
                           ) from None
    return results


def _counted(spec: CheckSpec, measured: counts.Counts, now: datetime, elapsed: float,
             timezone: str) -> CheckResult:
    common = dict(entity=spec.entity, suite=spec.suite, check=spec.check, column=spec.column,
                  severity=spec.severity, expectation=spec.expectation,
                  threshold=spec.threshold, unit=spec.unit, duration_seconds=elapsed)
    if spec.check == "freshness":
        return _freshness(common, measured.maximum, now, timezone)
    considered = measured.considered
    observed = 1.0 - measured.unexpected / considered if considered > 0 else 1.0
    return CheckResult(**common, elements=measured.elements,  # type: ignore[arg-type]
                       unexpected=measured.unexpected, observed=observed,
                       passed=counts.verdict(spec, measured))


def _quiet_gx() -> Any:
    """Great Expectations, imported with its logging off: it logs a failed query at ERROR
    with the statement, its bound values and a traceback (stderr would carry them). A check
    it cannot evaluate is reported by the runner instead, in one line, details withheld."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    for name in ("great_expectations", "posthog", "backoff"):
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)
    import great_expectations as gx

    return gx


def _context(gx: Any) -> Any:
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    project = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
    )
    return gx.get_context(mode="ephemeral", project_config=project)


def _engine(config: Config, entity: Entity, engines: dict[str, sa.Engine]) -> sa.Engine:
    """The entity's source's engine, built like the collectors' (read-only session, statement
    timeout, application name), checked with one ``SELECT 1``. Its sessions run in the
    entity's zone: the bounds of ``--since`` and of the plausibility checks are the zone's
    wall-clock times, which PostgreSQL reads in the session zone against ``timestamptz``."""
    source = entity.source
    settings = config.sources[source]
    zone = entity.timezone if settings.backend == "postgresql" else "UTC"  # others: no matter
    key = f"{source} {zone}"
    if key in engines:
        return engines[key]
    try:
        engine = db_engines.create(source, settings, session_zone=zone)
        db_errors.ping(engine)
    except (sa.exc.SQLAlchemyError, ImportError) as exc:
        raise db_errors.unreachable(source, settings.masked_url, exc) from None
    engines[key] = engine
    return engine


def _expectation(gx: Any, config: Config, checks: checks_config.ChecksConfig,
                 spec: CheckSpec, index: int) -> Any:
    """The GX expectation object; a custom check's mistakes become one-line ConfigErrors."""
    from great_expectations.exceptions.exceptions import ExpectationNotFoundError
    from great_expectations.expectations.registry import get_expectation_impl
    from pydantic import ValidationError

    key = _custom_key(checks, spec)
    try:
        cls = get_expectation_impl(spec.expectation)
    except ExpectationNotFoundError:
        raise ConfigError(config.path, f"{key}.expectation",
                          f"unknown expectation {spec.expectation!r}") from None
    if spec.suite == "custom":
        mapped = config.entities[spec.entity].fields
        for column in suites.referenced_columns(spec):
            if column not in mapped:
                raise ConfigError(config.path, f"{key}.kwargs",
                                  f"column {column!r} is not a mapped field of {spec.entity} "
                                  f"(mapped: {', '.join(mapped)})")
    try:
        return cls(**spec.kwargs, meta={"carekpi": index})
    except (ValidationError, TypeError, ValueError) as exc:
        raise ConfigError(config.path, f"{key}.kwargs",
                          f"bad argument for {spec.expectation}: {_argument_error(exc)}") from None


def _custom_key(checks: checks_config.ChecksConfig, spec: CheckSpec) -> str:
    for index, custom in enumerate(checks.custom):
        if custom.entity == spec.entity and custom.check == spec.check and spec.suite == "custom":
            return f"checks.custom.{index}"
    return f"checks.{spec.entity}.{spec.check}"


def _argument_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        message = str(first.get("msg", "invalid"))
        if first.get("type") == "missing":
            message = "missing"
        return f"{where}: {message}" if where else message
    return str(exc).splitlines()[0][:200]


def _run_entity(gx: Any, context: Any, config: Config, checks: checks_config.ChecksConfig,
                name: str, engine: sa.Engine, work: list[tuple[int, CheckSpec, Any]],
                bound: datetime | None, now: datetime,
                show_failing_keys: bool) -> dict[int, CheckResult]:
    """Checks through GX over the entity's query asset, validated as one suite."""
    query = batches.check_query(config, checks, name, engine.dialect, bound)
    log.debug("checking %s with %d checks through GX", name, len(work))
    source = config.entities[name].source
    datasource = gx_engine.sql_datasource(context, f"{source}__{name}", engine)
    try:
        asset = datasource.add_query_asset(name, query=query)
        gx_engine.verify(datasource, engine)
        batch = asset.add_batch_definition_whole_table("all").get_batch()
        suite = gx.ExpectationSuite(name=f"carekpi_{name}")
        for _, _, expectation in work:
            suite.add_expectation(expectation)
        started = time.perf_counter()
        try:  # one validation of the whole suite
            validation = batch.validate(suite, result_format=RESULT_FORMAT)
        except Exception as exc:  # GX or the driver; the message may quote values
            raise CareKPIError(f"checks of {name} failed on source {source}: "
                               f"{type(exc).__name__} (details withheld: may contain patient "
                               "data)") from None
        elapsed = (time.perf_counter() - started) / len(work)  # each check's share
        outcomes = {(o.expectation_config.meta or {}).get("carekpi"): o
                    for o in validation.results}
        results: dict[int, CheckResult] = {}
        for index, spec, expectation in work:
            if index not in outcomes:
                raise CareKPIError(f"GX returned no result for {name} {spec.check} "
                                   "(a CareKPI bug)")
            result = _result(spec, outcomes[index], now, elapsed,
                             config.entities[name].timezone)
            if show_failing_keys and not result.passed and result.error is None:
                result = _with_keys(result, _failing_keys(batch, expectation))
            results[index] = result
        return results
    finally:  # GX keeps a SQLite connection per datasource; give it back to the pool
        gx_engine.release(datasource)


NEVER_TEXT = (sa.Integer, sa.Numeric, sa.Float, sa.Date, sa.DateTime, sa.Time, sa.Boolean,
              sa.Interval)


def _probe(config: Config, name: str, engine: sa.Engine) -> frozenset[str]:
    """Fail early, with a schema-level message, when the mapping does not work on the server.

    Returns the fields mapped to a plain column of a numeric or temporal database type (their
    blank test needs no text conversion)."""
    entity = config.entities[name]
    with engine.connect() as conn:
        problems = db_errors.probe_mapping(conn, MappedEntity(name, entity))
        if problems:
            raise ConfigError(config.path, problems[0].where, problems[0].message)
        if entity.table is None:
            return frozenset()
        try:
            types = {c["name"].lower(): c["type"]
                     for c in sa.inspect(conn).get_columns(entity.table, entity.db_schema)}
        except sa.exc.SQLAlchemyError:
            return frozenset()
    return frozenset(f for f, column in entity.fields.items() if isinstance(column, str)
                     and isinstance(types.get(column.lower()), NEVER_TEXT))


def _number(value: Any) -> int | None:
    return None if value is None else int(value)  # MySQL returns counts as floats


def _result(spec: CheckSpec, outcome: Any, now: datetime, elapsed: float,
            timezone: str) -> CheckResult:
    common = dict(entity=spec.entity, suite=spec.suite, check=spec.check, column=spec.column,
                  severity=spec.severity, expectation=spec.expectation,
                  threshold=spec.threshold, unit=spec.unit, duration_seconds=elapsed)
    info = outcome.exception_info or {}
    raised = [v for v in info.values() if isinstance(v, dict) and v.get("raised_exception")]
    if info.get("raised_exception") is True or raised:
        return CheckResult(**common, elements=None, unexpected=None, observed=None,  # type: ignore[arg-type]
                           passed=False, error="GX could not evaluate the check (details "
                           "withheld: may contain patient data)")
    result = outcome.result or {}
    if spec.check == "freshness":
        return _freshness(common, result.get("observed_value"), now, timezone)
    elements = _number(result.get("element_count"))
    unexpected = _number(result.get("unexpected_count"))
    missing = _number(result.get("missing_count")) or 0
    observed = None
    if elements is not None and unexpected is not None:
        checked = elements - missing
        observed = 1.0 - unexpected / checked if checked > 0 else 1.0
    return CheckResult(**common, elements=elements, unexpected=unexpected,  # type: ignore[arg-type]
                       observed=observed, passed=bool(outcome.success))


def _freshness(common: dict[str, Any], newest: Any, now: datetime,
               timezone: str) -> CheckResult:
    """The newest record's age in seconds (the timestamp itself is not reported)."""
    stamp: datetime | None = None
    if isinstance(newest, datetime):
        stamp = newest
    elif isinstance(newest, str):
        try:
            stamp = datetime.fromisoformat(newest)
        except ValueError:
            stamp = None
    age = None
    if stamp is not None:
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=__import__("zoneinfo").ZoneInfo(timezone))
        age = max(0.0, (now - stamp).total_seconds())
    threshold = common["threshold"]
    passed = age is not None and age <= threshold
    return CheckResult(**common, elements=None, unexpected=None, observed=age, passed=passed)


def _failing_keys(batch: Any, expectation: Any) -> tuple[str, ...]:
    """Primary keys of failing rows, via GX's index list; every other column is dropped."""
    if not getattr(expectation, "map_metric", None):
        return ()
    result_format = {"result_format": "COMPLETE", "partial_unexpected_count": MAX_KEYS,
                     "exclude_unexpected_values": True, "return_unexpected_index_query": False,
                     "unexpected_index_column_names": [suites.KEY]}
    try:
        outcome = batch.validate(expectation, result_format=result_format)
    except Exception:  # the keys are an extra; the counts stand without them
        log.warning("failing keys unavailable for %s", type(expectation).__name__)
        return ()
    rows = (outcome.result or {}).get("unexpected_index_list") or []
    keys: list[str] = []
    for row in rows:  # {KEY: [k1, k2, ...]} or {KEY: k, <column>: ...}: only KEY is read
        value = row.get(suites.KEY) if isinstance(row, dict) else None
        keys.extend(str(v) for v in (value if isinstance(value, list) else [value])
                    if v is not None)
    return tuple(sorted(set(keys), key=_key_order)[:MAX_KEYS])


def _key_order(key: str) -> tuple[int, str]:
    return (0, key.zfill(20)) if key.isdigit() else (1, key)


def _with_keys(result: CheckResult, keys: tuple[str, ...]) -> CheckResult:
    from dataclasses import replace

    return replace(result, failing_keys=keys)

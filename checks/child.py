"""A check run in a child process: ``carekpi checks run --format json`` under a deadline and a
memory limit, its results handed back to the parent (the exporter) as parsed JSON.

The exporter never imports Great Expectations, pandas or their caches: only this module's
light code runs in its process. A child that outlives its deadline is killed with its whole
process group; one that exceeds its memory limit (RLIMIT_AS, set by the child on itself before
any import) fails with MemoryError. Either way every check of the run is reported as not
evaluated, with a static reason.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path

from checks import suites
from checks.results import CheckResult
from kpis import config as config_module
from kpis.checks_config import ChecksConfig
from kpis.config import Config

log = logging.getLogger(__name__)

# The child limits its own address space first, then runs the ordinary CLI.
PREAMBLE = ("import resource, sys; limit = int(sys.argv.pop(1)); "
            "resource.setrlimit(resource.RLIMIT_AS, (limit, limit)) if limit > 0 else None; ")
CHECKS_RUN = "from kpis.cli import main; main(prog_name='carekpi')"
_FIELDS = {f.name for f in fields(CheckResult)}


@dataclass(frozen=True)
class ChildRun:
    results: list[CheckResult]
    completed: bool  # False: killed, crashed or could not run (every check not evaluated)
    reason: str | None = None


def command(config_path: str, since_seconds: float | None, memory_limit: int,
            work: str = CHECKS_RUN) -> list[str]:
    window = ["--since", f"{int(since_seconds)}s"] if since_seconds else ["--full"]
    return [sys.executable, "-c", PREAMBLE + work, str(memory_limit), "checks", "run",
            "--config", config_path, "--format", "json", *window]


def run(config: Config, checks: ChecksConfig, since_seconds: float | None, deadline: float,
        memory_limit: int, now: datetime, work: str = CHECKS_RUN) -> ChildRun:
    """Run the checks in a child; never raises for what happens inside it."""
    with _config_file(config) as path:
        return _run(config, checks, path, since_seconds, deadline, memory_limit, now, work)


@contextlib.contextmanager
def _config_file(config: Config) -> Iterator[str]:
    """The config's own file, or (a config built in memory, like the demo's) a private copy
    that is removed after the run."""
    if Path(config.path).is_file():
        yield str(config.path)
        return
    import yaml

    handle, name = tempfile.mkstemp(prefix="carekpi-checks-", suffix=".yaml")  # mode 0600
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            yaml.safe_dump(config_module.document(config), out)
        yield name
    finally:
        Path(name).unlink(missing_ok=True)


def _run(config: Config, checks: ChecksConfig, path: str, since_seconds: float | None,
         deadline: float, memory_limit: int, now: datetime, work: str) -> ChildRun:
    argv = command(path, since_seconds, memory_limit, work)
    env = {**{k: v for k, v in os.environ.items() if k != "CAREKPI_DEBUG"},  # no tracebacks
           "GX_ANALYTICS_ENABLED": "false", "PYTHONUNBUFFERED": "1"}
    try:
        child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    except OSError as exc:
        return _not_evaluated(config, checks, now, f"the check run could not start "
                              f"({type(exc).__name__})")
    try:
        out, err = child.communicate(timeout=deadline)
    except subprocess.TimeoutExpired:
        _kill(child)
        return _not_evaluated(config, checks, now, f"the check run exceeded its deadline of "
                              f"{deadline:g}s and was killed")
    if child.returncode in (0, 1, 2):
        parsed = _parse(out)
        if parsed is not None:
            return ChildRun(parsed, True)
    stderr = err.decode("utf-8", "replace").strip().splitlines()
    last = stderr[-1] if stderr else ""
    if "MemoryError" in last or "Cannot allocate memory" in last:
        reason = f"the check run exceeded its memory limit of {memory_limit >> 20} MB"
    elif child.returncode < 0:
        reason = f"the check run died ({signal.Signals(-child.returncode).name})"
    elif last.startswith("carekpi: "):  # the CLI's own one-line message (no row values)
        reason = last.removeprefix("carekpi: ")[:300]
    else:
        reason = f"the check run failed (exit {child.returncode})"
    return _not_evaluated(config, checks, now, reason)


def _kill(child: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)  # the child and anything it started
    child.communicate()


def _parse(out: bytes) -> list[CheckResult] | None:
    try:
        report = json.loads(out)
        return [CheckResult(**{**{k: v for k, v in r.items() if k in _FIELDS},
                               "failing_keys": tuple(r.get("failing_keys") or ())})
                for r in report["results"]]
    except (ValueError, KeyError, TypeError):
        return None


def _not_evaluated(config: Config, checks: ChecksConfig, now: datetime,
                   reason: str) -> ChildRun:
    log.warning("scheduled checks not evaluated: %s", reason)
    results = [CheckResult(entity=s.entity, suite=s.suite, check=s.check, column=s.column,
                           severity=s.severity, expectation=s.expectation, elements=None,
                           unexpected=None, observed=None, threshold=s.threshold,
                           passed=False, unit=s.unit, error=reason)
               for s in suites.select(config, checks, now)]
    return ChildRun(results, False, reason)

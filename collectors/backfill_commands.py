"""``carekpi backfill``: KPI history into Prometheus, as the exporter would have seen it."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from kpis.commandline import config_option, instant
from kpis.errors import CareKPIError

CHECKPOINT_SECONDS = 10.0


def _moment(value: str, option: str) -> datetime:
    if value == "now":
        return datetime.now(UTC)
    try:
        return instant(value)
    except ValueError:
        also = ", a duration before --end such as 30d," if option == "--start" else ""
        raise CareKPIError(f"{option} {value!r}: expected an ISO 8601 time such as "
                           f"2026-03-01T00:00:00Z, a date{also} or now") from None


def _start(value: str, end: datetime) -> datetime:
    """--start: an instant, or a duration before --end (``30d``: the last 30 days)."""
    from kpis import durations
    from kpis.strict import MAX_DURATION_SECONDS

    try:
        back = durations.parse(value)
    except ValueError:
        return _moment(value, "--start")
    if not 0 < back.seconds <= MAX_DURATION_SECONDS:
        raise CareKPIError(f"--start {value}: a duration before --end must be positive and at "
                           "most 10 years")
    return end - timedelta(seconds=back.seconds)


def _aligned(moment: datetime, step: float, up: bool) -> datetime:
    """The nearest multiple of ``step`` since the epoch (dashboards query at such steps)."""
    seconds = moment.timestamp()
    n = -(-seconds // step) if up else seconds // step
    return datetime.fromtimestamp(n * step, UTC)


@click.command("backfill")
@config_option
@click.option("--start", help="First instant (ISO 8601 or a date), or a duration before "
                              "--end (30d); default: the oldest record the sources hold.")
@click.option("--end", default="now", show_default=True, help="Last instant (ISO 8601 or now).")
@click.option("--step", default="1h", show_default=True,
              help="Between instants; at most the smallest window, and dividing every window.")
@click.option("--tsdb", "tsdb", type=click.Path(file_okay=False, path_type=Path),
              help="Write Prometheus TSDB blocks into this folder (promtool).")
@click.option("--openmetrics", "openmetrics", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the OpenMetrics text (with timestamps) to this file.")
@click.option("--rules", is_flag=True,
              help="With --tsdb: also blocks of the recording rules over the same range.")
@click.option("--rules-file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="The recording rules for --rules (default: built from --config as "
                   "`carekpi alerts build` does).")
def backfill_command(config_path: str, start: str | None, end: str, step: str,
                     tsdb: Path | None, openmetrics: Path | None, rules: bool,
                     rules_file: Path | None) -> None:
    """Compute every KPI at each instant from --start to --end, exactly as `carekpi collect
    --as-of` would, and write it as TSDB blocks or OpenMetrics text.

    \b
    Reads each entity once over the whole range where the KPI allows it (see README:
    History). Interrupted? Run the same command again: it resumes without duplicates.
    """
    from kpis import config as config_module
    from kpis.durations import parse as parse_duration

    if (tsdb is None) == (openmetrics is None):
        raise CareKPIError("give exactly one of --tsdb DIR or --openmetrics FILE")
    if rules and tsdb is None:
        raise CareKPIError("--rules needs --tsdb (rules are evaluated on the raw blocks)")
    try:
        step_seconds = parse_duration(step).seconds
    except ValueError as exc:
        raise CareKPIError(f"--step {step!r}: {exc}") from None
    if step_seconds <= 0:
        raise CareKPIError(f"--step {step!r}: must be longer than zero")
    config = config_module.load(config_path)
    if rules_file is not None:  # read now: not after hours of raw backfill
        from collectors.history import recording_rules

        recording_rules([rules_file])
    output = tsdb if tsdb is not None else openmetrics
    assert output is not None
    options = {"config": hashlib.sha256(Path(config_path).read_bytes()).hexdigest()[:16],
               "start": start or "oldest", "end": end, "step": step_seconds,
               "output": "tsdb" if tsdb is not None else "openmetrics", "rules": rules}
    _run(config, Path(config_path), options, output, step_seconds, rules, rules_file)


def _run(config: Any, config_path: Path, options: dict[str, Any], output: Path, step: float,
         rules: bool, rules_file: Path | None) -> None:
    from collectors import history
    from collectors.backfill import Backfill, check
    from kpis.db.engines import create_all as create_engines

    state = history.state_folder(output)
    resumed = _resumed(state, output, options, step)
    writer = None
    if resumed is not None:
        grid, options = resumed
        writer = history.HistoryWriter(state, options)
        if writer.complete:
            click.echo(f"carekpi: {output} is already complete ({writer.samples:,} samples); "
                       f"remove {state} to backfill it again", err=True)
            return
    engines = create_engines(config)
    try:
        if writer is None:  # a new backfill: every check passes before any state is saved
            grid = _grid(config, engines, options, step)
            check(config, grid)
        if writer is None or writer.done < grid.count:  # else interrupted while writing out
            try:
                backfill = Backfill(config, engines, grid, first=writer.done if writer else 0)
                if writer is None:
                    writer = history.HistoryWriter(state, options)
                    (state / "grid.json").write_text(json.dumps({
                        "start": grid.start.isoformat(), "end": grid.end.isoformat()}))
                _write(backfill, writer)
            except KeyboardInterrupt:
                saved = writer.done if writer is not None else 0
                raise CareKPIError(f"interrupted: {saved:,} of {grid.count:,} instants are "
                                   "saved; run the same command again to resume") from None
    finally:
        for engine in engines.values():
            engine.dispose()
    writer.close()
    if options["output"] == "openmetrics":
        writer.assemble(output)
        click.echo(f"carekpi: {writer.samples:,} samples at {grid.count:,} instants -> "
                   f"{output}", err=True)
    else:
        # Every block (raw, then rules evaluated on them) is made aside and moved into the
        # output at the end: an interrupted run leaves none there, and its rerun no copies.
        work = history.scratch(state)
        made = work / "made"
        names = history.make_blocks(writer.families(), made, work)
        if rules:
            files = [rules_file] if rules_file else [_built_rules(config_path, work)]
            names += history.make_rule_blocks(made, names, files, grid.start.timestamp(),
                                              grid.end.timestamp(), step, made, work)
        history.move_blocks(made, output)
        shutil.rmtree(work, ignore_errors=True)
        click.echo(f"carekpi: {writer.samples:,} samples at {grid.count:,} instants -> "
                   f"{len(names)} blocks in {output}", err=True)
    writer.checkpoint(writer.done, complete=True)


def _grid(config: Any, engines: Any, options: dict[str, Any], step: float) -> Any:
    """The instants of a new backfill: ``now`` and the oldest record resolved once (the
    caller saves them, for a resume, once they pass every check)."""
    from collectors.backfill import Grid, oldest

    given_end = _moment(options["end"], "--end")
    end = _aligned(given_end, step, up=False)
    if options["start"] == "oldest":
        first = oldest(config, engines)
        if first is None:
            raise CareKPIError("the sources hold no record to start from; give --start")
    else:
        first = _start(options["start"], end)
    grid = Grid(_aligned(first, step, up=True), end, step)
    if grid.end < grid.start and options["start"] != "oldest":
        if given_end < first:
            raise CareKPIError(f"--end {options['end']} is before --start {options['start']}")
        from kpis.durations import format_seconds

        raise CareKPIError(f"no instant of the {format_seconds(step)} step lies between "
                           f"--start {options['start']} and --end {options['end']} (instants "
                           "are multiples of the step); widen the range or shorten --step")
    return grid


def _resumed(state: Path, output: Path, options: dict[str, Any], step: float
             ) -> tuple[Any, dict[str, Any]] | None:
    """The saved backfill to ``output`` these options continue: its instants and options.

    None when nothing was checkpointed (a refused or barely started run: whatever it left is
    removed, so the new run starts afresh). The same --start and --end text keeps the
    instants the first run resolved (``30d``, ``now``: the same command resumes hours
    later); other text must resolve to the same instants. Any other range, step, config or
    output kind is refused in one line: never another run's range, silently.
    """
    from collectors.backfill import Grid
    from kpis.durations import format_seconds

    if not (state / "state.json").exists():
        shutil.rmtree(state, ignore_errors=True)
        return None
    saved = json.loads((state / "state.json").read_text())
    fingerprint, complete = saved.get("fingerprint", {}), saved.get("complete", False)
    try:
        data = json.loads((state / "grid.json").read_text())
    except FileNotFoundError:
        raise CareKPIError(f"{output}: the backfill saved in {state} lacks its range "
                           "(grid.json); remove it to start over") from None
    start, end = datetime.fromisoformat(data["start"]), datetime.fromisoformat(data["end"])
    given_end = end if options["end"] == fingerprint.get("end") else _aligned(
        _moment(options["end"], "--end"), step, up=False)
    if options["start"] == fingerprint.get("start") and given_end == end:
        given_start: datetime | None = start
    elif options["start"] == "oldest":
        given_start = None  # the oldest record: a new run's, not the saved one's
    else:
        given_start = _aligned(_start(options["start"], given_end), step, up=True)
    differences = [
        f"{option} {options[key]} is {_shown(given)}, the saved run's "
        f"{fingerprint.get(key)} is {_shown(kept)}"
        for option, key, given, kept in (("--start", "start", given_start, start),
                                         ("--end", "end", given_end, end))
        if given != kept]
    if fingerprint.get("step") != step:
        differences.append(f"--step {format_seconds(step)}, the saved run's "
                           f"{format_seconds(fingerprint.get('step') or 0)}")
    if fingerprint.get("config") != options["config"]:
        differences.append("the config file differs from the saved run's")
    if fingerprint.get("output") != options["output"]:
        differences.append(f"--{options['output']}, the saved run's --{fingerprint.get('output')}")
    if fingerprint.get("rules") != options["rules"]:
        differences.append(f"--rules {'given' if options['rules'] else 'left out'}, unlike "
                           "the saved run")
    if differences:
        what = "complete backfill" if complete else "interrupted backfill"
        advice = (f"remove {state} to backfill it again" if complete else
                  f"give its options to resume it, or remove {state} to start over")
        raise CareKPIError(f"{output}: the {what} saved in {state} has other options "
                           f"({'; '.join(differences)}); {advice}")
    return Grid(start, end, step), {**options, "start": fingerprint.get("start"),
                                    "end": fingerprint.get("end")}


def _shown(moment: datetime | None) -> str:
    return "the oldest record" if moment is None else f"{moment:%Y-%m-%dT%H:%M:%SZ}"


def _write(backfill: Any, writer: Any) -> None:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from collectors.history import history_families
    from collectors.store import Store

    columns = (TextColumn("backfill"), BarColumn(), MofNCompleteColumn(),
               TextColumn("instants, {task.fields[samples]:,} samples"),
               TimeElapsedColumn(), TimeRemainingColumn())
    done, last = writer.done, time.monotonic()
    with Progress(*columns, console=Console(stderr=True)) as progress:
        task = progress.add_task("backfill", total=backfill.grid.count, completed=done,
                                 samples=writer.samples)
        for k in range(backfill.count):
            results = backfill.results(k)
            store = Store(backfill.config)
            store.put(results, 0.0)
            instant = backfill.instant(k)
            writer.add(history_families(store), instant.timestamp())
            progress.update(task, advance=1, samples=writer.samples)
            if time.monotonic() - last > CHECKPOINT_SECONDS:
                writer.checkpoint(done + k + 1)
                last = time.monotonic()
        writer.checkpoint(done + backfill.count)


def _built_rules(config_path: Path, work: Path) -> Path:
    """The recording rules for this config, as `carekpi alerts build` writes them."""
    out = work / "rules"
    done = subprocess.run([sys.executable, "-m", "kpis", "alerts", "build", "--config",
                           str(config_path), "--out", str(out)], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise CareKPIError(f"building the recording rules failed: "
                           f"{(done.stderr.strip().splitlines() or ['?'])[-1]}")
    return out / "recording.yaml"

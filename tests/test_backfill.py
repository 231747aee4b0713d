"""Backfill: every instant's series equal `collect --as-of` at that instant."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from collectors import evaluate
from collectors.backfill import SLOTTED, Backfill, BackfillError, Grid, _chunks
from kpis import config as config_module
from kpis.db.engines import create_all as create_engines
from kpis.snapshot import EXCLUDED
from tests import known_data

# Known data sits around 2026-03-02; New York's clocks go forward on 2026-03-08 at 02:00.
START = datetime(2026, 2, 27, 0, tzinfo=UTC)
END = datetime(2026, 3, 9, 12, tzinfo=UTC)
DST_CHANGE = datetime(2026, 3, 8, 7, tzinfo=UTC)  # 03:00 EDT, the first instant after it


def zoned(url: str, calendar: bool = False) -> config_module.Config:
    """The known mapping, its naive timestamps read as New York time."""
    data = known_data.config(url, calendar=calendar)
    for entity in data["entities"].values():
        entity["timezone"] = "America/New_York"
    return config_module.parse(data, "known.yaml")


@pytest.fixture(scope="module")
def loaded(module_db_url: str) -> str:
    known_data.load(module_db_url)
    return module_db_url


def snapshot(results: list[Any]) -> dict[tuple[Any, ...], Any]:
    return {(r.kpi.key, r.source, c.labels): (dict(c.counts), c.histogram, c.spread)
            for r in results if r.ok for c in r.cells}


def test_a_wide_unit_is_read_in_chunks_that_cover_the_range_once() -> None:
    hour = timedelta(hours=1)
    bounds = [START + i * hour for i in range(10)]
    assert list(_chunks(bounds, 4)) == [(bounds[0], bounds[4]), (bounds[4], bounds[8]),
                                        (bounds[8], bounds[9])]
    assert list(_chunks(bounds, len(bounds))) == [(bounds[0], bounds[9])]
    # A DST fall-back repeats a local hour: an empty chunk is left out, none overlaps.
    folded = [START, START + hour, START + hour, START + 2 * hour]
    assert list(_chunks(folded, 1)) == [(START, START + hour), (START + hour, START + 2 * hour)]


@pytest.mark.parametrize("calendar", [False, True], ids=["wall-clock", "business-calendar"])
def test_every_series_equals_collect_as_of_at_random_instants(loaded: str, calendar: bool
                                                              ) -> None:
    config = zoned(loaded, calendar)
    engines = create_engines(config)
    try:
        backfill = Backfill(config, engines, Grid(START, END, 3600.0))
        # Every KPI is read once for the whole range, none per instant.
        assert backfill.per_instant == []
        as_of = known_data.AS_OF
        picks = {int((as_of - START).total_seconds() // 3600),  # the data's own instant
                 int((DST_CHANGE - START).total_seconds() // 3600) - 1,  # around the change
                 int((DST_CHANGE - START).total_seconds() // 3600),
                 # a window boundary: as_of + 1d, when the 1d window has just left the data
                 int((as_of + timedelta(days=1) - START).total_seconds() // 3600),
                 *random.Random(18).sample(range(backfill.count), 4)}
        slotted = replayed = 0
        for k in sorted(picks):
            instant = backfill.instant(k)
            got = snapshot(backfill.results(k))
            expected = snapshot(evaluate.evaluate(config, engines, instant))
            assert got == expected, f"at {instant}"
            slotted += sum(1 for key in expected if key[0] in SLOTTED)
            replayed += sum(1 for key in expected if key[0] not in SLOTTED)
        assert slotted > 100 and replayed > 50  # both kinds had cells to compare
        k = min(picks)  # asked again, out of order: the replay sweeps from the start again
        assert snapshot(backfill.results(k)) == snapshot(
            evaluate.evaluate(config, engines, backfill.instant(k)))
    finally:
        for engine in engines.values():
            engine.dispose()


def test_exclusion_rules_leave_backfilled_series_as_they_leave_a_refresh(loaded: str) -> None:
    data = known_data.config(loaded)
    data["entities"]["appointments"]["exclude"] = "chan = 'PHONE'"
    data["entities"]["messages"]["codes"]["priority"] = {"routine": ["R"], "excluded": ["U"]}
    config = config_module.parse(data, "known.yaml")
    engines = create_engines(config)
    try:
        backfill = Backfill(config, engines, Grid(START, END, 3600.0))
        k = int((known_data.AS_OF - START).total_seconds() // 3600)
        expected = snapshot(evaluate.evaluate(config, engines, backfill.instant(k)))
        excluded = {reason: sum(counts.get(reason, 0) for counts, _, _ in expected.values())
                    for reason in (f"{EXCLUDED}excluded_by_rule", f"{EXCLUDED}excluded_code")}
        assert all(n > 0 for n in excluded.values()), excluded  # both rules matched records
        assert snapshot(backfill.results(k)) == expected
    finally:
        for engine in engines.values():
            engine.dispose()


@pytest.mark.parametrize(("grid", "expected"), [
    (Grid(END, START, 3600.0), "--end 2026-02-27T00:00:00Z is before --start 2026-03-09T12:00"),
    (Grid(START, END, 7200.0), "--step 2h is longer than the smallest window (1h)"),
    (Grid(START, END, 2400.0), "--step 40m does not divide the 1h window"),
])
def test_a_grid_the_slots_cannot_serve_is_refused(grid: Grid, expected: str) -> None:
    config = config_module.parse(known_data.config("sqlite://"), "known.yaml")
    with pytest.raises(BackfillError) as error:
        Backfill(config, {}, grid)
    assert str(error.value).startswith(expected)


def carekpi(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kpis", *args], capture_output=True,
                          text=True, check=False, timeout=600)


@pytest.fixture
def known_config(tmp_path: Path) -> Path:
    url = f"sqlite:///{tmp_path}/known.db"
    known_data.load(url)
    path = tmp_path / "carekpi.yaml"
    path.write_text(yaml.safe_dump(known_data.config(url)))
    return path


def test_openmetrics_output_resumes_without_duplicates(known_config: Path, tmp_path: Path
                                                       ) -> None:
    out = tmp_path / "history.om"
    args = ("backfill", "--config", str(known_config), "--start", "2026-03-02T00:00:00Z",
            "--end", "2026-03-02T12:00:00Z", "--step", "1h", "--openmetrics", str(out))
    whole = carekpi(*args)
    assert whole.returncode == 0, whole.stderr
    first = out.read_text()
    assert first.endswith("# EOF\n")
    series = [x.split()[-2:] for x in first.splitlines() if x.startswith(
        'carekpi_no_show_numerator{source="main",clinic="north",window="1d"}')]
    assert len(series) == 13  # one sample per instant, in time order
    assert series[-1] == ["1.0", "1772452800"]  # at 2026-03-02T12:00Z, as collect says
    state = tmp_path / ".history.om.carekpi-backfill"
    saved = json.loads((state / "state.json").read_text())
    assert saved["complete"] and saved["done"] == 13
    again = carekpi(*args)
    assert again.returncode == 0 and "already complete" in again.stderr
    interrupt(out, 5)  # the last checkpoint after 5 instants, half an instant written since
    resumed = carekpi(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert out.read_text() == first  # no sample lost, none twice


def test_tsdb_blocks_made_by_promtool_hold_the_samples(known_config: Path, tmp_path: Path
                                                       ) -> None:
    blocks = tmp_path / "blocks"
    done = carekpi("backfill", "--config", str(known_config), "--start", "2026-03-01",
                   "--end", "2026-03-02T12:00:00Z", "--tsdb", str(blocks))
    assert done.returncode == 0, done.stderr
    made = [p for p in blocks.iterdir() if (p / "meta.json").exists()]
    assert made
    dump = subprocess.run(["promtool", "tsdb", "dump", "--min-time=1772452800000",
                           "--max-time=1772452800000", str(blocks)],
                          capture_output=True, text=True, check=True).stdout
    assert ('{__name__="carekpi_no_show_numerator", clinic="north", source="main", '
            'window="1d"} 1 1772452800000') in dump
    # Every sample, once: the blocks (one per 2 h, each from its own promtool input) hold
    # exactly the samples of the OpenMetrics text of the same range.
    listed = subprocess.run(["promtool", "tsdb", "list", str(blocks)], capture_output=True,
                            text=True, check=True).stdout.splitlines()[1:]
    text = tmp_path / "history.om"
    assert carekpi("backfill", "--config", str(known_config), "--start", "2026-03-01",
                   "--end", "2026-03-02T12:00:00Z", "--openmetrics", str(text)).returncode == 0
    written = sum(1 for line in text.read_text().splitlines() if not line.startswith("#"))
    assert sum(int(line.split()[4]) for line in listed) == written
    assert len(listed) == len(made) == 19  # 2026-03-01T00:00 to 03-02T12:00, 2 h each


def test_a_start_given_as_a_duration_counts_back_from_the_end(known_config: Path,
                                                              tmp_path: Path) -> None:
    texts = []
    for start in ("1d", "2026-03-02"):
        out = tmp_path / f"{start}.om"
        done = carekpi("backfill", "--config", str(known_config), "--openmetrics", str(out),
                       "--start", start, "--end", "2026-03-03")
        assert done.returncode == 0, done.stderr
        texts.append(out.read_text())
    assert texts[0] == texts[1] and texts[0].count("\n") > 100


@pytest.mark.parametrize(("extra", "expected"), [
    (("--start", "2026-03-02", "--end", "2026-03-01"), "carekpi: --end 2026-03-01 is before "),
    (("--start", "2026-03-02T00:30:00Z", "--end", "2026-03-02T00:40:00Z"),
     "carekpi: no instant of the 1h step lies between --start 2026-03-02T00:30:00Z and "),
    (("--start", "2026-03-02", "--step", "2h"), "carekpi: --step 2h is longer than the "),
    (("--start", "yesterday"), "carekpi: --start 'yesterday': expected an ISO 8601 time"),
    (("--start", "0d"), "carekpi: --start 0d: a duration before --end must be positive"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(known_config: Path, tmp_path: Path,
                                                          extra: tuple[str, ...],
                                                          expected: str) -> None:
    out = tmp_path / "history.om"
    done = carekpi("backfill", "--config", str(known_config), "--openmetrics", str(out),
                   "--end", "2026-03-03", *extra)
    assert done.returncode == 2
    assert done.stderr.startswith(expected) and done.stderr.count("\n") == 1
    assert not out.exists()
    assert not state_of(out).exists()  # nothing a later run could mistake for its own


def state_of(out: Path) -> Path:
    """Where a backfill to ``out`` keeps what it needs to resume."""
    return out.parent / f".{out.name}.carekpi-backfill"


def instants(text: str) -> list[datetime]:
    """The instants an OpenMetrics output holds samples at."""
    stamps = {float(line.split()[-1]) for line in text.splitlines() if not line.startswith("#")}
    return [datetime.fromtimestamp(t, UTC) for t in sorted(stamps)]


def interrupt(out: Path, done: int) -> None:
    """As if the backfill to ``out`` had stopped at its checkpoint after ``done`` instants
    (with a few samples written since), before its output appeared."""
    state = state_of(out)
    saved = json.loads((state / "state.json").read_text())
    start = datetime.fromisoformat(json.loads((state / "grid.json").read_text())["start"])
    cut, kept = start.timestamp() + done * saved["fingerprint"]["step"], 0
    for name in saved["meta"]:
        part = state / "families" / f"{name}.txt"
        text = part.read_text()
        ok = "".join(x for x in text.splitlines(keepends=True) if float(x.split()[-1]) < cut)
        saved["lengths"][name] = len(ok.encode())
        kept += ok.count("\n")
        part.write_text(ok + text[len(ok):len(ok) + 60])
    saved.update(done=done, complete=False, samples=kept)
    (state / "state.json").write_text(json.dumps(saved))
    out.unlink()


MARCH_2 = ("--start", "2026-03-02T00:00:00Z", "--end", "2026-03-02T03:00:00Z", "--step", "1h")
HOURS = [datetime(2026, 3, 2, h, tzinfo=UTC) for h in range(4)]


def test_a_refused_run_leaves_nothing_that_changes_the_next_runs_range(known_config: Path,
                                                                        tmp_path: Path) -> None:
    out = tmp_path / "history.om"
    refused = carekpi("backfill", "--config", str(known_config), "--openmetrics", str(out),
                      "--start", "2d", "--step", "2h")
    assert refused.returncode == 2 and "--step 2h is longer than" in refused.stderr
    done = carekpi("backfill", "--config", str(known_config), "--openmetrics", str(out),
                   *MARCH_2)
    assert done.returncode == 0, done.stderr
    assert instants(out.read_text()) == HOURS  # its own range, not the refused run's


def test_a_run_stopped_before_its_first_checkpoint_is_started_afresh(known_config: Path,
                                                                     tmp_path: Path) -> None:
    out = tmp_path / "history.om"
    args = ("backfill", "--config", str(known_config), "--openmetrics", str(out))
    assert carekpi(*args, "--start", "2026-03-01", "--end", "2026-03-01T05:00:00Z"
                   ).returncode == 0
    (state_of(out) / "state.json").unlink()  # its range and samples saved, never checkpointed
    out.unlink()
    done = carekpi(*args, *MARCH_2)
    assert done.returncode == 0, done.stderr
    fresh = tmp_path / "fresh.om"
    assert carekpi("backfill", "--config", str(known_config), "--openmetrics", str(fresh),
                   *MARCH_2).returncode == 0
    assert out.read_text() == fresh.read_text()  # its own range, each sample once


@pytest.fixture
def interrupted(known_config: Path, tmp_path: Path) -> tuple[Path, str]:
    """A backfill of 2026-03-02 00:00 to 03:00 stopped after 2 of its 4 instants, and the
    text the whole run gives."""
    out = tmp_path / "history.om"
    done = carekpi("backfill", "--config", str(known_config), "--openmetrics", str(out),
                   *MARCH_2)
    assert done.returncode == 0, done.stderr
    whole = out.read_text()
    interrupt(out, done=2)
    return out, whole


@pytest.mark.parametrize(("changed", "difference"), [
    (("--start", "2026-03-01"), "--start 2026-03-01 is 2026-03-01T00:00:00Z, the saved run's "
                                "2026-03-02T00:00:00Z is 2026-03-02T00:00:00Z"),
    (("--end", "2026-03-03"), "--end 2026-03-03 is 2026-03-03T00:00:00Z, the saved run's "
                              "2026-03-02T03:00:00Z is 2026-03-02T03:00:00Z"),
    (("--step", "30m"), "--step 30m, the saved run's 1h"),
    (("--config", "edited"), "the config file differs from the saved run's"),
], ids=["start", "end", "step", "config"])
def test_resuming_with_other_options_is_refused_naming_the_output_and_the_difference(
        interrupted: tuple[Path, str], known_config: Path, changed: tuple[str, str],
        difference: str) -> None:
    out, whole = interrupted
    options = dict(zip(MARCH_2[::2], MARCH_2[1::2], strict=True))
    if changed[0] == "--config":
        known_config.write_text(known_config.read_text() + "# edited\n")
    else:
        options.update([changed])
    saved = (state_of(out) / "state.json").read_text()
    refused = carekpi("backfill", "--config", str(known_config), "--openmetrics", str(out),
                      *(x for pair in options.items() for x in pair))
    assert refused.returncode == 2
    assert refused.stderr.startswith(f"carekpi: {out}: the interrupted backfill saved in "
                                     f"{state_of(out)} has other options ({difference})")
    assert refused.stderr.count("\n") == 1
    assert not out.exists() and (state_of(out) / "state.json").read_text() == saved
    if changed[0] != "--config":  # the run's own options still resume it, nothing lost
        resumed = carekpi("backfill", "--config", str(known_config), "--openmetrics",
                          str(out), *MARCH_2)
        assert resumed.returncode == 0, resumed.stderr
        assert out.read_text() == whole


def test_the_same_instants_spelled_otherwise_resume(interrupted: tuple[Path, str],
                                                    known_config: Path) -> None:
    out, whole = interrupted
    resumed = carekpi("backfill", "--config", str(known_config), "--openmetrics", str(out),
                      "--start", "2026-03-02", "--end", "2026-03-02T03:00Z", "--step", "60m")
    assert resumed.returncode == 0, resumed.stderr
    assert out.read_text() == whole


def test_a_relative_run_resumes_over_the_instants_it_first_resolved(known_config: Path,
                                                                    tmp_path: Path) -> None:
    out = tmp_path / "history.om"
    args = ("backfill", "--config", str(known_config), "--openmetrics", str(out),
            "--start", "3h", "--end", "now")
    assert carekpi(*args).returncode == 0
    # As if that run had begun on 2026-03-02 at 03:00 and stopped at once: `now` was then.
    (state_of(out) / "grid.json").write_text(json.dumps(
        {"start": HOURS[0].isoformat(), "end": HOURS[-1].isoformat()}))
    interrupt(out, done=0)
    # Another duration counts back from that run's `now`, and is another range.
    other = carekpi("backfill", "--config", str(known_config), "--openmetrics", str(out),
                    "--start", "2h", "--end", "now")
    assert other.returncode == 2
    assert "(--start 2h is 2026-03-02T01:00:00Z, the saved run's 3h is 2026-03-02T00:00:00Z)" \
        in other.stderr
    resumed = carekpi(*args)  # the same command, however much later
    assert resumed.returncode == 0, resumed.stderr
    fresh = tmp_path / "fresh.om"
    assert carekpi("backfill", "--config", str(known_config), "--openmetrics", str(fresh),
                   *MARCH_2).returncode == 0
    assert out.read_text() == fresh.read_text()


@pytest.mark.parametrize(("text", "expected"), [
    ("groups: [\n", "YAML syntax error"),
    ("- just a list\n", "not a Prometheus rule file"),
    ("groups:\n- name: g\n  rules:\n  - record: r\n    labels: [a]\n    expr: up\n",
     "groups.0.rules.0: a recording rule needs an expr"),
])
def test_a_bad_rules_file_is_refused_before_any_work(known_config: Path, tmp_path: Path,
                                                     text: str, expected: str) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(text)
    blocks = tmp_path / "blocks"
    done = carekpi("backfill", "--config", str(known_config), "--tsdb", str(blocks), "--rules",
                   "--rules-file", str(rules), "--start", "2026-03-01", "--end", "2026-03-02")
    assert done.returncode == 2
    assert done.stderr.startswith(f"carekpi: {rules}") and expected in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert not blocks.exists() or not any(blocks.iterdir())


def test_a_family_first_written_after_the_last_checkpoint_is_not_written_twice(
        tmp_path: Path) -> None:
    """A KPI whose records start late writes its first samples after a checkpoint; a run
    stopped then must not keep them, or its resumption writes them again."""
    from prometheus_client.core import GaugeMetricFamily

    from collectors.history import HistoryWriter

    def family(name: str) -> GaugeMetricFamily:
        made = GaugeMetricFamily(name, name)
        made.add_metric([], 1.0)
        return made

    state = tmp_path / "state"
    writer = HistoryWriter(state, {"run": 1})
    writer.add([family("early")], 0.0)
    writer.checkpoint(1)
    writer.add([family("early"), family("late")], 60.0)  # then stopped, no checkpoint
    writer.close()
    resumed = HistoryWriter(state, {"run": 1})
    assert resumed.done == 1
    resumed.add([family("early"), family("late")], 60.0)
    resumed.checkpoint(2)
    resumed.assemble(tmp_path / "out.om")
    samples = [line.split()[0] for line in (tmp_path / "out.om").read_text().splitlines()
               if line and not line.startswith("#")]
    assert sorted(samples) == ["early", "early", "late"]
    assert resumed.samples == 3


def test_a_run_stopped_while_writing_its_output_finishes_it(known_config: Path,
                                                            tmp_path: Path) -> None:
    """Every instant written, the output not yet assembled: the rerun assembles it."""
    out = tmp_path / "history.om"
    first = carekpi("backfill", "--config", str(known_config), "--openmetrics", str(out),
                    *MARCH_2)
    assert first.returncode == 0, first.stderr
    whole = out.read_text()
    saved_path = state_of(out) / "state.json"
    saved = json.loads(saved_path.read_text())
    assert saved["done"] == len(HOURS)
    saved["complete"] = False
    saved_path.write_text(json.dumps(saved))
    out.unlink()
    again = carekpi("backfill", "--config", str(known_config), "--openmetrics", str(out),
                    *MARCH_2)
    assert again.returncode == 0, again.stderr
    assert out.read_text() == whole


def test_a_zero_step_is_one_line_exit_2(known_config: Path, tmp_path: Path) -> None:
    done = carekpi("backfill", "--config", str(known_config), "--openmetrics",
                   str(tmp_path / "h.om"), "--start", "2026-03-02", "--end", "2026-03-03",
                   "--step", "0s")
    assert done.returncode == 2
    assert done.stderr.strip() == "carekpi: --step '0s': must be longer than zero"

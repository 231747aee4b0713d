"""Backfilled samples as OpenMetrics text, resumable, and as Prometheus TSDB blocks.

OpenMetrics forbids interleaving families, while the backfill produces all families instant
by instant: each family's sample lines go to their own file in a state folder, and the text
is assembled family by family at the end. A checkpoint records every file's length with the
instants done, so an interrupted run resumes after the last checkpoint (files are cut back to
it: no sample twice). Outputs are written under a temporary name and renamed when complete;
blocks are made by Prometheus' own ``promtool tsdb create-blocks-from openmetrics`` (the
recording rules too, evaluated by a temporary Prometheus serving a hard-linked copy of the raw
blocks) and moved into the target folder only once all exist.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client.core import Metric
from prometheus_client.utils import floatToGoString

from collectors.exposition import CareKpiCollector
from collectors.store import Store
from kpis import catalog, names
from kpis.errors import CareKPIError

STATE_VERSION = 1


class HistoryError(CareKPIError):
    """A failed backfill output step: one line, exit 2."""


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _value(value: float) -> str:
    return str(floatToGoString(value))  # type: ignore[no-untyped-call]


def _timestamp(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else repr(seconds)


class HistoryWriter:
    """Sample lines per family in ``folder``; ``done`` instants survive an interruption."""

    def __init__(self, folder: Path, fingerprint: dict[str, Any]) -> None:
        self.folder = folder
        self.fingerprint = fingerprint
        self.meta: dict[str, list[str]] = {}  # family -> [type, help]
        self.done = 0
        self.samples = 0
        self.complete = False
        self._files: dict[str, Any] = {}
        state = folder / "state.json"
        if state.exists():
            saved = json.loads(state.read_text())
            if saved.get("fingerprint") != fingerprint:
                raise HistoryError(f"{folder}: holds a backfill with other options "
                                   f"({_differences(saved.get('fingerprint', {}), fingerprint)}"
                                   "); remove it to start over")
            self.meta, self.done = saved["meta"], saved["done"]
            self.samples, self.complete = saved["samples"], saved.get("complete", False)
            for name, length in saved["lengths"].items():
                with open(self._path(name), "r+b") as part:
                    part.truncate(length)  # what an interrupted run wrote after the checkpoint
            for path in (folder / "families").glob("*.txt"):
                if path.stem not in saved["lengths"]:  # a family first written after it
                    path.unlink()
        else:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "families").mkdir(exist_ok=True)

    def _path(self, family: str) -> Path:
        return self.folder / "families" / f"{family}.txt"

    def add(self, families: Iterable[Metric], timestamp: float) -> int:
        """Append every sample of ``families`` at ``timestamp``; returns the samples written."""
        written = 0
        stamp = _timestamp(timestamp)
        for family in families:
            samples = family.samples  # made on each read (LazyFamily): read once
            if not samples:
                continue
            self.meta.setdefault(family.name, [family.type, family.documentation])
            out = self._files.get(family.name)
            if out is None:
                out = self._files[family.name] = open(self._path(family.name), "a",  # noqa: SIM115
                                                      encoding="utf-8")
            lines = []
            for sample in samples:
                labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sample.labels.items())
                lines.append(f"{sample.name}{{{labels}}} {_value(sample.value)} "
                             f"{stamp}\n" if labels else
                             f"{sample.name} {_value(sample.value)} {stamp}\n")
            out.write("".join(lines))
            written += len(lines)
        self.samples += written
        return written

    def checkpoint(self, done: int, complete: bool = False) -> None:
        """Record ``done`` instants (and every family file's length) atomically."""
        for out in self._files.values():
            out.flush()
            os.fsync(out.fileno())
        self.done, self.complete = done, complete
        lengths = {name: self._path(name).stat().st_size for name in self.meta}
        _write_atomically(self.folder / "state.json", json.dumps({
            "version": STATE_VERSION, "fingerprint": self.fingerprint, "meta": self.meta,
            "done": done, "samples": self.samples, "lengths": lengths, "complete": complete}))

    def close(self) -> None:
        for out in self._files.values():
            out.close()
        self._files.clear()

    def families(self) -> list[tuple[str, Path]]:
        """Each family's header (HELP, TYPE) and its sample file, by name."""
        self.close()
        return [(_header(name, *self.meta[name]), self._path(name)) for name in sorted(self.meta)]

    def assemble(self, target: Path) -> None:
        """The OpenMetrics text, family by family, renamed into place when whole."""
        self.close()
        tmp = target.with_name(f".{target.name}.partial")
        with open(tmp, "w", encoding="utf-8") as out:
            for header, path in self.families():
                out.write(header)
                with open(path, encoding="utf-8") as part:
                    shutil.copyfileobj(part, out)
            out.write("# EOF\n")
        tmp.replace(target)


def _header(name: str, kind: str, help_text: str) -> str:
    return f"# HELP {name} {_escape(help_text)}\n# TYPE {name} {kind}\n"


BLOCK_SECONDS = 7200  # promtool's block range, aligned to multiples of it since the epoch


def _chunks(families: list[tuple[str, Path]], folder: Path) -> Iterator[Path]:
    """The OpenMetrics text of ``families`` (each file's samples in time order) cut at the
    block boundaries, one file per block, each deleted once the next is asked for. promtool
    reads its whole input again for every block it makes: 90 days in one input are 1,080
    reads of it (hours at a million appointments); one input per block reads each sample
    once."""
    files = [open(path, "rb") for _, path in families]  # noqa: SIM115
    try:
        pending = [f.readline() for f in files]
        while any(pending):
            first = min(_stamp(line) for line in pending if line)
            end = (first // BLOCK_SECONDS + 1) * BLOCK_SECONDS
            chunk = folder / f"chunk-{int(first)}.om"
            with open(chunk, "wb") as out:
                for i, (header, _) in enumerate(families):
                    line = pending[i]
                    if not line or _stamp(line) >= end:
                        continue
                    out.write(header.encode())
                    while line and _stamp(line) < end:
                        out.write(line)
                        line = files[i].readline()
                    pending[i] = line
                out.write(b"# EOF\n")
            yield chunk
            chunk.unlink()
    finally:
        for f in files:
            f.close()


def _stamp(line: bytes) -> float:
    return float(line.rsplit(b" ", 1)[1])


def _differences(saved: dict[str, Any], wanted: dict[str, Any]) -> str:
    return ", ".join(sorted(k for k in {*saved, *wanted} if saved.get(k) != wanted.get(k)))


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _promtool(*args: str) -> None:
    try:
        done = subprocess.run(["promtool", *args], capture_output=True, text=True,
                              check=False, timeout=24 * 3600)
    except FileNotFoundError:
        raise HistoryError("promtool not found on PATH (Debian: apt-get install "
                           "prometheus); --openmetrics writes the text instead") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise HistoryError(f"promtool tsdb {args[1]} {args[2]} failed: {last[:200]}")


def _blocks(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and (p / "meta.json").exists())


def make_blocks(families: list[tuple[str, Path]], target: Path, work: Path,
                staging_name: str = "blocks") -> list[str]:
    """TSDB blocks of ``families`` (header, sample file) moved into ``target``, made by
    promtool block by block; returns their names."""
    staging = work / staging_name
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for chunk in _chunks(families, work):
        _promtool("tsdb", "create-blocks-from", "openmetrics", str(chunk), str(staging))
    return move_blocks(staging, target)


def move_blocks(staging: Path, target: Path) -> list[str]:
    target.mkdir(parents=True, exist_ok=True)
    moved = []
    for block in _blocks(staging):
        block.replace(target / block.name)
        moved.append(block.name)
    return moved


def make_rule_blocks(raw_blocks: Path, names: list[str], rule_files: list[Path], start: float,
                     end: float, step: float, target: Path, work: Path) -> list[str]:
    """Blocks of the recording rules at the backfill's own instants: a temporary Prometheus
    serves a hard-linked copy of the raw blocks and evaluates each rule with query_range at
    ``step`` from ``start`` (so every rule sample sits on a raw sample's instant, where a
    dashboard querying at that step finds both); the samples become blocks like the raw ones.
    (``promtool tsdb create-blocks-from rules`` evaluates at an offset hashed from the group,
    minutes away from hourly raw samples, which a 5-minute lookback then misses.)"""
    storage = work / "prometheus"
    shutil.rmtree(storage, ignore_errors=True)
    storage.mkdir(parents=True)
    for name in names:
        shutil.copytree(raw_blocks / name, storage / name, copy_function=os.link)
    config = work / "prometheus.yml"
    config.write_text("global: {}\n")
    port = _free_port()
    log = open(work / "prometheus.log", "w")  # noqa: SIM115
    server = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={storage}",
         f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=100y"],
        stdout=log, stderr=subprocess.STDOUT)
    recorded = work / "rules"
    recorded.mkdir(exist_ok=True)
    families = []
    try:
        _wait_ready(f"http://127.0.0.1:{port}/-/ready", server)
        for n, (record, expr, labels) in enumerate(recording_rules(rule_files)):
            series = _query_range(f"http://127.0.0.1:{port}", expr, start, end, step)
            lines = []
            for metric, values in series:
                metric = {**{k: v for k, v in metric.items() if k != "__name__"}, **labels}
                tag = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(metric.items()))
                head = f"{record}{{{tag}}}" if tag else record
                lines += [(float(at), f"{head} {value} {_timestamp(float(at))}\n")
                          for at, value in values]
            path = recorded / f"{n}.txt"
            lines.sort(key=lambda line: line[0])  # a family's samples in time order
            path.write_text("".join(line for _, line in lines), encoding="utf-8")
            families.append((f"# TYPE {record} gauge\n", path))
    finally:
        server.terminate()
        server.wait(30)
        log.close()
    return make_blocks(families, target, work, "rule-blocks")


def recording_rules(files: list[Path]) -> list[tuple[str, str, dict[str, str]]]:
    """(record, expr, labels) of every recording rule in Prometheus rule files; HistoryError
    naming the file and the rule when a file is not such a file."""
    from kpis import yaml_file

    rules = []
    for path in files:
        data = yaml_file.read(path) or {}
        groups = data.get("groups") if isinstance(data, dict) else None
        if not isinstance(groups, list):
            raise HistoryError(f"{path}: not a Prometheus rule file (no groups: list)")
        for g, group in enumerate(groups):
            for r, rule in enumerate((group or {}).get("rules") or []
                                     if isinstance(group, dict) else ()):
                if not isinstance(rule, dict) or "record" not in rule:
                    continue  # an alerting rule
                if not isinstance(rule.get("expr"), str) or not isinstance(
                        rule.get("labels", {}), dict):
                    raise HistoryError(f"{path}: groups.{g}.rules.{r}: a recording rule needs "
                                       "an expr and, if any, labels as a mapping")
                rules.append((str(rule["record"]), rule["expr"], dict(rule.get("labels", {}))))
    return rules


def _query_range(base: str, expr: str, start: float, end: float, step: float
                 ) -> list[tuple[dict[str, str], list[list[Any]]]]:
    query = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    try:
        with urllib.request.urlopen(f"{base}/api/v1/query_range?{query}", timeout=600) as reply:
            data = json.load(reply)
    except OSError as exc:
        raise HistoryError(f"evaluating the recording rules failed: {exc}") from None
    return [(r["metric"], r["values"]) for r in data["data"]["result"]]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_ready(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise HistoryError(f"the temporary Prometheus for --rules exited with "
                               f"{server.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise HistoryError("the temporary Prometheus for --rules did not become ready in 120 s")


def state_folder(output: Path) -> Path:
    """Where a backfill to ``output`` (a file or a block folder) keeps its resumable state."""
    return output.parent / f".{output.name}.carekpi-backfill"


def scratch(state: Path) -> Path:
    path = state / "work"
    path.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=path))


def history_families(store: Store) -> list[Metric]:
    """The families a backfill writes: every KPI's series, the excluded records and the
    targets, as the exporter exposes them (not its own health)."""
    kept = {names.EXCLUDED_RECORDS, names.KPI_TARGET, names.NEWEST_RECORD}
    for kpi in catalog.load():
        kept.add(names.histogram(kpi))
        kept.update(names.kpi_metrics(kpi))
    return [f for f in CareKpiCollector(store).collect() if f.name in kept]

"""The exporter side of the benchmark: scrape latency and database queries while scraping,
start-up time, memory after many refreshes, and query-exporter's database time next to it."""

from __future__ import annotations

import asyncio
import gzip
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import sqlalchemy as sa
import yaml
from prometheus_client.parser import text_string_to_metric_families

from collectors.evaluate import units
from kpis import names
from kpis.config import parse

CAREKPI = str(Path(sys.executable).with_name("carekpi"))
QE_VENV = Path.home() / ".cache" / "carekpi-bench" / "qe-venv"
SCRAPERS = 50
Say = Callable[..., None]


def create_database(server: str, name: str) -> None:
    admin = sa.create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT",
                             poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        if not conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"),
                            {"n": name}).scalar():
            conn.execute(sa.text(f"CREATE DATABASE {name}"))
    admin.dispose()


def machine() -> str:
    mem = next(line for line in Path("/proc/meminfo").read_text().splitlines()
               if line.startswith("MemTotal"))
    load = os.getloadavg()[0]
    return f"{os.cpu_count()} cpus, {int(mem.split()[1]) // 1024} MiB, load1 {load:.1f}"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, timeout: float = 30) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return bytes(response.read())


def _db_stats(dsn: str) -> tuple[int, float]:
    """(transactions, active ms) of the bench database, read from the postgres database."""
    admin = dsn.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        row = conn.execute("SELECT xact_commit + xact_rollback, active_time FROM "
                           "pg_stat_database WHERE datname = 'carekpi_bench'").fetchone()
    assert row is not None
    return int(row[0]), float(row[1])


def _serve(data: dict[str, Any], folder: str) -> tuple[subprocess.Popen[bytes], str, float]:
    path = Path(folder) / "carekpi.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    port = _port()
    started = time.perf_counter()
    proc = subprocess.Popen([CAREKPI, "serve", "--config", str(path), "--port", str(port),
                             "--bind", "127.0.0.1"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    return proc, f"http://127.0.0.1:{port}/metrics", started


def _wait(url: str, ready: Callable[[str], bool], deadline: float) -> str:
    while time.perf_counter() < deadline:
        try:
            body = _get(url).decode()
            if ready(body):
                return body
        except OSError:
            pass
        time.sleep(0.02)
    raise SystemExit(f"{url}: not ready in time")


def _all_refreshed(config: Any) -> Callable[[str], bool]:
    """Every KPI up, and every window of every KPI refreshed once."""
    kpis = {k.key for u in units(config) for k in u.kpis}
    windows = {(k.key, w) for u in units(config) for k in u.kpis
               for w in (u.window_labels or ("",))}

    def ready(body: str) -> bool:
        lines = body.splitlines()
        ups = [line for line in lines if line.startswith(f"{names.KPI_UP}{{")]
        done = [line for line in lines if line.startswith(f"{names.KPI_LAST_SUCCESS}{{")]
        return (len(ups) >= len(kpis) and all(line.endswith(" 1.0") for line in ups)
                and len(done) >= len(windows))

    return ready


PROMETHEUS_HEADERS = {  # what Prometheus 2.x sends with every scrape
    "Accept": "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
              "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "Accept-Encoding": "gzip"}


async def _scraper(url: str, headers: dict[str, str], start: float, rounds: int,
                   period: float, out: list[float]) -> None:
    """One scraper on one kept-alive connection, as Prometheus scrapes: a GET every
    ``period`` seconds from ``start`` (event-loop time), each timed to its last byte."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    request = (f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
               + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode()
    loop = asyncio.get_running_loop()
    try:
        for i in range(rounds):
            await asyncio.sleep(max(0.0, start + i * period - loop.time()))
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise SystemExit(f"{url}: {head.splitlines()[0].decode()}")
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            await reader.readexactly(length)
            out.append(time.perf_counter() - started)
    finally:
        writer.close()


def _bursts(url: str, headers: dict[str, str], scrapers: int = SCRAPERS, rounds: int = 20,
            period: float = 1.0) -> list[float]:
    """``scrapers`` connections scraping at the same instant, every ``period`` seconds (the
    worst case of many Prometheus replicas, 15 times their default rate), after one warm-up
    scrape that makes the exporter encode this content type."""

    async def run() -> list[float]:
        out: list[float] = []
        loop = asyncio.get_running_loop()
        await _scraper(url, headers, loop.time(), 1, period, [])
        start = loop.time() + 0.5
        await asyncio.gather(*(_scraper(url, headers, start, rounds, period, out)
                               for _ in range(scrapers)))
        return out

    return asyncio.run(run())


def _percentiles(name: str, samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {f"{name}_p50_ms": round(statistics.median(ordered) * 1000, 2),
            f"{name}_p99_ms": round(p99 * 1000, 2)}


def scrape(data: dict[str, Any], dsn: str, say: Say) -> dict[str, Any]:
    """carekpi serve (refresh interval 1 h: no refresh during the scrapes), 50 scrapers."""
    with tempfile.TemporaryDirectory() as folder:
        proc, url, _ = _serve(data, folder)
        try:
            config = parse(data, "bench.yaml")
            body = _wait(url, _all_refreshed(config), time.perf_counter() + 1800)
            series = sum(1 for line in body.splitlines() if line and not line.startswith("#"))
            # An idle backend reports its statistics up to 10 s late (PGSTAT_IDLE_INTERVAL):
            # let the start-up refresh's arrive before counting, and the scrapes' after.
            time.sleep(11)
            before = _db_stats(dsn)[0]
            prometheus = _bursts(url, PROMETHEUS_HEADERS)
            identity = _bursts(url, {})
            time.sleep(11)
            queries = _db_stats(dsn)[0] - before
        finally:
            proc.terminate()
            proc.wait(10)
    out = {"scrape_series": series, "scrape_bytes": len(body), "scrape_db_queries": queries,
           "scrape_requests": len(prometheus) + len(identity),
           **_percentiles("scrape", prometheus), **_percentiles("scrape_identity", identity)}
    say(f"scrape: {out}")
    return out


def scrape_while_refreshing(data: dict[str, Any], say: Say) -> dict[str, Any]:
    """The same bursts while every unit refreshes every 15 s on the same two cores."""
    with tempfile.TemporaryDirectory() as folder:
        proc, url, _ = _serve(data, folder)
        try:
            config = parse(data, "bench.yaml")
            _wait(url, _all_refreshed(config), time.perf_counter() + 1800)
            samples = _bursts(url, PROMETHEUS_HEADERS, rounds=45)
        finally:
            proc.terminate()
            proc.wait(10)
    out = _percentiles("scrape_refreshing", samples)
    say(f"scrape while refreshing every 15 s: {out}")
    return out


def replicas(url: str, seconds: float, period: float = 15.0) -> list[float]:
    """Two Prometheus replicas, each scraping every ``period`` s, offset by half a period."""
    samples: list[float] = []
    stop = time.perf_counter() + seconds

    def replica(offset: float) -> None:
        time.sleep(offset)
        while time.perf_counter() < stop:
            started = time.perf_counter()
            _get(url, timeout=60)
            samples.append(time.perf_counter() - started)
            time.sleep(max(0.0, period - (time.perf_counter() - started)))

    threads = [threading.Thread(target=replica, args=(o,)) for o in (0.0, period / 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return samples


def db_time(data: dict[str, Any], dsn: str, seconds: float, say: Say) -> dict[str, Any]:
    """Database time per minute of ``carekpi serve`` (refresh interval 60 s, default window
    cadences), measured as query-exporter's is: pg_stat_database.active_time of the bench
    database while two Prometheus replicas scrape every 15 s, from just after the start-up
    refresh. Over a span shorter than 15 minutes it sees the 30-day windows' refresh only by
    chance: run.py's carekpi_db_seconds_per_minute weighs every unit by its cadence."""
    config = parse(data, "bench.yaml")
    with tempfile.TemporaryDirectory() as folder:
        proc, url, _ = _serve(data, folder)
        try:
            _wait(url, _all_refreshed(config), time.perf_counter() + 600)
            time.sleep(11)  # idle backends report statistics up to 10 s late
            before = _db_stats(dsn)
            samples = replicas(url, seconds)
            time.sleep(11)
            after = _db_stats(dsn)
        finally:
            proc.terminate()
            proc.wait(10)
    out = {"carekpi_db_seconds_per_minute_measured": round(
               (after[1] - before[1]) / 1000 / (seconds / 60), 3),
           "carekpi_queries": after[0] - before[0], **_percentiles("carekpi_replica_scrape",
                                                                    samples)}
    say(f"carekpi with two replicas: {out}")
    return out


def startup(data: dict[str, Any], say: Say) -> dict[str, Any]:
    """Spawn to the first successful scrape (HTTP 200, a body Prometheus parses: its ``up``
    is 1), to the first KPI series, and to every KPI refreshed."""
    config = parse(data, "bench.yaml")
    done = _all_refreshed(config)
    marks: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as folder:
        proc, url, started = _serve(data, folder)
        try:
            deadline = started + 600
            while "all" not in marks:
                if time.perf_counter() > deadline or proc.poll() is not None:
                    raise SystemExit(f"{url}: not every KPI refreshed in time")
                try:
                    body = _get(url).decode()
                except OSError:
                    time.sleep(0.01)
                    continue
                now = time.perf_counter() - started
                list(text_string_to_metric_families(body))  # parses, as Prometheus would
                marks.setdefault("first", now)
                if any(line.startswith("carekpi_kpi_up{") and line.endswith(" 1.0")
                       for line in body.splitlines()):
                    marks.setdefault("kpi", now)
                if done(body):
                    marks["all"] = now
                time.sleep(0.01)
        finally:
            proc.terminate()
            proc.wait(10)
    out = {"startup_seconds": round(marks["first"], 3),
           "startup_first_kpi_seconds": round(marks["kpi"], 3),
           "startup_all_kpis_seconds": round(marks["all"], 3)}
    say(f"start-up: {out}")
    return out


def memory(data: dict[str, Any], cycles: int, say: Say,
           plain_text: bool = False) -> dict[str, Any]:
    """Resident memory of ``carekpi serve`` after ``cycles`` refreshes of its heaviest unit
    (give ``data`` a 1 s refresh interval: the units then run back to back), scraped every
    second as Prometheus scrapes (OpenMetrics, gzip) and, with ``plain_text``, also by a
    plain-text client (the exporter then keeps both formats' bodies)."""
    def rss(pid: int) -> float:
        status = Path(f"/proc/{pid}/status").read_text().splitlines()
        return int(next(line for line in status if line.startswith("VmRSS")).split()[1]) / 1024

    stamps: set[str] = set()
    first = 0.0
    series = 0
    with tempfile.TemporaryDirectory() as folder:
        proc, url, started = _serve(data, folder)
        try:
            while len(stamps) <= cycles:
                if proc.poll() is not None or time.perf_counter() - started > 60 * cycles:
                    raise SystemExit(f"memory: {url} stopped or stalled")
                try:
                    request = urllib.request.Request(url, headers=PROMETHEUS_HEADERS)
                    with urllib.request.urlopen(request, timeout=30) as response:
                        body = gzip.decompress(response.read()).decode()
                    if plain_text:
                        _get(url)
                except OSError:
                    time.sleep(0.2)
                    continue
                stamps.update(line.rsplit(" ", 1)[1] for line in body.splitlines()
                              if line.startswith(f"{names.KPI_LAST_SUCCESS}{{")
                              and 'kpi="no_show"' in line)
                if len(stamps) == 1 and not first:
                    first = rss(proc.pid)
                series = sum(1 for line in body.splitlines() if line and line[0] != "#")
                time.sleep(1)
            last = rss(proc.pid)
        finally:
            proc.terminate()
            proc.wait(10)
    say(f"memory{' (and plain text)' if plain_text else ''}: {first:.1f} MB after 1 refresh, "
        f"{last:.1f} MB after {cycles} ({series:,} series, "
        f"{time.perf_counter() - started:.0f}s)")
    if plain_text:
        return {"rss_mb_with_text_scraper": round(last, 1), "memory_cycles_with_text": cycles}
    return {"rss_mb": round(last, 1), "rss_mb_first_refresh": round(first, 1),
            "memory_cycles": cycles, "memory_series": series}

"""The exporter side of the benchmark: scrape latency and database queries while scraping,
start-up time, memory after many refreshes, and query-exporter's database time next to it."""

from __future__ import annotations

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

import psycopg
import sqlalchemy as sa
import yaml

from collectors.evaluate import units
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


def _all_refreshed(expected: int) -> Callable[[str], bool]:
    def ready(body: str) -> bool:
        ups = [line for line in body.splitlines() if line.startswith("carekpi_kpi_up{")]
        return len(ups) >= expected and all(line.endswith(" 1.0") for line in ups)

    return ready


def _latencies(url: str, clients: int, each: int) -> list[float]:
    out: list[float] = []
    lock = threading.Lock()

    def client() -> None:
        mine = []
        for _ in range(each):
            started = time.perf_counter()
            _get(url)
            mine.append(time.perf_counter() - started)
        with lock:
            out.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def _percentiles(name: str, samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {f"{name}_p50_ms": round(statistics.median(ordered) * 1000, 2),
            f"{name}_p99_ms": round(p99 * 1000, 2)}


def scrape(data: dict[str, Any], dsn: str, say: Say, each: int = 20) -> dict[str, Any]:
    """carekpi serve (refresh interval 1 h: no refresh during the scrapes), 50 scrapers."""
    with tempfile.TemporaryDirectory() as folder:
        proc, url, _ = _serve(data, folder)
        try:
            config = parse(data, "bench.yaml")
            expected = sum(len(u.kpis) for u in units(config))
            body = _wait(url, _all_refreshed(expected), time.perf_counter() + 1800)
            series = sum(1 for line in body.splitlines() if line and not line.startswith("#"))
            time.sleep(2)
            before = _db_stats(dsn)[0]
            samples = _latencies(url, SCRAPERS, each)
            time.sleep(2)  # backends flush their statistics at most every second
            queries = _db_stats(dsn)[0] - before
        finally:
            proc.terminate()
            proc.wait(10)
    out = {"scrape_series": series, "scrape_bytes": len(body), "scrape_db_queries": queries,
           "scrape_requests": len(samples), **_percentiles("scrape", samples)}
    say(f"scrape: {out}")
    return out


def startup(data: dict[str, Any], say: Say) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        proc, url, started = _serve(data, folder)
        try:
            _wait(url, lambda b: "carekpi_no_show_denominator{" in b, started + 600)
            seconds = time.perf_counter() - started
        finally:
            proc.terminate()
            proc.wait(10)
    say(f"start-up to first KPI scrape: {seconds:.2f}s")
    return {"startup_seconds": round(seconds, 3)}


MEMORY = """
import sys, time, yaml
from prometheus_client import CollectorRegistry, generate_latest
from collectors.evaluate import evaluate
from collectors.exposition import CareKpiCollector
from collectors.service import create_engines
from collectors.store import Store
from kpis import config as c
config = c.parse(yaml.safe_load(open(sys.argv[1])), "bench.yaml")
store, registry = Store(config), CollectorRegistry()
registry.register(CareKpiCollector(store))
engines = create_engines(config)
def rss():
    line = [l for l in open("/proc/self/status") if l.startswith("VmRSS")][0]
    return int(line.split()[1]) / 1024
for i in range(int(sys.argv[2])):
    store.put(evaluate(config, engines), 15.0)
    generate_latest(registry)
    if i == 0:
        first = rss()
print(first, rss())
"""


def memory(data: dict[str, Any], cycles: int, say: Say) -> dict[str, Any]:
    """RSS after ``cycles`` full refreshes plus a scrape each (the exporter's data path)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "carekpi.yaml"
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", MEMORY, str(path), str(cycles)],
                              capture_output=True, text=True, check=True,
                              cwd=str(Path(__file__).resolve().parents[2]))
    first, last = (float(v) for v in done.stdout.split())
    say(f"memory: {first:.1f} MB after 1 refresh, {last:.1f} MB after {cycles} "
        f"({time.perf_counter() - started:.0f}s)")
    return {"rss_mb": round(last, 1), "rss_mb_first_refresh": round(first, 1),
            "memory_cycles": cycles}

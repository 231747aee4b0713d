"""Soak run: does ``carekpi demo`` (or ``carekpi serve``) stay flat under steady scrapes?

Starts the exporter as a child process with a fast refresh, scrapes ``/metrics`` from several
threads in a loop (each thread pauses between scrapes, so the load is steady and bounded) and,
once a minute, prints one line about the exporter process, read from /proc (Linux only):

    minute  rss_mib  threads  fds  db_conns  scrapes  errors  p50_ms  p99_ms

- ``rss_mib``: VmRSS from /proc/<pid>/status; ``threads``: entries of /proc/<pid>/task;
  ``fds``: entries of /proc/<pid>/fd;
- ``db_conns``: open database connections: for SQLite, descriptors open on the database file;
  for a server database, TCP sockets of the process connected to the database port;
- ``scrapes``/``errors``: scrapes completed / failed (non-200 or exception) in that minute;
  ``p50_ms``/``p99_ms``: scrape latency in that minute; ``check_age``: seconds since the
  latest completed data-quality check run (-1: none yet; with ``--checks-every``).

At the end it prints the first minute, the last minute and the maximum of each column, then
stops the exporter (SIGTERM) and exits 0 (1 if the exporter died or a scrape failed).

Run (demo on SQLite, 20 minutes, 1 s refresh, 4 scraping threads):

    /work/venv/bin/python tests/soak.py --minutes 20
    /work/venv/bin/python tests/soak.py --minutes 2 --refresh 2s --threads 8 --pause 0.05
    /work/venv/bin/python tests/soak.py --config carekpi.yaml   # `carekpi serve` instead
    /work/venv/bin/python tests/soak.py --minutes 20 --checks-every 1m   # checks each minute

With ``--config`` the refresh interval is the one the config sets. Not a pytest test: it runs
for minutes on purpose.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

COLUMNS = ("rss_mib", "threads", "fds", "db_conns", "scrapes", "errors", "p50_ms", "p99_ms",
           "check_age")


@dataclass
class Window:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self) -> tuple[list[float], int]:
        with self.lock:
            latencies, errors = self.latencies, self.errors
            self.latencies, self.errors = [], 0
        return latencies, errors


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def socket_inodes(pid: int) -> tuple[int, set[str]]:
    """(number of fds, socket inodes) of the process; also the files open, for SQLite."""
    inodes: set[str] = set()
    fds = os.listdir(f"/proc/{pid}/fd")
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return len(fds), inodes


def db_connections(pid: int, database: str | None, db_port: int | None) -> int:
    if database:  # SQLite: descriptors open on the database file itself
        count = 0
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == database:
                    count += 1
            except OSError:
                continue
        return count
    if db_port is None:
        return 0
    _, inodes = socket_inodes(pid)
    count = 0
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            parts = line.split()
            remote_port = int(parts[2].rsplit(":", 1)[1], 16)
            if remote_port == db_port and parts[3] == "01" and parts[9] in inodes:
                count += 1
    return count


def scraper(url: str, pause: float, stop: threading.Event, window: Window) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                response.read()
                ok = response.status == 200
        except Exception:  # any failure of a scrape is counted, not fatal
            ok = False
        elapsed = time.perf_counter() - started
        with window.lock:
            if ok:
                window.latencies.append(elapsed)
            else:
                window.errors += 1
        stop.wait(pause)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def start_exporter(args: argparse.Namespace, port: int, workdir: Path) -> tuple[
        subprocess.Popen[bytes], str | None, int | None]:
    carekpi = [sys.executable, "-m", "kpis"]
    log = open(workdir / "exporter.log", "wb")  # noqa: SIM115 - lives as long as the child
    if args.config:
        command = [*carekpi, "serve", "--config", args.config, "--bind", "127.0.0.1",
                   "--port", str(port)]
        database, db_port = None, args.db_port
    elif args.checks_every:  # the demo's data and mapping, served with checks this often
        import yaml

        database = str((workdir / "demo.db").resolve())
        subprocess.run([*carekpi, "demo", "--seed-only", "--db", f"sqlite:///{database}",
                        "--config-out", str(workdir / "demo.yaml")],
                       check=True, stdout=subprocess.DEVNULL, stderr=log)
        document = yaml.safe_load((workdir / "demo.yaml").read_text())
        for source in document["sources"].values():
            source["refresh_interval"] = args.refresh
        document.setdefault("checks", {})["schedule"] = args.checks_every
        (workdir / "carekpi.yaml").write_text(yaml.safe_dump(document))
        command = [*carekpi, "serve", "--config", str(workdir / "carekpi.yaml"), "--bind",
                   "127.0.0.1", "--port", str(port)]
        db_port = None
    else:
        database = str((workdir / "demo.db").resolve())
        subprocess.run([*carekpi, "demo", "--seed-only", "--db", f"sqlite:///{database}"],
                       check=True, stdout=subprocess.DEVNULL, stderr=log)
        command = [*carekpi, "demo", "--db", f"sqlite:///{database}", "--port", str(port),
                   "--refresh-interval", args.refresh]
        db_port = None
    child = subprocess.Popen(command, stdout=log, stderr=log)
    return child, database, db_port


def check_age(url: str) -> float:
    """Seconds since the latest completed check run (-1: none exported)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            body = response.read().decode()
    except OSError:
        return -1.0
    for line in body.splitlines():
        if line.startswith("carekpi_check_last_run_timestamp_seconds "):
            return time.time() - float(line.split()[1])
    return -1.0


def wait_ready(url: str, child: subprocess.Popen[bytes], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise SystemExit(f"soak: the exporter exited with {child.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if b"carekpi_kpi_up" in response.read():
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit("soak: the exporter did not answer in time")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=20)
    parser.add_argument("--refresh", default="1s", help="demo refresh interval (default 1s)")
    parser.add_argument("--threads", type=int, default=4, help="scraping threads (default 4)")
    parser.add_argument("--pause", type=float, default=0.1,
                        help="seconds each thread waits between scrapes (default 0.1)")
    parser.add_argument("--config", help="run `carekpi serve --config` instead of the demo")
    parser.add_argument("--db-port", type=int, help="with --config: the database's TCP port")
    parser.add_argument("--workdir", help="where the demo database and exporter.log go")
    parser.add_argument("--port", type=int, help="the exporter's port (default: a free one)")
    parser.add_argument("--checks-every", metavar="DURATION",
                        help="serve the demo with its data-quality checks scheduled this often "
                        "(e.g. 1m; they run in a child process)")
    args = parser.parse_args()

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="carekpi-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    port = args.port or free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    child, database, db_port = start_exporter(args, port, workdir)
    if args.config and db_port is None:
        print("soak: no --db-port given, db_conns will read 0", flush=True)
    failed = False
    stop = threading.Event()
    try:
        wait_ready(url, child)
        print(f"soak: pid {child.pid}, {url}, workdir {workdir}, {args.threads} threads, "
              f"{args.minutes:g} min", flush=True)
        print(f"{'minute':>6} " + " ".join(f"{c:>8}" for c in COLUMNS), flush=True)
        window = Window()
        threads = [threading.Thread(target=scraper, args=(url, args.pause, stop, window),
                                    daemon=True) for _ in range(args.threads)]
        for thread in threads:
            thread.start()
        rows = []
        start = time.monotonic()
        for minute in range(1, int(args.minutes) + 1):
            while time.monotonic() < start + 60 * minute:
                if child.poll() is not None:
                    raise SystemExit(f"soak: the exporter died (exit {child.returncode}), "
                                     f"see {workdir / 'exporter.log'}")
                time.sleep(1)
            latencies, errors = window.take()
            failed = failed or errors > 0
            fds, _ = socket_inodes(child.pid)
            row = (rss_mib(child.pid), len(os.listdir(f"/proc/{child.pid}/task")), fds,
                   db_connections(child.pid, database, db_port), len(latencies), errors,
                   percentile(latencies, 50) * 1000, percentile(latencies, 99) * 1000,
                   check_age(url))
            rows.append(row)
            print(f"{minute:>6} " + " ".join(f"{v:>8.1f}" for v in row), flush=True)
        if rows:
            print("summary:", flush=True)
            for name, row in (("first", rows[0]), ("last", rows[-1]),
                              ("max", tuple(max(c) for c in zip(*rows, strict=True)))):
                print(f"{name:>6} " + " ".join(f"{v:>8.1f}" for v in row), flush=True)
    finally:
        stop.set()
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

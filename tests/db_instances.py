"""Throwaway PostgreSQL and MariaDB servers that a test starts, stops and restarts itself.

Each instance has its own data directory (a fresh temporary folder) and its own port, so a
test can take it away without disturbing the shared servers on 5432/3306. PostgreSQL refuses
to run as root: as root the server runs as the ``postgres`` user (``runuser``), in a folder
owned by that user. MariaDB runs with ``--no-defaults --skip-grant-tables`` (no password, no
system config). When a binary is missing or the server does not come up, ``Unavailable`` says
why; callers skip with that reason locally and fail in CI.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

PG_BIN = Path(os.environ.get("CAREKPI_PG_BIN", "/usr/lib/postgresql/15/bin"))
MARIADBD = Path(os.environ.get("CAREKPI_MARIADBD", "/usr/sbin/mariadbd"))
INSTALL_DB = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")


class Unavailable(RuntimeError):
    """The instance cannot be created or started on this machine."""


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _accepting(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _run(args: list[str], what: str, timeout: float = 120) -> None:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Unavailable(f"{what}: {exc}") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise Unavailable(f"{what} exited {done.returncode}: {' | '.join(tail)}")


class Instance:
    """Common life cycle: create() once, then start()/stop() as often as the test likes."""

    url_template = ""

    def __init__(self, port: int, database: str = "carekpi") -> None:
        self.port, self.database = port, database
        self.folder = Path(tempfile.mkdtemp(prefix=f"carekpi-{type(self).__name__.lower()}-"))
        self.running = False
        self.paused = False

    @property
    def url(self) -> str:
        return self.url_template.format(port=self.port, database=self.database)

    @property
    def admin_url(self) -> str:
        raise NotImplementedError

    def create(self) -> Instance:
        if not _port_free(self.port):
            raise Unavailable(f"port {self.port} is already in use")
        self._init()
        self.start()
        admin = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT",
                                 poolclass=sa.pool.NullPool)
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {self.database}"))
        admin.dispose()
        return self

    def start(self, timeout: float = 30.0) -> float:
        """Start the server and wait until it accepts queries; returns the seconds it took."""
        began = time.monotonic()
        self._launch()
        deadline = began + timeout
        engine = sa.create_engine(self.admin_url, poolclass=sa.pool.NullPool)
        try:
            while True:
                try:
                    with engine.connect() as conn:
                        conn.execute(sa.text("SELECT 1"))
                    break
                except sa.exc.OperationalError as exc:
                    if time.monotonic() > deadline or not self._alive():
                        raise Unavailable(f"{type(self).__name__} on port {self.port} did "
                                          f"not come up: {str(exc.orig).splitlines()[0]}; "
                                          f"log: {self._log_tail()}") from None
                    time.sleep(0.05)
        finally:
            engine.dispose()
        self.running = True
        return time.monotonic() - began

    def stop(self) -> float:
        """Stop the server (clients are disconnected); returns the seconds it took."""
        began = time.monotonic()
        self._halt()
        deadline = began + 30
        while _accepting(self.port) and time.monotonic() < deadline:
            time.sleep(0.02)
        self.running = False
        return time.monotonic() - began

    def pause(self) -> None:
        """SIGSTOP every process of the server: a hung host, as the clients see it (the
        kernel still accepts connections and acknowledges data; nothing answers)."""
        for pid in self._pids():
            os.kill(pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        for pid in self._pids():
            os.kill(pid, signal.SIGCONT)
        self.paused = False

    def _pids(self) -> list[int]:
        """The server's main process and its children."""
        main = self._main_pid()
        if main is None:
            return []
        children = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == main:
                    children.append(int(entry.name))
        return [main, *children]

    def _main_pid(self) -> int | None:
        raise NotImplementedError

    def destroy(self) -> None:
        if self.paused:
            with contextlib.suppress(Exception):
                self.resume()
        if self.running or self._alive():
            with contextlib.suppress(Exception):  # best effort at teardown
                self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _init(self) -> None:
        raise NotImplementedError

    def _launch(self) -> None:
        raise NotImplementedError

    def _halt(self) -> None:
        raise NotImplementedError

    def _alive(self) -> bool:
        raise NotImplementedError

    def _log_tail(self) -> str:
        log = self.folder / "server.log"
        try:
            return " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:])
        except OSError:
            return "(no log)"


class PostgresInstance(Instance):
    url_template = "postgresql+psycopg://postgres@127.0.0.1:{port}/{database}"

    def __init__(self, port: int, database: str = "carekpi") -> None:
        super().__init__(port, database)
        self.data = self.folder / "data"
        self._as: list[str] = []
        if os.geteuid() == 0:  # PostgreSQL refuses root: run it as the postgres user
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                raise Unavailable("running as root and there is no postgres user") from None
            os.chown(self.folder, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]

    @property
    def admin_url(self) -> str:
        return self.url_template.format(port=self.port, database="postgres")

    def _pg(self, tool: str) -> str:
        path = PG_BIN / tool
        if not path.exists():
            raise Unavailable(f"{path} not found (Debian package postgresql-15)")
        return str(path)

    def _init(self) -> None:
        _run([*self._as, self._pg("initdb"), "-D", str(self.data), "-U", "postgres",
              "-A", "trust", "--no-sync", "-E", "UTF8", "--locale", "C"], "initdb")

    def _launch(self) -> None:
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder} "
                   "-c fsync=off -c full_page_writes=off -c synchronous_commit=off")
        _run([*self._as, self._pg("pg_ctl"), "-D", str(self.data), "-l",
              str(self.folder / "server.log"), "-o", options, "start"], "pg_ctl start")

    def _halt(self) -> None:
        # fast: terminates client sessions, as a database restart or failover does
        _run([*self._as, self._pg("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w",
              "stop"], "pg_ctl stop", timeout=60)

    def _alive(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def _main_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None


class MariaDBInstance(Instance):
    url_template = "mysql+pymysql://root@127.0.0.1:{port}/{database}"

    def __init__(self, port: int, database: str = "carekpi") -> None:
        super().__init__(port, database)
        self.data = self.folder / "data"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def admin_url(self) -> str:
        return self.url_template.format(port=self.port, database="")

    def _init(self) -> None:
        if INSTALL_DB is None or not MARIADBD.exists():
            raise Unavailable("mariadb-install-db or /usr/sbin/mariadbd not found "
                              "(Debian package mariadb-server)")
        _run([INSTALL_DB, "--no-defaults", "--user=root", f"--datadir={self.data}",
              "--auth-root-authentication-method=normal", "--skip-test-db",
              "--skip-name-resolve"], "mariadb-install-db")

    def _launch(self) -> None:
        log = open(self.folder / "server.log", "ab")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen(
            [str(MARIADBD), "--no-defaults", f"--datadir={self.data}", "--user=root",
             f"--port={self.port}", "--bind-address=127.0.0.1",
             f"--socket={self.folder / 'mysqld.sock'}", f"--pid-file={self.folder / 'pid'}",
             "--skip-grant-tables", "--skip-name-resolve", "--skip-log-bin",
             "--innodb-buffer-pool-size=32M", "--innodb-log-file-size=16M",
             "--innodb-flush-log-at-trx-commit=0", "--performance-schema=off"],
            stdout=log, stderr=log, start_new_session=True)
        log.close()

    def _halt(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)  # a clean shutdown, clients disconnected
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def _alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _main_pid(self) -> int | None:
        return self.process.pid if self._alive() and self.process is not None else None

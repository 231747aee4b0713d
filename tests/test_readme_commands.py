"""Every command of the README's guide runs as written, against the servers CI has.

The ```sh blocks run in README order in one scratch folder (which holds this checkout's
`alerts` and `dashboards`, as the README is followed from the checkout), with `carekpi` on the
PATH, then the inline examples that name a config (`carekpi collect --config ... --as-of`). Only
what the README cannot know is substituted: a fresh PostgreSQL database for `.../demo` (not
created beforehand: the demo creates it), a free port for 9880, a fake Grafana for
grafana.example.org, a scratch root for /etc/grafana and /var/lib/grafana, a scratch folder for
`DIR`, `G` and `T`, a start two days back for backfills (a longer range costs minutes);
optional `[...]` parts are left out. Long-running commands (`carekpi demo`, `carekpi
serve`) are stopped with Ctrl-C after their first successful scrape. NOT_RUN and
NOT_RUN_PREFIXES list the lines that are not run, each with its reason.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.cli_reference import README
from tests.conftest import SERVER_URLS, free_port, in_ci, server_or_skip
from tests.test_dashboards_publish import TOKEN, running_grafana

pytestmark = [pytest.mark.slow, pytest.mark.postgresql, pytest.mark.prometheus]

ROOT = README.parent
SETUP = "python3 -m venv .venv && .venv/bin/pip install -q . && .venv/bin/carekpi demo"
# README line -> (what runs instead, or None, and why).
NOT_RUN = {
    SETUP: ("carekpi demo", "the install is tests/run.sh's own first step, before this test"),
    "bash tests/run.sh": (None, "it is the command running this test"),
    "systemctl restart grafana-server": (None, "Grafana is not installed on the build machine"),
}
# Lines not run here, by how they start, each with its reason.
NOT_RUN_PREFIXES = {
    "kubectl ": "no Kubernetes cluster on the build machine (tests/test_deploy_artifacts.py "
                "validates what these apply)",
    "sqlite3 ": "a query the README shows for the sqlite3 shell, which the build machine lacks "
                "(tests/test_checks_report.py reads the same history)",
    "WHERE ": "the second line of the sqlite3 query above",
    "CAREKPI_BENCH_DB=": "a benchmark of 3M rows, run by hand (README figures), not in CI",
}
# Inline spans that are fragments of a block's command, not commands of their own.
FRAGMENTS = {"carekpi dashboards build --config carekpi.yaml"}
# Commands whose documented outcome is not exit 0.
EXIT = {"carekpi checks run --config carekpi.yaml": 1}  # the demo's planted dirty records
SCRAPED = re.compile(r"^carekpi_source_up\{[^}]*\} 1(\.0)?$", re.MULTILINE)


def _guide() -> str:
    text = README.read_text(encoding="utf-8")
    return text[:text.index("## CLI reference")]


def _lines(block: str) -> list[str]:
    joined = re.sub(r"\\\n\s*", "", block)
    commands = (re.sub(r"(^|\s+)#(\s.*)?$", "", line).strip() for line in joined.splitlines())
    return [c for c in commands if c]


def readme_commands() -> list[str]:
    guide = _guide()
    ordered: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", guide, re.DOTALL):
        ordered.extend(_lines(block))
    for span in re.findall(r"`(carekpi [a-z]+[^`\n<]*--config[^`\n<]*)`", guide):
        if span not in FRAGMENTS:
            ordered.append(span)
    return list(dict.fromkeys(ordered))


@dataclass
class Scratch:
    folder: Path
    pg_url: str
    grafana: str
    port: int = 0
    env: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, subprocess.CompletedProcess[str]] = field(default_factory=dict)

    def substitute(self, command: str) -> str:
        command = _without_options(command)
        command = command.replace("postgresql+psycopg://postgres@127.0.0.1/demo", self.pg_url)
        command = command.replace("https://grafana.example.org", self.grafana)
        for root in ("/etc/grafana", "/var/lib/grafana"):
            command = command.replace(root, f"{self.folder}{root}")
        command = command.replace("--out DIR", f"--out {self.folder}/rules")
        command = command.replace("--out G --tests-out T",
                                  f"--out {self.folder}/G --tests-out {self.folder}/T")
        # A backfill of weeks or months evaluates some KPIs once per hour of the range (half
        # a second each on the demo here): the examples run over the last two days instead.
        two_days_ago = (datetime.now(UTC) - timedelta(days=2)).date().isoformat()
        command = re.sub(r"--start \d{4}-\d{2}-\d{2}", f"--start {two_days_ago}", command)
        command = re.sub(r"--start \d+[dw]\b", "--start 2d", command)
        if _long_running(command):
            # Picked just before the start, away from the range other tests use, so what
            # answers there is this command.
            self.port = free_port(19700, 19900)
            command = re.sub(r"--port \d+", "", command) + f" --port {self.port}"
        return command


def _without_options(command: str) -> str:
    """The command without its optional ``[...]`` parts."""
    return re.sub(r"\s*\[[^\]]*\]", "", command)


def _long_running(command: str) -> bool:
    words = command.split()
    return words[:2] == ["carekpi", "serve"] or (
        words[:2] == ["carekpi", "demo"] and not {"--seed-only", "--list-incidents"} & set(words))


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scratch]:
    if shutil.which("promtool") is None:
        if in_ci():
            pytest.fail("CI=true and promtool is missing")
        pytest.skip("promtool is not installed")
    admin = server_or_skip("postgresql")
    name = f"carekpi_readme_{os.getpid()}"
    drop = f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    with admin.connect() as conn:
        conn.execute(sa.text(drop))
    folder = tmp_path_factory.mktemp("readme")
    for part in ("alerts", "dashboards"):
        (folder / part).symlink_to(ROOT / part)
    for kind in ("datasources", "dashboards"):  # as a Grafana package installs them
        (folder / "etc/grafana/provisioning" / kind).mkdir(parents=True)
    pg_url = sa.make_url(SERVER_URLS["postgresql"]).set(database=name).render_as_string(
        hide_password=False)
    bin_dir = str(Path(sys.executable).parent)
    try:
        with running_grafana() as (_fake, grafana_url):
            state = Scratch(folder, pg_url, grafana_url)
            state.env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
                         "XDG_CACHE_HOME": str(folder / "cache"), "GRAFANA_TOKEN": TOKEN}
            yield state
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(drop))
        admin.dispose()


def _first_scrape(process: subprocess.Popen[str], port: int, timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return ""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
                body = answer.read().decode()
            if SCRAPED.search(body):
                return body
        except OSError:
            pass
        time.sleep(0.5)
    return ""


def _run(state: Scratch, command: str) -> subprocess.CompletedProcess[str]:
    if not _long_running(command):
        return subprocess.run(["bash", "-c", command], cwd=state.folder, env=state.env,
                              capture_output=True, text=True, timeout=600)
    process = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=state.folder,
                               env=state.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        scraped = _first_scrape(process, state.port)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    code = process.returncode if scraped else -1
    return subprocess.CompletedProcess(command, code, out, err + ("" if scraped else
                                                                  "\n(never scraped)"))


COMMANDS = readme_commands()


def test_the_guide_has_its_examples() -> None:
    assert "carekpi config validate --config carekpi.yaml" in COMMANDS
    assert any("--as-of" in c and "--config" in c for c in COMMANDS)
    assert {"bash tests/run.sh", SETUP} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS, ids=[c[:70] for c in COMMANDS])
def test_readme_command_runs(scratch: Scratch, command: str) -> None:
    replacement, _why = NOT_RUN.get(command, (command, ""))
    if replacement is None or command.startswith(tuple(NOT_RUN_PREFIXES)):
        return
    run = _run(scratch, scratch.substitute(replacement))
    scratch.outputs[command] = run
    detail = f"{command}\n--- stdout\n{run.stdout[-2000:]}\n--- stderr\n{run.stderr[-2000:]}"
    assert run.returncode == EXIT.get(_without_options(command), 0), detail
    assert "Traceback" not in run.stderr, detail
    if command.startswith("carekpi alerts build") and "--format" not in command:
        # plain rule files (--format prometheus-operator writes PrometheusRule resources,
        # which tests/test_deploy_artifacts.py checks with promtool)
        rules = sorted(str(p) for p in (scratch.folder / "rules").glob("*.yaml"))
        check = subprocess.run(["promtool", "check", "rules", *rules], capture_output=True,
                               text=True, timeout=120)
        assert check.returncode == 0, check.stdout + check.stderr


def test_the_demo_config_validates_without_a_warning(scratch: Scratch) -> None:
    run = scratch.outputs.get("carekpi config validate --config carekpi.yaml")
    if run is None:
        pytest.skip("the validate example did not run")
    assert "warning" not in run.stdout + run.stderr, run.stdout + run.stderr

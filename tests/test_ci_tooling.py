"""The CI scripts themselves: tests/run.sh (the README's test command) and .ci/run's guard
that fails a CI run when a test needing PostgreSQL, MariaDB or promtool was skipped."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CI_RUN = ROOT / ".ci" / "run"
RUN_SH = ROOT / "tests" / "run.sh"


@pytest.mark.parametrize("script", [CI_RUN, RUN_SH], ids=["ci-run", "run-sh"])
def test_scripts_parse_and_are_strict(script):
    subprocess.run(["bash", "-n", str(script)], check=True)
    assert "set -euo pipefail" in script.read_text()


@pytest.fixture
def ready_venv(tmp_path) -> Path:
    """A stand-in venv whose python is this interpreter and whose install stamp is current,
    so tests/run.sh runs pytest without installing anything."""
    import kpis

    if Path(kpis.__file__).resolve().parent.parent != ROOT:
        pytest.skip("this interpreter's carekpi is not installed from this checkout")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    stamp = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + RUN_SH.read_bytes())
    (venv / ".carekpi-dev-install").write_text(stamp.hexdigest() + "\n")
    return venv


def _run_sh(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CAREKPI_VENV": str(venv)}
    return subprocess.run(["bash", str(RUN_SH), *args], env=env, cwd=ROOT, text=True,
                          capture_output=True, timeout=120)


def test_run_sh_setup_only_skips_an_up_to_date_install(ready_venv):
    result = _run_sh(ready_venv, "--setup-only")
    assert result.returncode == 0, result.stderr
    assert "installing" not in result.stdout


def test_run_sh_turns_no_tests_collected_into_a_failure(ready_venv, tmp_path):
    empty = tmp_path / "no_tests_here"
    empty.mkdir()
    result = _run_sh(ready_venv, "-p", "no:cacheprovider", "-q", str(empty))
    assert result.returncode == 1
    assert "collected no tests" in result.stderr


def _skip_guard_source() -> str:
    match = re.search(r"<<'PY'\n(.*?)\nPY\n", CI_RUN.read_text(), re.S)
    assert match, ".ci/run no longer embeds the skip guard plugin"
    return match.group(1)


SAMPLE = '''
import pytest

@pytest.mark.postgresql
def test_needs_postgres():
    pytest.skip("server unreachable")

@pytest.mark.parametrize("dialect", ["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def test_dialects(dialect):
    if dialect == "mysql":
        pytest.skip("server unreachable")

def test_plain_skip_is_fine():
    pytest.skip("nothing to do with servers")

@pytest.mark.postgresql
@pytest.mark.xfail(reason="known")
def test_expected_failure_is_fine():
    raise AssertionError
'''
MODULE_SKIP = '''
import pytest
pytestmark = pytest.mark.prometheus
pytest.skip("promtool not installed", allow_module_level=True)
'''


def _pytest_with_guard(tmp_path: Path, files: dict[str, str]) -> subprocess.CompletedProcess[str]:
    plugin_dir, project = tmp_path / "plugin", tmp_path / "project"
    plugin_dir.mkdir()
    project.mkdir()
    (plugin_dir / "carekpi_ci_skip_guard.py").write_text(_skip_guard_source())
    (project / "pytest.ini").write_text("[pytest]\nmarkers =\n    postgresql\n    mysql\n"
                                        "    prometheus\n")
    for name, text in files.items():
        (project / name).write_text(text)
    env = {**os.environ, "PYTHONPATH": str(plugin_dir)}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                           "-p", "carekpi_ci_skip_guard", "-q", "-rs"],
                          cwd=project, env=env, text=True, capture_output=True, timeout=120)


def test_skip_guard_fails_the_run_on_skipped_server_tests_only(tmp_path):
    result = _pytest_with_guard(tmp_path, {"test_sample.py": SAMPLE,
                                           "test_module_skip.py": MODULE_SKIP})
    assert result.returncode == 1, result.stdout
    summary = result.stdout.split("CI: tests that need a server were skipped", 1)[1]
    guarded = sorted(line.split(" [")[0] for line in summary.splitlines()
                     if line.startswith("test_"))
    # test_plain_skip_is_fine and the xfail are not listed
    assert guarded == ["test_module_skip.py", "test_sample.py::test_dialects[mysql]",
                       "test_sample.py::test_needs_postgres"]
    assert "1 passed, 4 skipped, 1 xfailed" in result.stdout


def test_skip_guard_leaves_a_clean_run_alone(tmp_path):
    passing = "def test_a():\n    pass\n"
    result = _pytest_with_guard(tmp_path, {"test_plain.py": passing})
    assert result.returncode == 0, result.stdout
    assert "need a server" not in result.stdout


def _ci_functions(snippet: str, wait: int = 2) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CAREKPI_SERVICE_WAIT": str(wait)}
    return subprocess.run(["bash", "-c", f'source "{CI_RUN}" && {snippet}'], env=env,
                          text=True, capture_output=True, timeout=60)


def test_a_service_that_answers_is_left_alone():
    result = _ci_functions('up() { :; }; start() { echo STARTED; }; ensure_service "DB" up start')
    assert result.returncode == 0
    assert result.stdout == "DB answers\n"


def test_a_stopped_service_is_started_and_waited_for(tmp_path):
    flag = tmp_path / "up"
    result = _ci_functions(f'up() {{ [ -e "{flag}" ]; }}; start() {{ touch "{flag}"; }}; '
                           'ensure_service "DB" up start')
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["DB does not answer; starting it", "DB answers after 0s"]


def test_a_service_that_never_answers_fails_clearly():
    result = _ci_functions('down() { return 1; }; start() { :; }; ensure_service "DB" down start')
    assert result.returncode == 1
    assert "DB still does not answer 2s after starting it" in result.stderr

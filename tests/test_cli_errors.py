"""Every command reports a failure the same way: one line ``carekpi: ...`` on stderr, exit code
2, never a traceback (kpis.commandline holds the one handler)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from kpis.cli import main
from kpis.commandline import Group

CARE = [sys.executable, "-m", "kpis"]
BAD_YAML = "version: 1\nsources: {main: {url: 'sqlite:///x.db', refresh_intervl: 1m}}\n"


def one_line_exit_2(args: list[str]) -> str:
    result = CliRunner().invoke(main, args, prog_name="carekpi")
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("carekpi: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def test_alerts_build_with_a_bad_config_is_one_line_in_a_real_process(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_YAML)
    done = subprocess.run([*CARE, "alerts", "build", "--config", str(bad),
                           "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (f"carekpi: {bad}: sources.main.refresh_intervl: unknown key; "
                           "did you mean 'refresh_interval'?\n")


@pytest.mark.parametrize("command", [
    ["alerts", "build", "--out", "{tmp}/out"],
    ["dashboards", "build", "--out", "{tmp}/out"],
    ["config", "validate", "--offline"],
    ["config", "show"],
    ["collect", "--once"],
    ["checks", "run"],
])
def test_every_command_reports_a_bad_config_in_one_line(command: list[str], tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_YAML)
    args = [a.replace("{tmp}", str(tmp_path)) for a in command]
    line = one_line_exit_2([*args, "--config", str(bad)])
    assert line == (f"carekpi: {bad}: sources.main.refresh_intervl: unknown key; "
                    "did you mean 'refresh_interval'?")


def test_a_bad_option_value_is_one_line_naming_the_option(tmp_path: Path):
    bad = tmp_path / "carekpi.yaml"
    bad.write_text("version: 1\nsources: {main: {url: 'sqlite:///x.db'}}\n")
    line = one_line_exit_2(["collect", "--once", "--config", str(bad), "--kpi", "nope"])
    assert "--kpi" in line and "unknown KPI 'nope'" in line
    line = one_line_exit_2(["collect", "--once", "--config", str(bad), "--as-of", "yesterday"])
    assert "--as-of" in line and "ISO 8601" in line
    assert "No such command" in one_line_exit_2(["colect"])
    # Prometheus would expand it in every alert's job label: the inhibitions then miss.
    line = one_line_exit_2(["alerts", "build", "--out", str(tmp_path / "out"),
                            "--job", "a{{ .Value }}"])
    assert "--job" in line and "rule templating" in line


def test_an_unexpected_error_is_withheld_not_a_traceback(monkeypatch):
    @click.group(cls=Group)
    def group() -> None:
        pass

    @group.command()
    def boom() -> None:
        raise ValueError("row value 'Jane Doe, 555-0100'")

    result = CliRunner().invoke(group, ["boom"])
    assert result.exit_code == 2
    assert result.stderr.startswith("carekpi: unexpected ValueError (details withheld")
    assert "Jane" not in result.output and "Traceback" not in result.output
    monkeypatch.setenv("CAREKPI_DEBUG", "1")
    assert isinstance(CliRunner().invoke(group, ["boom"]).exception, ValueError)


def test_output_cut_short_by_its_reader_is_not_an_error() -> None:
    """carekpi kpis show A3 | head -1: head closes the pipe; the command ends quietly, 0."""
    script = ("import click, sys\n"
              "from kpis.commandline import Group\n"
              "@click.group(cls=Group)\n"
              "def group(): pass\n"
              "@group.command()\n"
              "def talk():\n"
              "    for i in range(100000): click.echo(f'line {i}')\n"
              "group()\n")
    child = subprocess.Popen([sys.executable, "-c", script, "talk"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline() == "line 0\n"
    child.stdout.close()  # as head does after its line
    _, err = child.communicate(timeout=60)
    assert (child.returncode, err) == (0, "")


@pytest.mark.parametrize("checks, key, message", [
    ({"schedul": "1h"}, "checks.schedul", "unknown key"),
    ({"schedule": "hourly"}, "checks.schedule", "'hourly'"),
    ({"rules": {"appointments.colour": {"enabled": False}}}, "checks.rules.appointments.colour",
     "unknown check"),
    ({"required": {"calls": ["id"]}}, "checks.required.calls",
     "entity 'calls' is not mapped (mapped: appointments)"),
])
def test_config_validate_checks_the_checks_section_strictly(checks, key, message, tmp_path):
    """A typo under checks: used to pass validation and silently turn scheduled checks off."""
    path = tmp_path / "carekpi.yaml"
    path.write_text(json.dumps({
        "version": 1, "sources": {"main": {"url": "sqlite:///x.db"}},
        "entities": {"appointments": {"source": "main", "table": "appt",
                                      "fields": {"id": "appt_id"}}},
        "checks": checks}))
    line = one_line_exit_2(["config", "validate", "--offline", "--config", str(path)])
    assert line.startswith(f"carekpi: {path}: {key}: ") and message in line, line

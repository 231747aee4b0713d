"""The README is part of the product: its commands must exist and its reference be current."""

from __future__ import annotations

import re

from tests.cli_reference import README, reference, section


def test_cli_reference_is_current() -> None:
    text = README.read_text(encoding="utf-8")
    assert section(text) == reference().strip(), (
        "README.md CLI reference is stale: run `python -m tests.cli_reference --write`")


def test_the_two_setup_commands_come_first() -> None:
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"```sh\n(.*?)```", text, re.DOTALL)
    assert "carekpi demo" in blocks[0]
    assert blocks[1].strip() == "bash tests/run.sh"


def test_every_carekpi_command_in_the_guide_exists() -> None:
    text = README.read_text(encoding="utf-8")
    guide = text[: text.index("## CLI reference")]
    documented = set(re.findall(r"### `(carekpi[^`]*)`", text))
    for command in set(re.findall(r"\bcarekpi ([a-z]+(?: [a-z]+)?)", guide)):
        words = command.split()
        assert any(d == f"carekpi {command}" or d == f"carekpi {words[0]}" for d in documented), (
            command)


ROOT = README.parent
# A path into the checkout: starts with one of its top-level folders (or is a file at its top).
_REPO_PATH = re.compile(r"(?<![\w/.~$-])((?:\.ci|alerts|checks|collectors|dashboards|kpis|tests)"
                        r"/[\w.*/-]*)")
_MARKDOWN_FILE = re.compile(r"(?<![\w/.-])([\w-]+\.md)\b")
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)|href=\"([^\"]+)\"")  # <...> is absolute only


def _exists(path: str) -> bool:
    path = path.rstrip(".,;:")
    return any(ROOT.glob(path)) if "*" in path else (ROOT / path).exists()


def test_every_relative_link_resolves() -> None:
    text = README.read_text(encoding="utf-8")
    links = [next(g for g in m.groups() if g) for m in _LINK.finditer(text)]
    relative = [link for link in links if not re.match(r"^[a-z]+:|^#|^/", link)]
    missing = [link for link in relative if not _exists(link.split("#")[0])]
    assert not missing, f"README links to files that do not exist: {missing}"


def test_every_file_the_readme_names_exists() -> None:
    text = README.read_text(encoding="utf-8")
    named = set(_REPO_PATH.findall(text))
    assert {"kpis/model.py", "alerts/RUNBOOK.md", "tests/run.sh"} <= {n.rstrip(".,;:")
                                                                       for n in named}
    missing = sorted(n for n in named if not _exists(n))
    assert not missing, f"README names files that do not exist: {missing}"
    shipped = {p.name for p in ROOT.rglob("*.md") if ".venv" not in p.parts}
    cited = set(_MARKDOWN_FILE.findall(text))
    assert not cited - shipped, f"README cites documents that do not ship: {cited - shipped}"


def test_the_demo_days_agree_between_readme_and_generated_config() -> None:
    from kpis.demo import config_yaml
    from kpis.demo.world import FUTURE_DAYS, HISTORY_DAYS

    text = README.read_text(encoding="utf-8")
    config = config_yaml("sqlite:///demo.db")
    said = {int(n) for n in re.findall(r"(\d+) days", text[:text.index("## Point it at")])}
    assert said == {HISTORY_DAYS}, said
    assert f"{HISTORY_DAYS} days of history" in config
    assert f"{FUTURE_DAYS} days of bookings ahead" in config
    assert {int(n) for n in re.findall(r"(\d+) days", config)} <= {HISTORY_DAYS, FUTURE_DAYS}

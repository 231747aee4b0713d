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

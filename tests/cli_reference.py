"""The README's CLI reference, generated from the commands' own --help.

`python -m tests.cli_reference --write` rewrites the section between the markers in README.md;
tests/test_readme.py fails when it is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from click.testing import CliRunner

from kpis.cli import main

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- cli-reference:start -->", "<!-- cli-reference:end -->"


def _commands(group: click.Group, prefix: list[str]) -> list[list[str]]:
    paths = [prefix]
    for name in sorted(group.commands):
        command = group.commands[name]
        if isinstance(command, click.Group):
            paths.extend(_commands(command, [*prefix, name]))
        else:
            paths.append([*prefix, name])
    return paths


def reference() -> str:
    runner = CliRunner()
    parts = []
    for path in _commands(main, []):
        result = runner.invoke(main, [*path, "--help"], prog_name="carekpi",
                               terminal_width=100)
        title = " ".join(["carekpi", *path])
        parts.append(f"### `{title}`\n\n```\n{result.output.rstrip()}\n```\n")
    return "\n".join(parts)


def section(text: str) -> str:
    return text[text.index(START) + len(START):text.index(END)].strip()


def write() -> None:
    text = README.read_text(encoding="utf-8")
    head, tail = text[:text.index(START) + len(START)], text[text.index(END):]
    README.write_text(f"{head}\n\n{reference()}\n{tail}", encoding="utf-8")


if __name__ == "__main__":
    if "--write" in sys.argv:
        write()
    else:
        print(reference())

"""A custom import-linter contract (see pyproject.toml): a package opens database engines only
through ``kpis.db.engines``.

import-linter can forbid modules, not functions, and ``sqlalchemy`` as a whole is needed for
building queries; so this contract reads the package's sources for any use of
``create_engine`` and requires a direct import of ``kpis.db.engines``.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

from importlinter import Contract, ContractCheck, fields, output


class UsesSharedEngines(Contract):
    """``source_modules`` never call ``create_engine`` and import ``engines_module``."""

    source_modules = fields.ListField(subfield=fields.StringField())
    engines_module = fields.StringField()

    def check(self, graph: object, verbose: bool) -> ContractCheck:
        offences: list[str] = []
        engines = str(self.engines_module)  # type: ignore[attr-defined]
        for package in map(str, self.source_modules):  # type: ignore[attr-defined]
            importers = []
            for module in sorted(m for m in graph.modules  # type: ignore[attr-defined]
                                 if m == package or m.startswith(package + ".")):
                if engines in graph.find_modules_directly_imported_by(module):  # type: ignore[attr-defined]
                    importers.append(module)
                offences.extend(f"{module}:{line} uses create_engine"
                                for line in _create_engine_uses(module))
            if not importers:
                offences.append(f"no module of {package} imports {engines}")
        return ContractCheck(kept=not offences, metadata={"offences": offences})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for offence in check.metadata["offences"]:
            output.print_error(offence)
            output.new_line()


def _create_engine_uses(module: str) -> list[int]:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return []
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    lines = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr == "create_engine") or (
                isinstance(node, ast.Name) and node.id == "create_engine") or (
                isinstance(node, ast.alias) and node.name == "create_engine"):
            lines.append(getattr(node, "lineno", 0))
    return lines

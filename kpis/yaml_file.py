"""Reading a YAML file the user wrote (carekpi.yaml, web-config.yml): safe, strict about
duplicate keys, and every failure one line naming the file (and the line, for syntax)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kpis.errors import ConfigError


def read(path: Path) -> Any:
    """The parsed document; ConfigError when the file is missing, unreadable or not YAML."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), "", "file not found") from None
    except (OSError, ValueError) as exc:  # ValueError: undecodable bytes, a NUL in the path
        reason = getattr(exc, "strerror", None) or exc
        raise ConfigError(str(path), "", f"cannot read: {reason}") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(str(path), "", f"{where}YAML syntax error: {problem}") from None
    except RecursionError:
        raise ConfigError(str(path), "", "YAML syntax error: nested too deeply") from None


_SafeLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: ~20x faster


class _UniqueKeyLoader(_SafeLoader):  # type: ignore[misc]
    """A safe loader that refuses a key given twice in one mapping (the second would win)."""

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:
                continue  # unhashable: the base class reports it
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping

    def construct_checked_timestamp(self, node: Any) -> Any:
        """A date such as 2026-09-31 is shaped like one but is none: a located error, not
        the ValueError the base class lets out."""
        try:
            return self.construct_yaml_timestamp(node)
        except ValueError as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"{node.value!r} is not a valid date or time ({exc})",
                node.start_mark) from None


_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:timestamp",
                                 _UniqueKeyLoader.construct_checked_timestamp)



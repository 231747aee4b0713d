"""The expected text of an alert's annotations, rendered in Python the way Prometheus renders
the Go templates the generator writes (humanizePercentage, humanizeDuration, printf and the
``query`` of the exported target). The promtool unit tests assert these exact strings, so a
broken template or target lookup fails them."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping


def humanize_percentage(value: float) -> str:
    return _go_g4(value * 100) + "%"


def humanize_duration(value: float) -> str:
    """Prometheus' humanizeDuration for values of a second or more (and zero)."""
    if math.isnan(value) or math.isinf(value):
        return _go_g4(value)
    if value == 0:
        return "0s"
    sign, value = ("-", -value) if value < 0 else ("", value)
    whole = int(value)
    seconds, minutes = whole % 60, (whole // 60) % 60
    hours, days = (whole // 3600) % 24, whole // 86400
    if days:
        return f"{sign}{days}d {hours}h {minutes}m {seconds}s"
    if hours:
        return f"{sign}{hours}h {minutes}m {seconds}s"
    if minutes:
        return f"{sign}{minutes}m {seconds}s"
    return f"{sign}{_go_g4(value)}s"


def _go_g4(value: float) -> str:
    """Go's ``%.4g`` (same as Python's for the values used here)."""
    return f"{value:.4g}"


FILTERS: dict[str, Callable[[float], str]] = {
    "humanizePercentage": humanize_percentage,
    "humanizeDuration": humanize_duration,
    'printf "%.0f"': lambda v: f"{v:.0f}",
    'printf "%.1f"': lambda v: f"{v:.1f}",
}

_TARGET_BLOCK = re.compile(
    r"\{\{ with (?:printf|query) .*? \}\}\{\{ \. \| first \| value \| (.+?) \}\}\{\{ end \}\}")
_LABEL_BLOCK = re.compile(r"\{\{ with \$labels\.(\w+) \}\}(.*?)\{\{ end \}\}")
_VALUE = re.compile(r"\{\{ \$value \| (.+?) \}\}")
_LABEL = re.compile(r"\{\{ \$labels\.(\w+) \}\}")


def render(template: str, labels: Mapping[str, str], value: float,
           target: float | None = None) -> str:
    """Render one annotation template for an alert with ``labels`` and ``value``; ``target``
    is what the template's query of ``carekpi_kpi_target`` returns."""
    def target_text(match: re.Match[str]) -> str:
        assert target is not None, "the template queries a target: give one"
        return FILTERS[match.group(1)](target)

    def label_block(match: re.Match[str]) -> str:
        found = labels.get(match.group(1), "")
        return match.group(2).replace("{{ . }}", found) if found else ""

    text = _TARGET_BLOCK.sub(target_text, template)
    text = _LABEL_BLOCK.sub(label_block, text)
    text = _VALUE.sub(lambda m: FILTERS[m.group(1)](value), text)
    return _LABEL.sub(lambda m: labels.get(m.group(1), ""), text)


def render_all(annotations: Mapping[str, str], labels: Mapping[str, str], value: float,
               target: float | None = None) -> dict[str, str]:
    return {k: render(v, labels, value, target) for k, v in sorted(annotations.items())}

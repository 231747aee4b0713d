"""Label caps (collectors/labels.py) on cells built here: past the cap the lightest values fold
into `other` with their counts added; personal-looking values and values off `labels.allow`
always fold. Pure code."""

from __future__ import annotations

import pytest

from collectors.labels import LabelCaps
from kpis import catalog
from kpis.config import Labels
from kpis.snapshot import Cell

NO_SHOW = catalog.get("A1")  # proportion, labelled by clinic


def cells(volumes: dict[str, int]) -> list[Cell]:
    """One 7d cell per clinic: one no-show in every ten appointments."""
    return [Cell((("clinic", clinic), ("window", "7d")),
                 {"numerator": n // 10, "denominator": n}) for clinic, n in volumes.items()]


def by_clinic(folded: list[Cell]) -> dict[str, dict[str, float]]:
    return {c.label("clinic") or "": dict(c.counts) for c in folded}


def test_past_the_cap_the_lightest_values_fold_into_other_with_their_counts() -> None:
    caps = LabelCaps(Labels(max_values=3))
    volumes = {"dtn": 500, "rural": 300, "peds": 200, "tele": 100, "spare": 50}
    got = by_clinic(caps.fold(NO_SHOW, cells(volumes)))
    # Two kept, the third slot is `other`: 100 + 50 appointments, 10 + 5 no-shows.
    assert got == {"dtn": {"numerator": 50, "denominator": 500},
                   "rural": {"numerator": 30, "denominator": 300},
                   "other": {"numerator": 35, "denominator": 350}}
    assert caps.folded["clinic"] == 3


def test_within_the_cap_nothing_changes() -> None:
    caps = LabelCaps(Labels(max_values=3))
    original = cells({"dtn": 500, "rural": 300, "peds": 200})
    assert caps.fold(NO_SHOW, original) == original
    assert caps.folded["clinic"] == 0


def test_a_per_label_limit_wins_over_max_values() -> None:
    caps = LabelCaps(Labels(max_values=100, limits={"clinic": 2}))
    got = by_clinic(caps.fold(NO_SHOW, cells({"dtn": 500, "rural": 300, "peds": 200})))
    assert set(got) == {"dtn", "other"} and got["other"]["denominator"] == 500


@pytest.mark.parametrize("value", [
    "Jane Doe, 555-0100", "jane.doe@example.org", "5550100123", "Room 12 Jane Smith",
    "x" * 200, "line\nbreak",
])
def test_a_personal_looking_value_always_folds_even_under_the_cap(value: str) -> None:
    caps = LabelCaps(Labels())
    got = by_clinic(caps.fold(NO_SHOW, cells({"dtn": 500, value: 20})))
    assert set(got) == {"dtn", "other"} and got["other"]["denominator"] == 20


def test_real_place_names_stay() -> None:
    names = {"São Paulo": 40, "Zürich Nord": 30, "Rive-Gauche 2": 20, "DTN": 10}
    assert set(by_clinic(LabelCaps(Labels()).fold(NO_SHOW, cells(names)))) == set(names)


def test_with_an_allow_list_only_listed_codes_are_exported() -> None:
    caps = LabelCaps(Labels(allow={"clinic": ["dtn", "rural"]}))
    got = by_clinic(caps.fold(NO_SHOW, cells({"dtn": 500, "rural": 300, "peds": 200})))
    assert got == {"dtn": {"numerator": 50, "denominator": 500},
                   "rural": {"numerator": 30, "denominator": 300},
                   "other": {"numerator": 20, "denominator": 200}}

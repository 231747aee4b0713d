"""Obviously fake values for the PHI-like columns, which the config never maps.

Phone numbers use the 555-0100..555-0199 block reserved for fiction; names come from a short
fixed list; MRNs carry a DEMO prefix. None of them ever reaches a metric, log or error.
"""

from __future__ import annotations

import random

FIRST_NAMES = ("Alex", "Blake", "Casey", "Drew", "Emery", "Finley", "Harper", "Jordan",
               "Kendall", "Logan", "Morgan", "Parker", "Quinn", "Riley", "Sawyer", "Taylor")
LAST_NAMES = ("Testperson", "Example", "Sample", "Demo", "Placeholder", "Fictional")
NOTES = ("DEMO NOTE: follow-up discussed.", "DEMO NOTE: routine visit.",
         "DEMO NOTE: synthetic record, no real patient.")


def name(rng: random.Random) -> str:
    first = FIRST_NAMES[int(rng.random() * len(FIRST_NAMES))]
    return f"{first} {LAST_NAMES[int(rng.random() * len(LAST_NAMES))]}"


def phone(rng: random.Random) -> str:
    """A fictional US number: any area code, exchange 555, line 0100-0199."""
    return f"({201 + int(rng.random() * 789)}) 555-01{int(rng.random() * 100):02d}"


def mrn(rng: random.Random) -> str:
    return f"DEMO-{int(rng.random() * 10_000_000):07d}"


def note(rng: random.Random) -> str:
    return NOTES[int(rng.random() * len(NOTES))]

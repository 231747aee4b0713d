"""What a label value may be: a code or a real place name, never personal data or free text.

A label value is exported only when it is at most 64 characters of Unicode letters, marks,
digits, spaces and ordinary punctuation (``. , : / ( ) & + # - _``, the ASCII apostrophe and
the typographic ones: U+2019, U+2018, U+00B4 acute, U+0060 grave), so real names such as
"D\u00b4ARC", "S\u00e3o Jos\u00e9", "\u00d1u\u00f1oa" and "Saint-\u00c9tienne" are labels.
Values shaped like personal data fold into ``other`` (collectors.labels):

- a run of 7 or more digits, separators allowed (a phone number, a record number, a birth date);
- two or more capitalised words together with a digit (``Jane Doe 12``, a name and an address);
- more than six words (free text);
- anything else: ``@`` (e-mail), ``!?;"``, control characters, emoji, over 64 characters.
"""

from __future__ import annotations

import re
import unicodedata

MAX_LENGTH = 64
MAX_WORDS = 6
MIN_ID_DIGITS = 7
PUNCTUATION = frozenset(" .,:/()&+#-_'\u2019\u2018\u00b4`")
_DIGIT_RUN = re.compile(r"\d[\d\s().+/-]*")


def personal_or_free_text(value: str) -> bool:
    """True when the value must not be exported as a label (it folds into ``other``)."""
    if not value.strip() or len(value) > MAX_LENGTH:
        return True
    if not all(c in PUNCTUATION or unicodedata.category(c)[0] in "LMN" for c in value):
        return True
    if any(sum(c.isdigit() for c in run) >= MIN_ID_DIGITS for run in _DIGIT_RUN.findall(value)):
        return True
    words = value.split()
    if len(words) > MAX_WORDS:
        return True
    capitalised = sum(1 for w in words if w[:1].isupper() and any(c.islower() for c in w[1:]))
    return capitalised >= 2 and any(c.isdigit() for c in value)


def code_error(value: str) -> str | None:
    """Why a value cannot be listed in ``labels.allow`` (None when it can)."""
    if not value.strip():
        return "an allowed label value cannot be empty"
    if len(value) > MAX_LENGTH:
        return f"an allowed label value is at most {MAX_LENGTH} characters"
    if not value.isprintable():
        return "an allowed label value cannot contain control characters"
    return None

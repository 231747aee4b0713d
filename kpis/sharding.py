"""Which part of the refresh units one exporter process serves: shard ``I/N``.

The assignment itself (which unit goes to which shard) is the collectors' (collectors/shards.py);
this is the value the config and the command line carry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kpis.errors import CareKPIError

_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (1-based) of ``count``; ``1/1`` is the whole."""

    index: int = 1
    count: int = 1

    @classmethod
    def parse(cls, text: object, where: str = "--shard") -> Shard:
        if isinstance(text, Shard):
            return text
        match = _SPEC.match(str(text or ""))
        if not match:
            raise CareKPIError(f"{where} {text!r}: expected I/N, e.g. 1/3")
        index, count = int(match.group(1)), int(match.group(2))
        if not 1 <= index <= count <= 1024:
            raise CareKPIError(f"{where} {text!r}: need 1 <= I <= N <= 1024")
        return cls(index, count)

    @property
    def whole(self) -> bool:
        return self.count == 1

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

"""Suggestions for a mistyped name: the near miss (``entites`` -> ``entities``) or the choices."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from types import UnionType
from typing import Annotated, Any, get_args, get_origin

from pydantic import BaseModel


def near_miss(word: str, choices: Iterable[str]) -> str | None:
    """The choice ``word`` is a typo of: close in spelling (``entites``), or the same letters
    in another order (``ulr``: too short for closeness alone); None when there is none."""
    options = [str(c) for c in choices]
    same_letters = [c for c in options if c != word and sorted(c.lower()) == sorted(word.lower())]
    close = same_letters or difflib.get_close_matches(word, options, n=1, cutoff=0.75)
    return close[0] if close else None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'entities'?"`` for a near miss (``entites``), else ``""``."""
    close = near_miss(word, choices)
    return f"; did you mean {close!r}?" if close else ""


def keys_at(root: type[BaseModel], loc: tuple[str, ...]) -> tuple[str, ...]:
    """The keys the model at ``loc`` (a path below ``root``) accepts, as users write them."""
    node: Any = root
    for part in loc:
        node = inner(node)
        if isinstance(node, type) and issubclass(node, BaseModel):
            info = {(f.alias or n): f for n, f in node.model_fields.items()}.get(part)
            if info is None:
                return ()
            node = info.annotation
        elif get_origin(node) is dict:
            node = get_args(node)[1]
        elif get_origin(node) is list:
            node = get_args(node)[0]
        else:
            return ()
    node = inner(node)
    if isinstance(node, type) and issubclass(node, BaseModel):
        return tuple(f.alias or n for n, f in node.model_fields.items() if not f.exclude)
    return ()


def inner(annotation: Any) -> Any:
    """``X`` out of ``X | None`` and ``Annotated[X, ...]``."""
    while True:
        args = [a for a in get_args(annotation) if a is not type(None)]
        if get_origin(annotation) is Annotated or (isinstance(annotation, UnionType)
                                                    and len(args) == 1):
            annotation = args[0]
        else:
            return annotation

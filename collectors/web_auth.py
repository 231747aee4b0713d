"""Who may ask: bcrypt basic auth (exporter-toolkit's ``basic_auth_users``) and the
``rate_limit`` token bucket. Both are thread-safe; the HTTP front calls them from its
worker threads."""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping

import bcrypt

__all__ = ["BasicAuth", "TokenBucket"]

_CACHE_SIZE = 256
# bcrypt uses at most 72 bytes of a password; bcrypt 5 refuses longer ones with an exception,
# which must be a 401 like any other wrong password (never a dropped connection).
_BCRYPT_MAX = 72


class BasicAuth:
    """bcrypt checks, with successful (user, hash, password) checks remembered: a bcrypt round
    costs tens of milliseconds and Prometheus sends the same credentials on every scrape."""

    def __init__(self, users: Mapping[str, bytes]) -> None:
        self._users = dict(users)
        self._ok: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()
        # Unknown users (and over-long passwords) are checked against a dummy hash of the same
        # cost, so the answer time does not tell which user names exist.
        cost = int(next(iter(self._users.values())).split(b"$")[2])
        self._dummy = bcrypt.hashpw(b"carekpi-unknown-user", bcrypt.gensalt(rounds=cost))

    def allows(self, header: str | None, *, remembered_only: bool = False) -> bool | None:
        """Whether the credentials are right; with ``remembered_only``, None where telling
        would take a bcrypt round (the caller then asks again where that may block)."""
        credentials = _parse_basic(header)
        if credentials is None:
            return False
        user, password = credentials
        stored = self._users.get(user)
        if stored is None or len(password) > _BCRYPT_MAX:
            if remembered_only:
                return None
            bcrypt.checkpw(b"carekpi-unknown-user", self._dummy)
            return False
        key = _key(user, stored, password)
        with self._lock:
            if key in self._ok:
                self._ok.move_to_end(key)
                return True
        if remembered_only:
            return None
        if not bcrypt.checkpw(password, stored):
            return False
        with self._lock:
            self._ok[key] = None
            while len(self._ok) > _CACHE_SIZE:
                self._ok.popitem(last=False)
        return True


def _key(user: str, stored: bytes, password: bytes) -> bytes:
    return hashlib.sha256(b"\0".join((user.encode(), stored, password))).digest()


def _parse_basic(header: str | None) -> tuple[str, bytes] | None:
    if not header:
        return None
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password.encode()) if sep else None


class TokenBucket:
    """exporter-toolkit's rate_limit: one request per interval, bursts of ``burst``."""

    def __init__(self, interval: float, burst: int) -> None:
        self._rate, self._burst = 1.0 / interval, float(burst)
        self._tokens, self._last = float(burst), time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
            self._last = now
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True

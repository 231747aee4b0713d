"""Publish the dashboards to a Grafana instance through its HTTP API (grafana-client).

Creates the folder when missing, then upserts every dashboard by its fixed uid with
``overwrite: true``. A dashboard whose stored model already equals ours is left alone, so a
second run changes nothing (no new dashboard versions). Authentication, permission, not-found
and connection failures become one-line :class:`CareKPIError` messages.
"""

from __future__ import annotations

import re
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from kpis.errors import CareKPIError

DEFAULT_FOLDER = "CareKPI"
MESSAGE = "Published by carekpi dashboards publish"
# Grafana adds or rewrites these keys on save; they do not make a dashboard different.
_VOLATILE = ("id", "version")


@dataclass(frozen=True)
class Outcome:
    uid: str
    title: str
    action: str  # created, updated or unchanged


def folder_uid(name: str) -> str:
    """A stable folder uid from its name (Grafana allows 40 characters of [A-Za-z0-9_-])."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", name.strip()).strip("-").lower()
    return (slug or "carekpi")[:40]


def connect(url: str, token: str | None = None, user: str | None = None,
            password: str | None = None, timeout: float = 10.0) -> Any:
    """A GrafanaApi for ``url`` with a bearer token or basic auth."""
    from grafana_client.api import GrafanaApi

    if token:
        credential: str | tuple[str, str] = token  # grafana-client sends it as a Bearer token
    elif user is not None and password is not None:
        credential = (user, password)
    else:
        raise CareKPIError("Grafana: give --token, or --user and --password")
    if not re.match(r"^https?://[^/]+", url):
        raise CareKPIError(f"Grafana: not an http(s) URL: {url!r}")
    return GrafanaApi.from_url(url=url, credential=credential, timeout=timeout)


def _same(stored: dict[str, Any], ours: dict[str, Any]) -> bool:
    def strip(model: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in model.items() if k not in _VOLATILE}

    return strip(stored) == strip(ours)


def _ensure_folder(api: Any, name: str) -> str:
    from grafana_client.client import GrafanaClientError

    uid = folder_uid(name)
    try:
        folder = api.folder.get_folder(uid)
    except GrafanaClientError as exc:
        if exc.status_code != 404:
            raise
        folder = api.folder.create_folder(name, uid=uid)
    return str(folder.get("uid", uid))


def _upsert(api: Any, data: dict[str, Any], folder: str) -> Outcome:
    from grafana_client.client import GrafanaClientError

    uid, title = data["uid"], data["title"]
    try:
        stored = api.dashboard.get_dashboard(uid)
    except GrafanaClientError as exc:
        if exc.status_code != 404:
            raise
        stored = None
    if stored is not None:
        meta = stored.get("meta", {})
        if meta.get("folderUid") == folder and _same(stored.get("dashboard", {}), data):
            return Outcome(uid, title, "unchanged")
    model = {k: v for k, v in data.items() if k != "id"}
    api.dashboard.update_dashboard({
        "dashboard": {**model, "id": None},
        "folderUid": folder,
        "overwrite": True,
        "message": MESSAGE,
    })
    return Outcome(uid, title, "created" if stored is None else "updated")


def _explain(exc: Exception, url: str) -> CareKPIError:
    """One line naming the Grafana URL and what went wrong (never the credentials)."""
    from grafana_client.client import GrafanaException

    where = f"Grafana at {_masked(url)}"
    if isinstance(exc, GrafanaException):
        status = exc.status_code
        reasons = {
            401: "authentication failed (401): check the token or user and password",
            403: "permission denied (403): the token or user needs the Editor role on the folder",
            404: "not found (404): is the URL Grafana's root (including any sub-path)?",
        }
        if status in reasons:
            return CareKPIError(f"{where}: {reasons[status]}")
        if status != 0:
            return CareKPIError(f"{where}: request failed ({status}): "
                                f"{_first_line(exc.message)}")
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return CareKPIError(f"{where}: cannot connect to {parts.hostname} port {port}: "
                        f"{_reason(exc)}")


def _reason(exc: BaseException) -> str:
    """Why a connection failed, in words (``connection refused``), from the exception chain
    (HTTP libraries wrap the socket error in errors whose text is an object repr)."""
    stack, seen = [exc], set()
    while stack:
        error = stack.pop()
        if id(error) in seen:
            continue
        seen.add(id(error))
        if isinstance(error, socket.gaierror):
            return f"host name not found ({error.strerror or 'no address'})"
        if isinstance(error, ssl.SSLError):
            return f"TLS failed ({error.reason or error.strerror or 'handshake'})"
        if isinstance(error, TimeoutError | socket.timeout):
            return "timed out"
        if isinstance(error, OSError) and error.strerror:
            return error.strerror[0].lower() + error.strerror[1:]
        stack.extend(e for e in (error.__cause__, error.__context__,
                                 getattr(error, "reason", None), *error.args)
                     if isinstance(e, BaseException))
    errno_text = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", str(exc))
    if errno_text:
        return errno_text.group(1).strip().lower()
    return {"ConnectTimeout": "timed out", "ReadTimeout": "timed out"}.get(
        type(exc).__name__, f"{type(exc).__name__} (no details)")


def _masked(url: str) -> str:
    return re.sub(r"//[^/@]*@", "//***@", url)


def _first_line(text: str) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else "no details"
    return line[:200]


def publish(api: Any, url: str, dashboards: Iterable[dict[str, Any]],
            folder: str = DEFAULT_FOLDER) -> list[Outcome]:
    """Create the folder if needed and upsert every dashboard into it."""
    from grafana_client.client import GrafanaException
    from niquests.exceptions import RequestException

    try:
        folder_ref = _ensure_folder(api, folder)
        return [_upsert(api, data, folder_ref) for data in dashboards]
    except (GrafanaException, RequestException) as exc:
        raise _explain(exc, url) from None

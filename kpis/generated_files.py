"""Writing what CareKPI generates (rule files, promtool tests, dashboards) into a folder."""

from __future__ import annotations

from pathlib import Path

from kpis.errors import CareKPIError


def write_texts(files: dict[str, str], out_dir: str | Path, what: str = "files") -> list[Path]:
    """Write ``{file name: text}`` under ``out_dir`` (created if needed); the paths written,
    sorted. A folder that cannot be written is one line naming it."""
    out = Path(out_dir)
    written = []
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, text in sorted(files.items()):
            path = out / name
            path.write_text(text, encoding="utf-8")
            written.append(path)
    except OSError as exc:
        raise CareKPIError(f"{out}: cannot write {what}: {exc.strerror or exc}") from None
    return written

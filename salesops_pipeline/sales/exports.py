"""The files the frontend reads: one JSON array per agent and month."""

import json
import os
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote

from salesops_pipeline.sales.reports import ProgressionRow

# Kept as they are in file names, besides ASCII letters, digits and `_~` (which `quote` never
# escapes): what a username usually holds, so `martin.mougenot@…` stays readable.
_FILENAME_SAFE = "@.-"


def progression_document(rows: Iterable[ProgressionRow]) -> list[dict]:
    """The frontend contract: a JSON-ready array of the seven-key objects, in date order."""
    return [row.to_frontend() for row in rows]


def agent_filename(username: str) -> str:
    """The file of `username`'s progression: the username percent-encoded as UTF-8 (ASCII
    letters, digits and `@._-~` kept), then `.json`.

    The frontend finds an agent's file from the username alone, and two agents never share one
    (`o'neil` and `o_neil`, `hélène` and `hèlène`). A slash is always encoded, and so is a
    leading dot: static file servers refuse to serve hidden files.
    """
    name = quote(username, safe=_FILENAME_SAFE)
    if name.startswith("."):
        name = "%2E" + name[1:]
    return f"{name}.json"


def write_progression_exports(
    exports_dir: Path, month: str, rows: Iterable[ProgressionRow]
) -> list[Path]:
    """Write `<exports_dir>/progression/<month>/<agent_filename>` for every agent in `rows`.

    The month's directory is rewritten as a whole, so an agent who no longer has targets that
    month does not keep a stale file. Each file is written beside and renamed into place: the
    frontend never reads half a file.
    """
    by_agent: dict[str, list[ProgressionRow]] = defaultdict(list)
    for row in rows:
        by_agent[row.agent].append(row)
    month_dir = exports_dir / "progression" / month
    month_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for agent, agent_rows in sorted(by_agent.items()):
        target = month_dir / agent_filename(agent)
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        partial.write_text(json.dumps(progression_document(agent_rows), indent=2) + "\n")
        partial.replace(target)
        written.append(target)
    keep = set(written)
    for stale in month_dir.glob("*.json"):
        if stale not in keep:
            stale.unlink()
    return written

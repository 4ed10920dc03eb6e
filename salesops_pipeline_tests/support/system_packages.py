"""System programs a few tests need, found where Debian's packages put them.

The test command installs them when it runs as root. Elsewhere the tests that need them are
skipped, each with the command that installs what is missing; in CI they must be there.
"""

import glob
import os
import shutil
from pathlib import Path


def chromium_binary() -> str | None:
    found = os.environ.get("SALESOPS_CHROMIUM") or shutil.which("chromium")
    return found if found and Path(found).exists() else None


def chromedriver_binary() -> str | None:
    found = os.environ.get("SALESOPS_CHROMEDRIVER") or shutil.which("chromedriver")
    return found if found and Path(found).exists() else None


def postgres_binary(name: str) -> str | None:
    """A PostgreSQL server program (initdb, pg_ctl), on PATH or in Debian's versioned folder."""
    return shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))), None
    )


def missing_for(marker: str) -> str | None:
    """Why tests with `marker` cannot run here, with how to fix it; None when they can."""
    if marker == "browser":
        absent = [
            package
            for package, found in (
                ("chromium", chromium_binary()),
                ("chromium-driver", chromedriver_binary()),
            )
            if not found
        ]
        if absent:
            return (
                "needs Chromium and chromedriver, not installed: install them with"
                f" `sudo apt-get install {' '.join(absent)}` (or `bash scripts/test.sh` as root)"
            )
    if marker == "postgres" and not (postgres_binary("initdb") and postgres_binary("pg_ctl")):
        return (
            "needs PostgreSQL's server programs (initdb, pg_ctl), not installed: install them"
            " with `sudo apt-get install postgresql` (or `bash scripts/test.sh` as root)"
        )
    return None

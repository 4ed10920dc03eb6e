"""What the local stack's console shows of Dagster: what a person acts on.

`dagster dev` logs every sensor tick, every daemon's round and every step of every run. At an
event a minute that is hundreds of lines an hour that nobody reads, and the one warning that
matters scrolls away. The Dagster UI keeps all of it; the console keeps warnings and errors,
tracebacks, the runs launched and what the pipeline's own steps say."""

import re

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# A Dagster log record: `2026-12-05 16:07:08 +0000 - <logger> - <LEVEL> - <message>`.
_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4} - (\S+) - (\w+) - (.*)$")
# Lines that start something worth seeing, whatever came before: Python's own reports.
_OWN_START = re.compile(r"^(Traceback \(most recent call last\)|\S.*\b\w*(Error|Warning)\b:)")
# Of the daemons' routine, what tells a person something happened.
_DAEMON_NEWS = ("Completed launch of run", "Launched run")


class DagsterConsole:
    """Decides, line by line, what of `dagster dev`'s output reaches the console. A record's
    continuation lines (a multi-line message) follow the record."""

    def __init__(self):
        self._showing = True

    def shows(self, line: str) -> bool:
        text = _ANSI.sub("", line).rstrip("\n")
        record = _RECORD.match(text)
        if record:
            self._showing = _worth_showing(*record.groups())
        elif _OWN_START.match(text):
            self._showing = True
        return self._showing


def _worth_showing(logger: str, level: str, message: str) -> bool:
    if level in ("WARNING", "ERROR", "CRITICAL"):
        return True
    if level == "DEBUG":
        # Every step's start, output and success, for every run: the UI's run page.
        return False
    if logger.startswith("dagster.daemon."):
        return message.startswith(_DAEMON_NEWS)
    return True

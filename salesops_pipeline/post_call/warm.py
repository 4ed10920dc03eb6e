"""When post-call runs stay warm: the call centre's working hours, on Paris time.

A run kept open answers an event within a fraction of a second; a run started for it takes a
sensor tick and a process start, several seconds. Within the warm hours the post-call sensor
keeps one run open for every group of lanes, events or not; outside them a run stops once its
lanes have been idle for a while, and the next event waits for a new one.
"""

import re
from dataclasses import dataclass
from datetime import datetime, time

from salesops_pipeline.errors import SettingError
from salesops_pipeline.timezone import BUSINESS_TIMEZONE

ALWAYS = "always"
NEVER = "never"
_WINDOW = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")


def _clock(hours: str, minutes: str, *, end: bool) -> time | None:
    h, m = int(hours), int(minutes)
    if m > 59 or h > 24 or (h == 24 and (m or not end)):
        return None
    return time.max if h == 24 else time(h, m)


@dataclass(frozen=True)
class WarmHours:
    """Daily windows of Paris time, each `start <= t < end`; a window whose end comes before
    its start runs past midnight. `spec` is the text it was read from."""

    spec: str
    windows: tuple[tuple[time, time], ...]

    @classmethod
    def parse(cls, text: str, *, setting: str = "warm hours") -> "WarmHours":
        """Read `always`, `never`, or windows such as `08:00-20:00` or `08:00-12:30,13:30-20:00`
        (24:00 ends a window at midnight). Anything else is refused with the reason."""
        spec = text.strip().lower()
        if spec == ALWAYS:
            return cls(ALWAYS, ((time.min, time.max),))
        if spec in (NEVER, "off", "none"):
            return cls(NEVER, ())
        windows = []
        for part in spec.split(","):
            match = _WINDOW.match(part.strip())
            start = match and _clock(match[1], match[2], end=False)
            end = match and _clock(match[3], match[4], end=True)
            if not match or start is None or end is None:
                raise SettingError(
                    f"{setting}={text!r}: expected 'always', 'never' or windows of Paris time"
                    " such as '08:00-20:00' or '08:00-12:30,13:30-20:00'"
                )
            if start == end:
                raise SettingError(
                    f"{setting}={text!r}: the window {part.strip()} is empty; use 'always' to"
                    " keep runs warm all day"
                )
            windows.append((start, end))
        return cls(",".join(part.strip() for part in spec.split(",")), tuple(windows))

    @property
    def never(self) -> bool:
        return not self.windows

    def contains(self, moment: datetime) -> bool:
        """Whether `moment` (aware) falls within the warm hours, on Paris time."""
        if self.spec == ALWAYS:
            return True
        local = moment.astimezone(BUSINESS_TIMEZONE).time()
        for start, end in self.windows:
            if start < end and start <= local < end:
                return True
            if start > end and (local >= start or local < end):
                return True
        return False

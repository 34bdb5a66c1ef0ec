"""Schedule strings: 5-field cron, 6-field with SECONDS FIRST (ofelia style), or @daily.

``0 30 2 * * *`` means 02:30:00 every day. croniter's own 6-field form puts seconds
LAST, so a 6-field schedule is rotated (first field moved to the end) before croniter
sees it. Times are computed in the schedule's timezone (zoneinfo name, default UTC)
and returned as aware UTC datetimes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

# croniter understands these itself; @reboot is not a time and is refused.
DESCRIPTORS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_FIELDS = "minute hour day-of-month month day-of-week"


def parse_timezone(name: str | None) -> tzinfo:
    """A zoneinfo timezone by name, UTC when None."""
    if name is None or name in ("UTC", "Z"):
        return timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {name!r} (use an IANA name like Europe/Berlin, or UTC)") from None


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule. ``fields`` are the five cron fields; ``seconds`` the seconds field."""

    text: str
    fields: tuple[str, str, str, str, str]
    seconds: str = "0"
    tz: tzinfo = timezone.utc

    @property
    def croniter_expr(self) -> str:
        """croniter's own form: seconds LAST (omitted when 0)."""
        base = " ".join(self.fields)
        return base if self.seconds == "0" else f"{base} {self.seconds}"

    @property
    def tz_name(self) -> str:
        return getattr(self.tz, "key", "UTC")

    def _iter(self, start: datetime) -> croniter:
        return croniter(self.croniter_expr, start.astimezone(self.tz))

    def next_after(self, when: datetime) -> datetime:
        """The first fire time strictly after ``when`` (aware), in UTC."""
        return self.upcoming(when, 1)[0]

    def prev_before(self, when: datetime) -> datetime:
        """The last fire time at or before ``when`` (aware), in UTC."""
        # croniter's get_prev is strictly before its start; nudge so a fire AT `when` counts
        return self._iter(when + timedelta(microseconds=1)).get_prev(datetime).astimezone(timezone.utc)

    def upcoming(self, when: datetime, count: int) -> list[datetime]:
        """The next ``count`` fire times after ``when``, in UTC."""
        it = self._iter(when)
        out: list[datetime] = []
        while len(out) < count:
            fire = it.get_next(datetime).astimezone(timezone.utc)
            if not self._repeated_wall_time(fire):
                out.append(fire)
        return out

    def _repeated_wall_time(self, fire: datetime) -> bool:
        """True for the second pass through a fixed hour when clocks fall back.

        Like cron, a job pinned to an hour (``30 2 * * *``) runs once on the night the
        clocks go back; jobs with a wildcard hour keep firing through the repeated hour.
        """
        if self.fields[1].startswith("*"):
            return False
        return fire.astimezone(self.tz).fold == 1


def parse_schedule(text: str, tz: str | None = None) -> Schedule:
    """Parse a schedule string or raise ValueError with one sentence saying what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("empty schedule (use 5 cron fields like '30 2 * * *', 6 with seconds first like '0 30 2 * * *', or @daily)")
    zone = parse_timezone(tz)
    raw = " ".join(text.split())
    if raw.startswith("@"):
        expanded = DESCRIPTORS.get(raw.lower())
        if expanded is None:
            raise ValueError(
                f"unsupported schedule {raw!r} (descriptors: {', '.join(sorted(DESCRIPTORS))})"
            )
        parts = expanded.split()
        seconds = "0"
    else:
        parts = raw.split()
        if len(parts) == 6:
            seconds, parts = parts[0], parts[1:]
        elif len(parts) == 5:
            seconds = "0"
        else:
            raise ValueError(
                f"schedule {raw!r} has {len(parts)} fields; use 5 ({_FIELDS}) or 6 with seconds first (ofelia style)"
            )
    sched = Schedule(text=raw, fields=tuple(parts), seconds=seconds, tz=zone)  # type: ignore[arg-type]
    _check(sched)
    return sched


def _fails(expr: str) -> str | None:
    try:
        croniter(expr, datetime(2026, 1, 1, tzinfo=timezone.utc)).get_next(datetime)
    except (ValueError, KeyError, TypeError, IndexError) as e:  # CroniterError is a ValueError
        return str(e)
    return None


def _check(sched: Schedule) -> None:
    """Name the bad field when croniter refuses the expression."""
    if _fails(sched.croniter_expr) is None:
        return
    named = list(zip(_FIELDS.split(), sched.fields)) + [("second", sched.seconds)]
    for i, (name, value) in enumerate(named):
        probe = ["*"] * 5 + ["0"]
        probe[i] = value
        if _fails(" ".join(probe)) is not None:
            raise ValueError(f"invalid schedule {sched.text!r}: the {name} field {value!r} is not valid cron syntax or is out of range")
    raise ValueError(f"invalid schedule {sched.text!r}: it never fires (no date matches all fields)")

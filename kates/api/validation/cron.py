"""CronJob schedules, parsed the way Kubernetes parses them (robfig/cron's standard parser).

Exactly five fields (minute hour day-of-month month day-of-week) or a descriptor (@hourly, @daily, @every 1h...),
with the same error sentences. A general cron library would accept six-field (seconds) specs and other dialects
that Kubernetes rejects, so the small grammar lives here; `Schedule.next_after` lets a CronJob controller reuse it.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import re

_MONTHS = {m: i + 1 for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"))}
_DAYS = {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}


@dataclasses.dataclass(frozen=True)
class _Bounds:
    lo: int
    hi: int
    names: dict[str, int] | None = None


_FIELDS = (_Bounds(0, 59), _Bounds(0, 23), _Bounds(1, 31), _Bounds(1, 12, _MONTHS), _Bounds(0, 6, _DAYS))

_DESCRIPTORS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}


class CronError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class Schedule:
    minutes: frozenset[int] = frozenset()
    hours: frozenset[int] = frozenset()
    days: frozenset[int] = frozenset()
    months: frozenset[int] = frozenset()
    weekdays: frozenset[int] = frozenset()
    dom_star: bool = False
    dow_star: bool = False
    every: dt.timedelta | None = None   # `@every <duration>`

    def _day_matches(self, t: dt.datetime) -> bool:
        dom = t.day in self.days
        dow = (t.isoweekday() % 7) in self.weekdays
        if self.dom_star or self.dow_star:
            return dom and dow
        return dom or dow

    def next_after(self, after: dt.datetime) -> dt.datetime | None:
        """The first activation strictly after `after` (same tzinfo), or None within five years."""
        if self.every is not None:
            step = max(self.every, dt.timedelta(seconds=1))
            return after.replace(microsecond=0) + step
        t = after.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
        limit = after + dt.timedelta(days=366 * 5)
        while t <= limit:
            if t.month not in self.months:
                t = (t.replace(day=1, hour=0, minute=0) + dt.timedelta(days=32)).replace(day=1)
                continue
            if not self._day_matches(t):
                t = t.replace(hour=0, minute=0) + dt.timedelta(days=1)
                continue
            if t.hour not in self.hours:
                t = t.replace(minute=0) + dt.timedelta(hours=1)
                continue
            if t.minute not in self.minutes:
                t += dt.timedelta(minutes=1)
                continue
            return t
        return None


def _atoi(text: str) -> int:
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        raise CronError(f"failed to parse int from {text}: strconv.Atoi: parsing \"{text}\": invalid syntax")
    n = int(text)
    if n < 0:
        raise CronError(f"negative number ({n}) not allowed: {text}")
    return n


def _int_or_name(text: str, names: dict[str, int] | None) -> int:
    if names and text.lower() in names:
        return names[text.lower()]
    return _atoi(text)


def _parse_range(expr: str, b: _Bounds) -> tuple[set[int], bool]:
    range_and_step = expr.split("/")
    low_high = range_and_step[0].split("-")
    single = len(low_high) == 1
    star = False
    if low_high[0] in ("*", "?"):
        start, end, star = b.lo, b.hi, True
    else:
        start = _int_or_name(low_high[0], b.names)
        if len(low_high) == 1:
            end = start
        elif len(low_high) == 2:
            end = _int_or_name(low_high[1], b.names)
        else:
            raise CronError(f"too many hyphens: {expr}")
    if len(range_and_step) == 1:
        step = 1
    elif len(range_and_step) == 2:
        step = _atoi(range_and_step[1])
        if single:
            end = b.hi
        if step > 1:
            star = False
    else:
        raise CronError(f"too many slashes: {expr}")
    if start < b.lo:
        raise CronError(f"beginning of range ({start}) below minimum ({b.lo}): {expr}")
    if end > b.hi:
        raise CronError(f"end of range ({end}) above maximum ({b.hi}): {expr}")
    if start > end:
        raise CronError(f"beginning of range ({start}) beyond end of range ({end}): {expr}")
    if step == 0:
        raise CronError(f"step of range should be a positive number: {expr}")
    return set(range(start, end + 1, step)), star


def _parse_field(text: str, b: _Bounds) -> tuple[frozenset[int], bool]:
    values: set[int] = set()
    star = False
    for part in text.split(","):
        got, is_star = _parse_range(part, b)
        values |= got
        star = star or is_star
    return frozenset(values), star


_DURATION_RE = re.compile(r"([0-9]*\.?[0-9]+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _parse_duration(text: str) -> dt.timedelta:
    """Go's time.ParseDuration for the units @every accepts."""
    if not text or _DURATION_RE.sub("", text) != "":
        raise CronError(f"failed to parse duration @every {text}: time: invalid duration \"{text}\"")
    seconds = sum(float(n) * _UNITS[u] for n, u in _DURATION_RE.findall(text))
    return dt.timedelta(seconds=seconds)


def parse(spec: str) -> Schedule:
    """Parse a Kubernetes CronJob schedule; raises CronError with robfig/cron's wording."""
    if not spec:
        raise CronError("empty spec string")
    if spec.startswith(("TZ=", "CRON_TZ=")):
        head, _, rest = spec.partition(" ")
        zone = head.split("=", 1)[1]
        try:
            import zoneinfo
            zoneinfo.ZoneInfo(zone)
        except Exception:  # noqa: BLE001 - any lookup failure is a bad location
            raise CronError(f"provided bad location {zone}: unknown time zone {zone}") from None
        spec = rest.strip()
    if spec.startswith("@"):
        if spec.startswith("@every "):
            return Schedule(every=_parse_duration(spec[len("@every "):].strip()))
        if spec not in _DESCRIPTORS:
            raise CronError(f"unrecognized descriptor: {spec}")
        spec = _DESCRIPTORS[spec]
    fields = spec.split()
    if len(fields) != 5:
        raise CronError(f"expected exactly 5 fields, found {len(fields)}: [{' '.join(fields)}]")
    parsed = [_parse_field(f, b) for f, b in zip(fields, _FIELDS)]
    return Schedule(minutes=parsed[0][0], hours=parsed[1][0], days=parsed[2][0], months=parsed[3][0],
                    weekdays=parsed[4][0], dom_star=parsed[2][1], dow_star=parsed[4][1])

"""Site time: the local STANDARD time of AmeriFlux time stamps and the local CLOCK time of LI-COR file names.

- AmeriFlux BASE half-hourly files stamp ``TIMESTAMP_START``/``TIMESTAMP_END`` in the site's local
  standard time, without daylight saving (AmeriFlux "Half-Hourly/Hourly Data Upload Format"; see
  shared/reference/ec-methods.md f.8).
- LI-COR SmartFlux names each ``.ghg`` by the period start in the logger's local clock time, whose zone
  is the ``Timezone:`` header line (an IANA name); EddyPro's time stamps are these file-name times
  (shared/data/ec: ``*_full_output.csv`` dates are the file-name time + the averaging period).

A zone's standard offset is its UTC offset minus its daylight-saving shift (``utcoffset() - dst()``
of :mod:`zoneinfo`), so in a zone with summer time standard time = local clock - 1 h in summer. The
IANA database describes a few zones (Europe/Dublin, Africa/Casablanca) with a *negative* shift in
winter instead; for those the winter (smaller) offset is taken as standard, which is the offset
those sites report to the flux networks (no summer time).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

#: half a year, to look at the other season's offset of a zone
_HALF_YEAR = timedelta(days=182)


def zone(name: str | None) -> ZoneInfo | None:
    """The IANA zone ``name``, or None if it is empty or unknown."""
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def zone_problem(name: str) -> str | None:
    """Why ``name`` is not a usable IANA time zone, or None (for config validation)."""
    if zone(name) is None:
        return (f"unknown time zone {name!r}: use an IANA name such as 'America/Belize', 'Asia/Kolkata' "
                "or 'Etc/GMT+6' (UTC-6, no daylight saving)")
    return None


def daylight_saving_problem(name: str, now: datetime | None = None) -> str | None:
    """Why a zone is unfit for a logger clock, or None: one that changes its UTC offset within a year
    of ``now`` (daylight saving) repeats an hour of clock time every autumn, so two periods would get
    the same file name. The message names the fixed-offset zone of its standard time where there is one."""
    tz = zone(name)
    if tz is None:
        return None
    now = (now or datetime.now(UTC)).astimezone(UTC)
    probes = [now + timedelta(days=15 * k) for k in range(-24, 25)]
    if len({p.astimezone(tz).utcoffset() for p in probes}) <= 1:
        return None
    std_h = standard_offset_s(tz, now) / 3600.0
    sign = "-" if std_h > 0 else "+"  # POSIX sign convention of the Etc zones: Etc/GMT-1 is UTC+1
    fixed = f"'Etc/GMT{sign}{abs(std_h):g}'" if std_h == int(std_h) and std_h != 0 else "'UTC'" if std_h == 0 \
        else None
    hint = f"use {fixed}, its standard time" if fixed else \
        f"use a zone without daylight saving at its standard offset (UTC{std_h:+g} h)"
    return (f"{name!r} observes daylight saving time: a logger clock in it repeats an hour every autumn and the "
            f"archive's file names would collide; {hint} (AmeriFlux time stamps are standard time anyway)")


def fixed_zone(hours: float) -> tzinfo:
    """A zone ``hours`` east of UTC (e.g. -6, 5.5), without daylight saving."""
    return timezone(timedelta(hours=hours))


def standard_offset_s(tz: tzinfo, at: datetime) -> float:
    """UTC offset [s] of ``tz``'s standard time at the instant ``at`` (aware): ``utcoffset - dst``,
    where a negative ``dst`` anywhere within half a year (Europe/Dublin's winter) marks the winter
    offset as the standard one."""
    at = at.astimezone(UTC)
    local = at.astimezone(tz)
    offset = local.utcoffset() or timedelta(0)
    dst = local.dst() or timedelta(0)
    negative = min((x.astimezone(tz).dst() or timedelta(0) for x in (at, at - _HALF_YEAR, at + _HALF_YEAR)),
                   default=timedelta(0))
    return (offset - dst + min(negative, timedelta(0))).total_seconds()


def local_clock(unix_s: float, tz_name: str | None) -> datetime:
    """The naive local clock time of ``unix_s`` in zone ``tz_name`` (UTC when None or unknown), as a
    logger in that zone writes it into file names."""
    tz = zone(tz_name) or UTC
    return datetime.fromtimestamp(unix_s, UTC).astimezone(tz).replace(tzinfo=None)

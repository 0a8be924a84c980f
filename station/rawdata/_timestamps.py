"""Time stamps: from file names (EddyPro prototypes or common patterns) and vectorised ISO columns."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, tzinfo

import numpy as np

from station.rawdata._textparse import parse_fields

_PROTOTYPE_TOKENS = (
    ("yyyy", r"(?P<Y>\d{4})"), ("ddd", r"(?P<j>\d{3})"), ("yy", r"(?P<y>\d{2})"), ("mm", r"(?P<m>\d{2})"),
    ("dd", r"(?P<d>\d{2})"), ("HH", r"(?P<H>\d{2})"), ("MM", r"(?P<M>\d{2})"), ("SS", r"(?P<S>\d{2})"),
)

# name patterns tried when no prototype is given, most specific first
_NAME_PATTERNS = (
    re.compile(r"(?P<Y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})T(?P<H>\d{2})(?P<M>\d{2})(?P<S>\d{2})?"),  # LI-COR
    re.compile(r"(?P<Y>\d{4})[-_](?P<m>\d{2})[-_](?P<d>\d{2})[T_ -]?(?P<H>\d{2})[-_:]?(?P<M>\d{2})"),  # TOA5 & co
    re.compile(r"(?<!\d)(?P<Y>\d{4})(?P<m>\d{2})(?P<d>\d{2})[T_-]?(?P<H>\d{2})(?P<M>\d{2})(?!\d)"),
)


def prototype_regex(prototype: str) -> re.Pattern[str]:
    """EddyPro's file-name prototype (``yyyy-mm-ddTHHMM??_AIU-1359.ghg``) as a regular expression:
    ``yyyy``/``yy`` year, ``mm`` month, ``dd`` day, ``ddd`` day of year, ``HH`` hour, ``MM`` minute,
    ``?`` any one character."""
    out = []
    i = 0
    while i < len(prototype):
        for token, rx in _PROTOTYPE_TOKENS:
            if prototype.startswith(token, i):
                out.append(rx)
                i += len(token)
                break
        else:
            out.append("." if prototype[i] == "?" else re.escape(prototype[i]))
            i += 1
    return re.compile("^" + "".join(out) + "$")


def _from_match(m: re.Match[str]) -> datetime | None:
    g = {k: v for k, v in m.groupdict().items() if v is not None}
    try:
        if "Y" in g:
            year = int(g["Y"])
        elif "y" in g:
            year = 2000 + int(g["y"])
        else:
            return None
        if "j" in g:
            base = datetime(year, 1, 1) + timedelta(days=int(g["j"]) - 1)
        else:
            base = datetime(year, int(g["m"]), int(g["d"]))
        return base.replace(hour=int(g.get("H", 0)), minute=int(g.get("M", 0)), second=int(g.get("S", 0)))
    except (KeyError, ValueError):
        return None


def time_from_name(name: str, prototype: str | None = None) -> datetime | None:
    """The naive date and time written in a file name, or None."""
    if prototype:
        m = prototype_regex(prototype).match(name)
        return _from_match(m) if m else None
    for pattern in _NAME_PATTERNS:
        for m in pattern.finditer(name):
            found = _from_match(m)
            if found is not None:
                return found
    return None


def localize(naive: datetime, tz: tzinfo | None) -> datetime:
    """A naive local time as an aware UTC datetime (``tz`` None means UTC)."""
    return naive.replace(tzinfo=tz or UTC).astimezone(UTC)


def iso_column_to_unix(data: np.ndarray, starts: np.ndarray, ends: np.ndarray, tz: tzinfo | None,
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised ``YYYY-MM-DD HH:MM:SS[.fff]`` (optionally double-quoted, ``T`` allowed) to UTC Unix seconds.

    Returns the seconds and a mask of fields that do not have this form (their value is NaN).
    """
    starts = starts + (data[starts] == 34)
    ends = ends - ((data[np.maximum(ends - 1, 0)] == 34) & (ends > starts))
    n = starts.size
    ok = (ends - starts) >= 19
    pos = np.minimum(starts, data.size - 19)

    def byte(k: int) -> np.ndarray:
        return data[pos + k]

    for k, ch in ((4, 45), (7, 45), (13, 58), (16, 58)):
        ok &= byte(k) == ch
    ok &= (byte(10) == 32) | (byte(10) == 84)

    def num(*ks: int) -> np.ndarray:
        nonlocal ok
        value = np.zeros(n, dtype=np.int64)
        for k in ks:
            d = byte(k).astype(np.int64) - 48
            ok &= (d >= 0) & (d <= 9)
            value = value * 10 + d
        return value

    year, month, day = num(0, 1, 2, 3), num(5, 6), num(8, 9)
    hour, minute = num(11, 12), num(14, 15)
    seconds, bad = parse_fields(data, pos + 17, np.maximum(ends, pos + 17))
    ok &= ~bad & (month >= 1) & (month <= 12) & (day >= 1) & (day <= 31) & (hour < 24) & (minute < 60) & (seconds < 61)
    # days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil)
    y = year - (month <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    doy = (153 * np.where(month > 2, month - 3, month + 9) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    days = era * 146097 + doe - 719468
    unix = days * 86400.0 + hour * 3600.0 + minute * 60.0 + seconds
    unix[~ok] = np.nan
    if tz is not None and tz is not UTC:
        unix = _local_to_utc(unix, tz)
    return unix, ~ok


def _local_to_utc(local: np.ndarray, tz: tzinfo) -> np.ndarray:
    """Local wall-clock seconds to UTC, one offset per distinct hour (DST changes happen on the hour)."""
    out = local.copy()
    finite = np.isfinite(local)
    if not finite.any():
        return out
    hours = np.floor(local[finite] / 3600.0)
    shifted = out[finite]
    for h in np.unique(hours):
        naive = datetime(1970, 1, 1) + timedelta(hours=float(h))
        offset = naive.replace(tzinfo=tz).utcoffset() or timedelta(0)
        shifted[hours == h] -= offset.total_seconds()
    out[finite] = shifted
    return out

"""Vectorised splitting and number parsing of delimited text (the shared core of all readers).

``np.loadtxt`` and Python's ``float`` per value both cost about 100 ns a value on the station's
hardware, too slow for 20 Hz files of 30-50 columns. Instead:

1. one NumPy pass finds every separator and newline (:func:`split_records`); records with the usual
   field count are located by index arithmetic, without a Python loop over lines;
2. only the wanted fields are parsed, by :func:`parse_fields`, a vectorised reader of plain decimals
   (``-12.345``): it walks the k-th byte of every field at once, accumulates the digits into an
   exact integer mantissa (at most 15 digits, < 2**53) and divides once by an exact power of ten,
   so the result is the correctly rounded double, identical to ``float(text)``;
3. anything else (``NAN``, quoted text, empty fields, exponents, more than 15 digits) goes to a
   per-field Python fallback that knows the missing-value markers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from station.rawdata.errors import RawDataError

#: Tokens read as missing (NaN), compared lower-case after stripping blanks and double quotes.
MISSING_TOKENS = frozenset({b"", b"nan", b"-nan", b"+nan", b"na", b"n/a", b"null", b"none", b"-inf", b"inf", b"+inf"})
#: Numeric missing-value marker (EddyPro's and many loggers'): becomes NaN.
MISSING_VALUE = -9999.0

_P10 = 10.0 ** np.arange(23)  # exact doubles up to 1e22
_MAX_WIDTH = 24  # longer fields take the fallback
_CHUNK = 1 << 16  # fields per vectorised pass: keeps the working arrays in cache


@dataclass
class Records:
    """Located records of a delimited text buffer: field ``j`` of record ``r`` spans
    ``bounds[first[r] + j] + 1 : bounds[first[r] + j + 1]`` in ``data``."""

    data: np.ndarray  # uint8 view of the whole buffer
    bounds: np.ndarray  # positions of separators/newlines, preceded by the position before the first field
    first: np.ndarray  # per record, index into ``bounds`` of the bound before its first field
    line: np.ndarray  # per record, its line number in the file (1-based)
    nfields: int
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.first.size)

    def field_span(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        """Start and end (exclusive, trailing CR removed) of field ``j`` in every record."""
        starts = self.bounds[self.first + j] + 1
        ends = self.bounds[self.first + j + 1]
        ends = ends - ((self.data[np.maximum(ends - 1, 0)] == 13) & (ends > starts))
        return starts, ends


def skip_lines(buf: bytes, n: int, source: str) -> int:
    """Offset of the first byte after ``n`` lines."""
    pos = 0
    for i in range(n):
        nl = buf.find(b"\n", pos)
        if nl < 0:
            raise RawDataError(source, f"file ends inside its {n} header lines (after line {i})")
        pos = nl + 1
    return pos


#: bytes scanned at a time for separators: the comparison's mask stays small (a whole 13 MB .ghg
#: at once costs a 13 MB temporary; measured with bench/flux.py's resident-memory figure)
_SCAN_BYTES = 1 << 20


def _find_bounds(data: np.ndarray, origin: int, hit, head: list[int], tail: list[int]
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Positions in ``data`` from ``origin`` on where ``hit(part)`` is true, scanned ``_SCAN_BYTES`` at
    a time, as int32 where the buffer allows it (half the memory of int64 for the millions of field
    bounds), between the positions ``head`` and ``tail`` (one concatenation); and the byte at each
    position found (taken while its part is in cache)."""
    dtype = np.int32 if data.size < 2**31 - 1 else np.int64
    parts, found = [np.array(head, dtype=dtype)], []
    for i in range(origin, data.size, _SCAN_BYTES):
        part = data[i:i + _SCAN_BYTES]
        at = np.flatnonzero(hit(part))
        found.append(np.take(part, at))
        parts.append(at.astype(dtype) + dtype(i))
    parts.append(np.array(tail, dtype=dtype))
    return np.concatenate(parts), (np.concatenate(found) if found else np.zeros(0, np.uint8))


def split_records(buf: bytes, *, sep: str, header_lines: int, source: str, label: str | None = None,
                  nfields: int | None = None) -> Records:
    """Locate the data records of ``buf`` after ``header_lines`` lines.

    With a ``label`` only lines whose first field equals it are records (others are skipped, as
    EddyPro does). Blank lines are skipped. Every record must have the same number of fields
    (``nfields``, else that of the first record); a differing record is an error naming its line,
    except an unterminated last line (a logger cut off mid-write), which is dropped with a note.
    """
    if len(sep) != 1 or sep in "\r\n":
        raise RawDataError(source, f"unsupported separator {sep!r}")
    data = np.frombuffer(buf, dtype=np.uint8)
    start = skip_lines(buf, header_lines, source)
    if sep == " ":
        return _split_whitespace(buf, start, header_lines, source, label, nfields)
    # Search from the newline ending the header (or a virtual one before the buffer), so that the
    # first hit is already the bound before the first field: no copy to prepend it.
    origin = start - 1 if start > 0 else 0
    terminated = buf.endswith(b"\n")
    head = [-1] if start == 0 else []  # (virtual newline before the buffer)
    tail = [data.size] if not terminated and data.size > start else []  # the end of the data ends the last line
    # with TAB separators one comparison finds both TAB (9) and LF (10), unless the text holds
    # other control bytes (NUL padding of a cut-off file ...), which are among those hits: then
    # two exact comparisons
    bounds = found = None
    if sep == "\t":
        bounds, found = _find_bounds(data, origin, lambda part: part <= 10, head, tail)
        if np.any(found < 9):
            bounds = None
    if bounds is None:
        bounds, found = _find_bounds(data, origin, lambda part: (part == ord(sep)) | (part == 10), head, tail)
    is_nl = found == 10  # per hit (bounds after the first): the bound ends a line
    if start > 0:
        is_nl = is_nl[1:]  # the first bound found is the header's newline, not a hit
    if tail:
        is_nl = np.append(is_nl, True)
    ends = np.flatnonzero(is_nl)  # index into hits of each line's terminator -> bounds index + 1
    firsts = np.empty(ends.size, dtype=np.int64)
    if ends.size:
        firsts[0] = 0
        firsts[1:] = ends[:-1] + 1
    counts = ends + 1 - firsts
    lines = np.arange(ends.size, dtype=np.int64) + header_lines + 1
    # blank lines: one field of length 0 (or a lone CR)
    length = bounds[ends + 1] - bounds[firsts] - 1
    blank = (counts == 1) & ((length == 0) | ((length == 1) & (data[np.maximum(bounds[firsts] + 1, 0)] == 13)))
    keep = ~blank
    if label is not None:
        keep &= _first_field_is(data, bounds, firsts, label.encode("latin-1"))
    firsts, counts, lines = firsts[keep], counts[keep], lines[keep]
    notes: list[str] = []
    if firsts.size == 0:
        return Records(data, bounds, firsts, lines, nfields or 0, notes)
    expected = nfields if nfields is not None else int(counts[0])
    wrong = np.flatnonzero(counts != expected)
    if wrong.size and wrong[-1] == counts.size - 1 and not terminated:
        notes.append(f"last record (line {int(lines[-1])}) is cut off ({int(counts[-1])} of {expected} fields): "
                     "dropped")
        firsts, counts, lines = firsts[:-1], counts[:-1], lines[:-1]
        wrong = wrong[:-1]
    if wrong.size:
        k = int(wrong[0])
        raise RawDataError(source, f"record has {int(counts[k])} fields, expected {expected}"
                           + (f" ({wrong.size} such records)" if wrong.size > 1 else ""), line=int(lines[k]))
    return Records(data, bounds, firsts, lines, expected, notes)


def _first_field_is(data: np.ndarray, bounds: np.ndarray, firsts: np.ndarray, label: bytes) -> np.ndarray:
    starts = bounds[firsts] + 1
    ends = bounds[firsts + 1]
    ok = (ends - starts) == len(label)
    for k, byte in enumerate(label):  # (past the end of the data: its last byte)
        ok &= np.take(data[min(k, data.size - 1):], starts, mode="clip") == byte
    return ok


def _split_whitespace(buf: bytes, start: int, header_lines: int, source: str, label: str | None,
                      nfields: int | None) -> Records:
    """Space-separated files (runs of blanks are one separator): rewritten to single tabs, then split."""
    body = b"\n".join(b"\t".join(line.split()) for line in buf[start:].split(b"\n"))
    # keep line numbering: prepend as many empty header lines as were skipped
    rebuilt = b"\n" * header_lines + body
    return split_records(rebuilt, sep="\t", header_lines=header_lines, source=source, label=label, nfields=nfields)


# ---------------------------------------------------------------------------------------------- numbers


def parse_fields(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values of the plain decimal numbers in ``data[starts[i]:ends[i]]``, and a mask of the fields
    that are something else (their value is undefined: :func:`fallback` reads those)."""
    n = starts.size
    values = np.empty(n)
    bad = np.empty(n, dtype=bool)
    for i in range(0, n, _CHUNK):
        s = starts[i:i + _CHUNK]
        bad[i:i + _CHUNK] = _parse_chunk(data, s, ends[i:i + _CHUNK] - s, values[i:i + _CHUNK])
    return values, bad


def _parse_chunk(data: np.ndarray, starts: np.ndarray, lens: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Plain decimals ``[+-]digits[.digits]`` of one chunk into ``out``; returns the mask of other fields.

    The k-th byte of every field is gathered into row k of one (width, n) array, bytes past a
    field's end zeroed; the tests and counts then run on the whole array at once. A field is plain
    when its digits, its one dot and a leading sign account for all its bytes, so only counts are
    needed, no per-character validity test. The mantissa accumulates by Horner's rule, row by row,
    without masks (a non-digit multiplies by 1 and adds 0); it stays an exact integer (at most 15
    digits) and one division by an exact power of ten rounds it correctly.
    """
    n = starts.size
    if n == 0:
        return np.zeros(0, dtype=bool)
    width = min(int(lens.max()), _MAX_WIDTH)
    last = data.size - 1
    lens8 = np.clip(lens, 0, 255).astype(np.uint8)
    c = np.empty((width, n), dtype=np.uint8)
    for k in range(width):  # byte k of every field (past the end of the data: its last byte)
        np.take(data[min(k, last):], starts, out=c[k], mode="clip")
    negative = c[0] == 45
    counted = (negative | (c[0] == 43)).view(np.uint8)  # a leading sign
    c *= np.arange(width, dtype=np.uint8)[:, None] < lens8
    dv = c - np.uint8(48)
    d = (dv < 10).view(np.uint8)
    dv *= d  # digit values, 0 elsewhere
    mult = d * np.uint8(9)
    mult += np.uint8(1)  # 10 at a digit, 1 elsewhere
    mant = dv[0].astype(float)
    for k in range(1, width):
        mant *= mult[k]
        mant += dv[k]
    digits = d.sum(axis=0, dtype=np.uint8)
    dot = (c == 46).view(np.uint8)
    dots = dot.sum(axis=0, dtype=np.uint8)
    dot *= np.arange(width, dtype=np.uint8)[:, None]
    dot_at = dot.sum(axis=0, dtype=np.uint8)  # meaningful where there is exactly one dot
    counted += digits
    counted += dots
    bad = (counted != lens8) | (digits == 0) | (digits > 15) | (dots > 1) | (lens > width)
    frac = lens8 - dot_at - np.uint8(1)  # digits after the dot, when there is exactly one
    frac[dots != 1] = 0
    np.minimum(frac, 22, out=frac)
    np.divide(mant, np.take(_P10, frac), out=out)
    out *= 1.0 - 2.0 * negative
    return bad


def fallback(data: np.ndarray, start: int, end: int) -> float | None:
    """Value of one field the vectorised parser declined: NaN for missing markers, None if not a number."""
    token = bytes(data[start:end]).strip().strip(b'"').strip()
    if token.lower() in MISSING_TOKENS:
        return float("nan")
    try:
        return float(token)
    except ValueError:
        return None


@dataclass
class ParsedColumn:
    values: np.ndarray
    unparsable: int = 0
    first_bad: tuple[int, str] | None = None  # (line, token)


def parse_columns(records: Records, fields: list[int]) -> list[ParsedColumn]:
    """Parse fields ``fields`` (indices within a record) of every record as numbers.

    Missing markers (``NAN``, empty, ``-9999``) become NaN; text that is not a number becomes NaN and
    is counted in ``unparsable`` (the caller decides whether that is an error).
    """
    n = len(records)
    if not fields:
        return []
    idx = records.first[:, None] + np.asarray(fields, dtype=np.int64)[None, :]  # record-major: addresses ascend
    starts = records.bounds[idx]
    starts += 1
    ends = records.bounds[1:][idx]  # the next bound
    data = records.data
    last = [j for j, f in enumerate(fields) if f == records.nfields - 1]
    for j in last:  # only the last field of a line can end in the CR of a CRLF
        e = ends[:, j]
        e -= (data[np.maximum(e - 1, 0)] == 13) & (e > starts[:, j])
    values, bad = parse_fields(data, starts.ravel(), ends.ravel())
    values = values.reshape(n, len(fields))
    values[values == MISSING_VALUE] = np.nan
    out = [ParsedColumn(column) for column in np.ascontiguousarray(values.T)]
    rows, cols = np.divmod(np.flatnonzero(bad), len(fields))  # record-major, as the fields
    for r, j in zip(rows.tolist(), cols.tolist(), strict=True):
        value = fallback(data, int(starts[r, j]), int(ends[r, j]))
        col = out[j]
        if value is None:
            col.unparsable += 1
            if col.first_bad is None:
                text = bytes(data[starts[r, j]:ends[r, j]]).decode("latin-1")
                col.first_bad = (int(records.line[r]), text)
            value = float("nan")
        col.values[r] = value
    return out

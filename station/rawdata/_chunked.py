"""Parsing a delimited text a few MiB at a time, as it is inflated, instead of all at once.

The whole 13 MB ``.data`` text of a 20 Hz half hour, its 1.7 million field bounds (7-14 MB) and the
parser's temporaries made the peak resident memory of reading a ``.ghg`` (about 43 MB above the
loaded interpreter); in pieces of :data:`CHUNK_BYTES` cut at line ends, only the parsed columns grow
with the file. Each piece goes through the same :func:`~station.rawdata._textparse.split_records` and
:func:`~station.rawdata._textparse.parse_columns` as a whole text would, and values are parsed field by
field, so the columns are the same bit for bit.

Anything the pieces cannot reproduce exactly (a problem record whose message counts over the whole
file, a note on a cut-off last line, a header longer than the first piece) raises
:class:`NotChunkableError`: the caller then reads the text whole, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np

from station.rawdata._textparse import ParsedColumn, Records, parse_columns, split_records
from station.rawdata.errors import RawDataError

#: inflated text per piece [bytes]: large enough that the per-piece NumPy calls cost nothing
#: measurable, small enough that the piece, its bounds and the parser's temporaries stay a few MiB
CHUNK_BYTES = 3 << 19
#: compressed bytes read, and inflated bytes taken, at a time on the way to a chunk [bytes]
INFLATE_BYTES = 256 << 10


class NotChunkableError(Exception):
    """The text must be read whole (see the module doc)."""


def line_chunks(pieces: Iterable[bytes], chunk_bytes: int) -> Iterator[bytes]:
    """The concatenated ``pieces`` re-cut into chunks of about ``chunk_bytes`` (at least, unless the text
    ends) that end after a newline; the last chunk is whatever follows the last full one, if anything."""
    parts: list[bytes | memoryview] = []
    size = 0
    for piece in pieces:
        cut = piece.rfind(b"\n") + 1
        if cut == 0 or size + cut < chunk_bytes:
            parts.append(piece)
            size += len(piece)
            continue
        parts.append(memoryview(piece)[:cut])
        yield b"".join(parts)  # the one copy of the text
        parts, size = [piece[cut:]], len(piece) - cut
    if size:
        yield b"".join(parts)


def parse_chunked(chunks: Iterator[bytes], *, header_lines: int, source: str, label: str | None,
                  nfields: int | None, plan_fields: Callable[[Records], list[int]]) -> tuple[list[ParsedColumn], int]:
    """The fields ``plan_fields(first records)`` of every record in ``chunks`` (the first chunk holds the
    ``header_lines``) and the number of records; as :func:`parse_columns` over the whole text gives them."""
    parts: list[list[ParsedColumn]] = []
    fields: list[int] | None = None
    lines_before = 0
    n = 0
    for k, chunk in enumerate(chunks):
        try:
            records = split_records(chunk, sep="\t", header_lines=header_lines if k == 0 else 0, source=source,
                                    label=label, nfields=nfields)
        except RawDataError:
            raise NotChunkableError from None  # its message counts such records over the whole file
        if records.notes or (k == 0 and len(records) == 0):
            raise NotChunkableError
        if k:
            records.line += lines_before
        else:
            nfields = records.nfields
            fields = plan_fields(records)
        lines_before = _lines_through(records, chunk, lines_before)
        assert fields is not None
        parts.append(parse_columns(records, fields))
        n += len(records)
        del records, chunk  # the chunk's text and bounds go before the next is inflated
    if fields is None:
        raise NotChunkableError
    columns = []
    for j in range(len(fields)):  # each column's pieces go as soon as it is joined
        columns.append(_joined([p[j] for p in parts]))
        for p in parts:
            p[j] = None  # type: ignore[call-overload]
    return columns, n


def _lines_through(records: Records, chunk: bytes, lines_before: int) -> int:
    """Lines of the text up to the end of ``chunk`` (its ``records.line`` already counted from the text's
    start): the line of its last record when that ends the chunk, as it does in every ``.ghg``, else counted."""
    if len(records) and int(records.bounds[records.first[-1] + records.nfields]) == len(chunk) - 1:
        return int(records.line[-1])
    return lines_before + chunk.count(b"\n")


def _joined(pieces: list[ParsedColumn]) -> ParsedColumn:
    values = np.concatenate([p.values for p in pieces]) if len(pieces) > 1 else pieces[0].values
    first_bad = next((p.first_bad for p in pieces if p.first_bad is not None), None)
    return ParsedColumn(values, sum(p.unparsable for p in pieces), first_bad)

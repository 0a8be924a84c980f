"""The ``.ghg`` reader inflates and parses its text a chunk at a time (station.rawdata._chunked) and parses
the metadata text a station's files share once: the results must be those of reading each file whole and
alone, bit for bit, also in the corner cases."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import EC_DATA

from station.rawdata import RawDataError, ghg, read_raw
from station.rawdata._chunked import line_chunks
from station.rawdata.inflate import iter_member, read_member

GHG_FILES = sorted(EC_DATA.glob("**/raw/*.ghg"))
DEGEB = sorted((EC_DATA / "degeb-hs50-li7200-20hz" / "raw").glob("*.ghg"))
ENGINE = ("u", "v", "w", "ts", "pa", "co2", "h2o", "ch4", "diag_irga", "diag_sonic", "diag_ch4")


def _whole(monkeypatch):
    def refuse(*_args, **_kwargs):
        raise ghg.NotChunkableError

    monkeypatch.setattr(ghg, "_read_chunked", refuse)


def _same(a, b) -> None:
    assert a.columns.keys() == b.columns.keys()
    for name in a.columns:
        assert a.columns[name].tobytes() == b.columns[name].tobytes(), name
    assert (a.n_samples, a.units, a.gas_types, a.header, a.notes, a.start, a.end) == \
        (b.n_samples, b.units, b.gas_types, b.header, b.notes, b.start, b.end)
    assert a.time.tobytes() == b.time.tobytes()


def _both(monkeypatch, path: Path, **options):
    chunked = read_raw(path, **options)
    with monkeypatch.context() as m:
        _whole(m)
        whole = read_raw(path, **options)
    return chunked, whole


@pytest.mark.parametrize("path", GHG_FILES, ids=lambda p: p.name)
def test_chunked_reading_is_whole_reading(monkeypatch, path):
    _same(*_both(monkeypatch, path, variables=ENGINE))


@pytest.mark.parametrize("chunk_bytes", [4096, 100_000])
def test_small_chunks_all_columns(monkeypatch, chunk_bytes):
    monkeypatch.setattr(ghg, "CHUNK_BYTES", chunk_bytes)
    monkeypatch.setattr(ghg, "INFLATE_BYTES", 1000)
    _same(*_both(monkeypatch, DEGEB[0]))  # its last line has no newline


def test_iter_member_gives_the_member(tmp_path):
    with zipfile.ZipFile(DEGEB[1]) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".data"))
        whole = read_member(zf, name)
        pieces = list(iter_member(zf, name, 77_777))
    assert all(0 < len(p) <= 77_777 for p in pieces) and b"".join(pieces) == whole
    chunks = list(line_chunks(pieces, 300_000))
    assert b"".join(chunks) == whole and all(c.endswith(b"\n") for c in chunks[:-1])
    stored = tmp_path / "stored.ghg"
    with zipfile.ZipFile(stored, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(name, whole[:500_000])
    with zipfile.ZipFile(stored) as zf:
        assert b"".join(iter_member(zf, name, 65536)) == whole[:500_000]


def _edited(tmp_path: Path, edit) -> Path:
    with zipfile.ZipFile(DEGEB[1]) as zf:
        parts = {n: zf.read(n) for n in zf.namelist()}
    out = tmp_path / DEGEB[1].name
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for member, content in parts.items():
            zf.writestr(member, edit(content) if member.endswith(".data") else content)
    return out


def _set_field(line_no: int, field: int, token: bytes):
    def edit(data: bytes) -> bytes:
        lines = data.split(b"\n")
        fields = lines[line_no - 1].split(b"\t")
        fields[field] = token
        lines[line_no - 1] = b"\t".join(fields)
        return b"\n".join(lines)

    return edit


def test_text_in_a_late_chunk_is_noted_with_its_line(monkeypatch, tmp_path):
    path = _edited(tmp_path, _set_field(30_001, 18, b"oops"))  # u of a record far into the file
    chunked, whole = _both(monkeypatch, path)
    _same(chunked, whole)
    assert any("first on line 30001: 'oops'" in note for note in chunked.notes)
    assert np.isnan(chunked["u"][30_001 - 9])


def test_a_bad_record_in_a_late_chunk_is_the_whole_file_error(monkeypatch, tmp_path):
    def edit(data: bytes) -> bytes:
        lines = data.split(b"\n")
        for k in (20_000, 35_000):
            lines[k] = lines[k] + b"\t1"
        return b"\n".join(lines)

    path = _edited(tmp_path, edit)
    with pytest.raises(RawDataError) as chunked:
        read_raw(path)
    _whole(monkeypatch)
    with pytest.raises(RawDataError) as whole:
        read_raw(path)
    assert str(chunked.value) == str(whole.value) and "2 such records" in str(chunked.value)


def test_cut_off_last_record_and_crlf(monkeypatch, tmp_path):
    path = _edited(tmp_path, lambda data: data.replace(b"\n", b"\r\n")[:-40])
    chunked, whole = _both(monkeypatch, path)
    _same(chunked, whole)
    assert any("is cut off" in note for note in chunked.notes)


def test_corrupt_archive_errors_are_unchanged(tmp_path):
    raw = bytearray(DEGEB[0].read_bytes())
    raw[1_500_000:1_500_100] = bytes(100)  # late in the compressed .data: after some chunks were parsed
    bad = tmp_path / DEGEB[0].name
    bad.write_bytes(bytes(raw))
    with pytest.raises(RawDataError, match=r"\.data is truncated or corrupt"):
        read_raw(bad)


def test_embedded_metadata_is_parsed_once_and_names_each_file(monkeypatch):
    """The files of a station share one metadata text: parsed once (station.rawdata.metadata keeps the
    last text and its result), each file's metadata still naming its own archive member."""
    from station.rawdata import metadata

    calls = []
    parse = metadata._parse_metadata
    monkeypatch.setattr(metadata, "_LAST_PARSED", [None])
    monkeypatch.setattr(metadata, "_parse_metadata", lambda text, source: calls.append(source) or parse(text, source))
    first, second = (read_raw(p, variables=("u", "v", "w")) for p in DEGEB[:2])
    assert len(calls) == 1  # the four DE-Geb files share one metadata text
    assert first.metadata.source.startswith(str(DEGEB[0])) and second.metadata.source.startswith(str(DEGEB[1]))
    assert first.metadata == ghg.read_ghg_metadata(DEGEB[0]) and second.metadata == ghg.read_ghg_metadata(DEGEB[1])

"""``flux process --period``: consecutive files joined into clock-aligned periods, as EddyPro does.

A real 30-min LI-COR file (shared/data/ec/degeb, 20 Hz) is split into two 15-min ``.ghg`` files; joined
back into one 30-min period they must give the fluxes of the original file. EddyPro's rule for an
incomplete period (eddypro-engine ``MissingRecords > RPsetup%max_lack``, default 10 %) decides
whether a period is processed or gets a reason.
"""

from __future__ import annotations

import csv
import io
import math
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import EC_DATA

from station.rawdata import read_raw
from station.reprocess import command as reprocess
from station.reprocess import periodjoin

DEGEB = EC_DATA / "degeb-hs50-li7200-20hz" / "raw"
ORIGINAL = DEGEB / "2016-12-11T200000_AIU-1359.ghg"
NEXT = DEGEB / "2016-12-11T203000_AIU-1359.ghg"
FLUXES = ("FC", "LE", "H", "TAU")


# ------------------------------------------------------------------------------------------ .ghg tools


def rewrite_ghg(src: Path, dst: Path, *, records: slice = slice(None),
                data_line: Callable[[list[str]], list[str]] | None = None,
                header: Callable[[str], str] | None = None, metadata: Callable[[str], str] | None = None) -> Path:
    """Write ``dst`` (a ``.ghg``) from ``src``: the DATA records ``records`` (each through
    ``data_line`` as its tab-separated fields), the header lines through ``header``, the metadata
    text through ``metadata``; member names follow ``dst``'s name."""
    stem = dst.name[: -len(".ghg")]
    dst.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(src) as zf:
        names = zf.namelist()
        data_name = next(n for n in names if n.endswith(".data") and not n.endswith("-biomet.data"))
        meta_name = next(n for n in names if n.endswith(".metadata") and not n.endswith("-biomet.metadata"))
        text = zf.read(data_name).decode("latin-1")
        meta = zf.read(meta_name).decode("latin-1")
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("DATA\t"))
    head, body = lines[:first], lines[first:][records]
    if header is not None:
        head = [header(line) for line in head]
    if data_line is not None:
        body = ["\t".join(data_line(line.split("\t"))) for line in body]
    meta = re.sub(r"(?m)^file_name=.*$", f"file_name={stem}.metadata", meta)
    if metadata is not None:
        meta = metadata(meta)
    with zipfile.ZipFile(dst, "w", compression=zipfile.ZIP_DEFLATED) as out:
        out.writestr(f"{stem}.data", "\n".join(head + body) + "\n")
        out.writestr(f"{stem}.metadata", meta)
    return dst


def split_halves(src: Path, folder: Path, minutes_of_second: str = "15") -> tuple[Path, Path]:
    """Two 15-min files of a 30-min 20 Hz file: records 0..17999 and 18000..35999, named and stamped
    as SmartFlux would with a 15-min ``file_duration``."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = src.name[: -len(".ghg")]
    start, site = stem.split("_", 1)
    second = f"{start[:13]}{int(start[13:15]) + int(minutes_of_second):02d}{start[15:]}_{site}"
    duration = lambda meta: re.sub(r"(?m)^file_duration=.*$", "file_duration=15", meta)  # noqa: E731
    first = rewrite_ghg(src, folder / f"{stem}.ghg", records=slice(0, 18000), metadata=duration)

    def stamp(line: str) -> str:
        return f"Timestamp:\t{second[11:13]}:{second[13:15]}:00" if line.startswith("Timestamp:") else line

    other = rewrite_ghg(src, folder / f"{second}.ghg", records=slice(18000, None), header=stamp, metadata=duration)
    return first, other


def run_csv(paths, out: Path, *, period: float | None = None, jobs: int = 1, **kw) -> tuple[int, list[dict]]:
    code = reprocess.run([str(p) for p in paths], str(out), period_min=period, jobs=jobs, progress=None,
                         digits=None, **kw)
    with open(out, newline="") as fh:
        return code, list(csv.DictReader(fh))


def reasons_of(out: Path) -> list[dict]:
    path = reprocess.reasons_path(out)
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def assert_same_fluxes(a: dict, b: dict) -> None:
    for name in FLUXES:
        x, y = float(a[name]), float(b[name])
        assert math.isfinite(x) and x != -9999, name
        assert x == pytest.approx(y, rel=1e-9, abs=0.0), name


# ------------------------------------------------------------------------------------------ tests


@pytest.fixture(scope="module")
def original_row(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("orig") / "orig.csv"
    code, rows = run_csv([ORIGINAL], out)
    assert code == 0 and len(rows) == 1
    return rows[0]


def test_two_15_min_halves_join_into_the_original_30_min_period(tmp_path, original_row):
    halves = split_halves(ORIGINAL, tmp_path / "raw")
    assert [read_raw(h).n_samples for h in halves] == [18000, 18000]
    # each half alone is a 15-min period: not the 30-min fluxes
    code, alone = run_csv(halves, tmp_path / "alone.csv")
    assert code == 0 and len(alone) == 2
    assert float(alone[0]["H"]) != pytest.approx(float(original_row["H"]), rel=1e-6)
    # joined with --period 30 (given in reverse order: the join goes by time): the original's fluxes
    code, rows = run_csv(reversed(halves), tmp_path / "joined.csv", period=30)
    assert code == 0
    (row,) = rows
    assert row["TIMESTAMP_START"] == original_row["TIMESTAMP_START"] == "201612112000"
    assert row["TIMESTAMP_END"] == original_row["TIMESTAMP_END"] == "201612112030"
    assert_same_fluxes(row, original_row)
    assert reasons_of(tmp_path / "joined.csv") == []


def test_joined_periods_in_worker_processes_match_each_file(tmp_path, original_row):
    """Four 15-min files, two periods, two worker processes: each period is its original file's."""
    files = [*split_halves(ORIGINAL, tmp_path / "raw"), *split_halves(NEXT, tmp_path / "raw")]
    code, originals = run_csv([ORIGINAL, NEXT], tmp_path / "orig.csv")
    assert code == 0
    code, rows = run_csv(files, tmp_path / "joined.csv", period=30, jobs=2)
    assert code == 0
    assert [r["TIMESTAMP_START"] for r in rows] == ["201612112000", "201612112030"]
    for row, orig in zip(rows, originals, strict=True):
        assert_same_fluxes(row, orig)
    assert len(reprocess.plan([str(f) for f in files], period_min=30)) == 2  # two independent groups


def test_period_with_too_few_records_gets_a_reason(tmp_path):
    first, _ = split_halves(ORIGINAL, tmp_path / "raw")
    out = tmp_path / "half.csv"
    code, rows = run_csv([first], out, period=30)
    assert code == 0
    (row,) = rows
    assert (row["TIMESTAMP_START"], row["TIMESTAMP_END"]) == ("201612112000", "201612112030")
    assert all(row[name] == "-9999" for name in ("FC", "FH2O", "LE", "H", "TAU", "USTAR"))
    reasons = reasons_of(out)
    assert {r["VARIABLE"] for r in reasons} == {"FC", "FH2O", "LE", "H", "TAU", "USTAR"}
    for r in reasons:
        assert (r["TIMESTAMP_START"], r["TIMESTAMP_END"]) == ("201612112000", "201612112030")
        assert "18000 of 36000 records" in r["REASON"] and "50.0 % missing" in r["REASON"]


def test_period_missing_less_than_ten_percent_is_still_processed(tmp_path, original_row):
    """EddyPro skips a period only when MORE than max_lack = 10 % of its records are missing."""
    first, second = split_halves(ORIGINAL, tmp_path / "raw")
    shorter = rewrite_ghg(second, tmp_path / "short" / second.name, records=slice(0, 18000 - 3600))
    code, rows = run_csv([first, shorter], tmp_path / "ok.csv", period=30)
    assert code == 0
    (row,) = rows
    assert all(math.isfinite(float(row[n])) and row[n] != "-9999" for n in FLUXES)
    assert float(row["H"]) != pytest.approx(float(original_row["H"]), rel=1e-9)  # 3 min fewer samples
    assert reasons_of(tmp_path / "ok.csv") == []
    # one record more missing than 10 %: no longer processed
    shorter = rewrite_ghg(second, tmp_path / "short2" / second.name, records=slice(0, 18000 - 3601))
    code, rows = run_csv([first, shorter], tmp_path / "skip.csv", period=30)
    assert rows[0]["H"] == "-9999"
    assert "32399 of 36000 records" in reasons_of(tmp_path / "skip.csv")[0]["REASON"]


def test_files_with_different_column_layouts_are_an_error_naming_both(tmp_path, capsys):
    first, second = split_halves(ORIGINAL, tmp_path / "raw")

    def one_more_ignored(meta: str) -> str:  # the first "ignore" column becomes "not_numeric"
        return re.sub(r"(?m)^(col_\d+_variable=)ignore$", r"\1not_numeric", meta, count=1)

    other = rewrite_ghg(second, tmp_path / "other" / second.name, metadata=one_more_ignored)
    code, rows = run_csv([first, other], tmp_path / "bad.csv", period=30)
    assert code == 1
    err = capsys.readouterr().err
    line = next(line for line in err.splitlines() if "column layout" in line)
    assert first.name in line and other.name in line and "ignore" in line and "not_numeric" in line
    # the period still has its row: the first half alone, too incomplete, with the reason
    assert len(rows) == 1 and rows[0]["FC"] == "-9999"


def test_file_longer_than_the_period_is_cut_at_the_clock(tmp_path):
    """A 30-min file starting at :15 with --period 30 covers two clock periods, each half missing."""
    shifted = rewrite_ghg(ORIGINAL, tmp_path / "2016-12-11T201500_AIU-1359.ghg")
    out = tmp_path / "cut.csv"
    code, rows = run_csv([shifted], out, period=30)
    assert code == 0
    assert [(r["TIMESTAMP_START"], r["TIMESTAMP_END"]) for r in rows] == [("201612112000", "201612112030"),
                                                                          ("201612112030", "201612112100")]
    assert {r["TIMESTAMP_START"] for r in reasons_of(out)} == {"201612112000", "201612112030"}


def test_file_longer_than_the_period_is_cut_exactly_at_the_boundary(tmp_path):
    """A 30-min file with --period 15: the second period is exactly the file's second half (the record
    on the boundary is the first of the later period, whatever the time stamps' rounding)."""
    _, second = split_halves(ORIGINAL, tmp_path / "raw")
    code, (half,) = run_csv([second], tmp_path / "half.csv")
    assert code == 0
    code, rows = run_csv([ORIGINAL], tmp_path / "cut.csv", period=15)
    assert code == 0 and [r["TIMESTAMP_START"] for r in rows] == ["201612112000", "201612112015"]
    assert_same_fluxes(rows[1], half)
    assert reasons_of(tmp_path / "cut.csv") == []


def test_end_stamped_toa5_files_keep_their_periods(tmp_path):
    """Campbell TOA5 stamps each record at the END of its interval: 15-min files joined with --period 15
    are exactly the files (no record spills into the next period, no period twice)."""
    data = EC_DATA / "fluxpart-csat3-openpath-20hz"
    files = sorted((data / "raw").glob("TOA5_*.dat"))
    meta = str(data / "eddypro" / "fluxpart.metadata")
    code, plain = run_csv(files, tmp_path / "plain.csv", metadata=meta)
    assert code == 0 and len(plain) == 2
    code, joined = run_csv(files, tmp_path / "joined.csv", metadata=meta, period=15, jobs=2)
    assert code == 0
    assert [r["TIMESTAMP_START"] for r in joined] == [r["TIMESTAMP_START"] for r in plain]
    for a, b in zip(joined, plain, strict=True):
        assert_same_fluxes(a, b)


# ------------------------------------------------------------------------------------------ units


def test_joiner_leaves_out_samples_of_the_next_group():
    raw = read_raw(ORIGINAL, variables=("u", "w"))
    (period,) = periodjoin.join([raw], 1800.0, 3600.0, until=raw.start_unix + 900.0)
    assert (period.present, period.expected) == (18000, 36000)
    assert period.raw.start_unix == raw.start_unix and period.too_incomplete()


def test_a_record_stamped_a_hair_before_the_boundary_opens_the_next_period():
    import dataclasses

    import numpy as np

    raw = read_raw(ORIGINAL, variables=("u", "w"))
    jitter = np.where(np.arange(raw.n_samples) >= 18000, -2e-7, 0.0)  # a logger clock's rounding
    raw = dataclasses.replace(raw, time=raw.time + jitter)
    first, second = periodjoin.join([raw], 900.0, 3600.0)
    assert (first.present, second.present) == (18000, 18000)
    assert second.raw.columns["u"][0] == raw.columns["u"][18000]


def test_segments_split_only_on_period_boundaries():
    quarter = [0.0, 900.0, 1800.0, 2700.0, 3600.0]
    assert periodjoin.segments(quarter, 1800.0, [0.0] * 5) == [[0, 1], [2, 3], [4]]
    # files starting at :10 never start on a boundary: one group, joined in one worker
    assert periodjoin.segments([600.0, 2400.0, 4200.0], 1800.0, [0.0] * 3) == [[0, 1, 2]]
    # out of order and without a time: sorted by time, the unknown ones last
    assert periodjoin.segments([1800.0, None, 0.0, 900.0], 1800.0, [0.0] * 4) == [[2, 3], [0], [1]]
    # boundaries are in the output clock: UTC+5:30 puts :00 local at :30 UTC
    assert periodjoin.is_boundary(1800.0, 3600.0, 5.5 * 3600) and not periodjoin.is_boundary(0.0, 3600.0, 5.5 * 3600)


def test_sample_times_use_the_seconds_column_only_when_consistent(tmp_path):
    raw = read_raw(ORIGINAL, variables=("u",))
    t = periodjoin.sample_times(raw)
    assert t[0] == raw.start_unix and t[-1] == pytest.approx(raw.start_unix + 35999 / 20, abs=1e-6)
    assert t is raw.time or (t == raw.time).all()
    # a file whose Seconds disagree with its name (the synthetic variants: local time written as UTC)
    v4 = next((EC_DATA / "synthetic-variants" / "v4-csat3-north-offset-li7500a" / "raw").glob("*.ghg"))
    raw4 = read_raw(v4, variables=("u",))
    assert abs(raw4.time[0] - raw4.start_unix) > 3600
    t4 = periodjoin.sample_times(raw4)
    assert t4[0] == raw4.start_unix and t4[1] - t4[0] == pytest.approx(0.05)


def test_progress_bar_only_on_a_terminal(tmp_path):
    import os

    halves = split_halves(ORIGINAL, tmp_path / "raw")
    stream = io.StringIO()
    reprocess.run([str(h) for h in halves], str(tmp_path / "a.csv"), progress=stream)
    assert "\r[" not in stream.getvalue() and "2 periods from 2 of 2 files" in stream.getvalue()
    master, slave = os.openpty()
    with open(slave, "w", closefd=True) as tty:
        reprocess.run([str(h) for h in halves], str(tmp_path / "b.csv"), progress=tty)
    shown = b""
    while True:  # everything written before the terminal closed, then EIO
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    shown = shown.decode()
    assert "\r[" in shown and "2/2 files" in shown

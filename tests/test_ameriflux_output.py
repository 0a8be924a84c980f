"""The AmeriFlux BASE CSV of ``flux process``: local standard time stamps, every computed quantity
with an AmeriFlux name, and a reason for every missing flux (stderr and ``<out>_reasons.csv``).

Time stamps are checked against EddyPro 7.0.9 on the files of shared/data/ec, whose
``*_full_output.csv`` ``date,time`` is the END of the period in the files' own clock (the file-name
time): non-DST zones or winter dates there, so TIMESTAMP_END must equal it.
"""

from __future__ import annotations

import csv
import itertools
import math
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from conftest import EC_DATA
from test_period_join import reasons_of, rewrite_ghg

from fluxedge.common import ameriflux, sitetime
from station.flux.pipeline import Options
from station.reprocess import command as reprocess

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = EC_DATA / "synthetic-variants"
DEGEB = EC_DATA / "degeb-hs50-li7200-20hz"
V3 = VARIANTS / "v3-li7550-r3axis-li7500rs-10hz" / "raw" / "2023-03-15T110000_AIU-2003.ghg"
V4 = VARIANTS / "v4-csat3-north-offset-li7500a" / "raw" / "2023-06-20T130000_AIU-2004.ghg"
FLUXES = ("FC", "FH2O", "LE", "H", "TAU", "USTAR")


def run_csv(paths, out: Path, **kw) -> tuple[int, list[dict]]:
    code = reprocess.run([str(p) for p in paths], str(out), progress=None, **kw)
    with open(out, newline="") as fh:
        return code, list(csv.DictReader(fh))



def eddypro_ends(folder: Path) -> dict[str, str]:
    """File name -> EddyPro's period end (``date`` + ``time`` of ``*_full_output.csv``) as YYYYMMDDHHMM."""
    (path,) = folder.glob("eddypro/*_full_output.csv")
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        rows = list(csv.reader(fh))
    names = rows[1]
    out = {}
    for row in rows[3:]:
        rec = dict(zip(names, row, strict=False))
        out[rec["filename"]] = rec["date"].replace("-", "") + rec["time"].replace(":", "")
    return out


def name_time(path: Path) -> str:
    stem = path.name.split("_", 1)[0]
    return stem[:4] + stem[5:7] + stem[8:10] + stem[11:15]


# ------------------------------------------------------------------------------------------ time stamps


@pytest.mark.parametrize("folder", [*sorted(p for p in VARIANTS.iterdir() if p.is_dir()), DEGEB], ids=lambda p: p.name)
def test_timestamp_end_is_eddypros_period_end(folder, tmp_path):
    files = sorted((folder / "raw").glob("*.ghg"))
    ends = eddypro_ends(folder)
    assert ends, folder
    code, rows = run_csv(files, tmp_path / "out.csv")
    assert code == 0 and len(rows) == len(files)
    by_start = {r["TIMESTAMP_START"]: r["TIMESTAMP_END"] for r in rows}
    for f in files:  # local standard time = the file-name time here (no DST in effect)
        assert name_time(f) in by_start, f.name
    for name, end in ends.items():
        assert by_start[name_time(folder / "raw" / name)] == end, name


def test_summer_file_in_a_dst_zone_is_one_hour_before_its_clock_time(tmp_path):
    """Europe/Berlin in July: the logger's clock (CEST) is standard time (CET) + 1 h."""
    summer = tmp_path / "2016-07-11T200000_AIU-1359.ghg"
    summer.write_bytes((DEGEB / "raw" / "2016-12-11T200000_AIU-1359.ghg").read_bytes())
    code, rows = run_csv([summer], tmp_path / "out.csv")
    assert code == 0
    assert (rows[0]["TIMESTAMP_START"], rows[0]["TIMESTAMP_END"]) == ("201607111900", "201607111930")


def test_utc_offset_option_overrides_the_file_zone(tmp_path):
    """v4 names Etc/GMT+6 (file 13:00 = 19:00 UTC): --utc-offset -7 stamps it 12:00, 5.5 at 00:30 next day."""
    for hours, start in ((-7.0, "202306201200"), (5.5, "202306210030"), (-6.0, "202306201300")):
        code, rows = run_csv([V4], tmp_path / f"out{hours}.csv", utc_offset_h=hours)
        assert code == 0
        assert rows[0]["TIMESTAMP_START"] == start, hours
    # and on the command line, with its validation
    proc = subprocess.run([sys.executable, "-m", "fluxedge.cli", "flux", "process", str(V4), "-o",
                           str(tmp_path / "cli.csv"), "--utc-offset", "-7"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "202306201200,202306201230" in (tmp_path / "cli.csv").read_text()
    bad = subprocess.run([sys.executable, "-m", "fluxedge.cli", "flux", "process", str(V4), "-o",
                          str(tmp_path / "bad.csv"), "--utc-offset", "5.3"], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert bad.returncode == 2 and "--utc-offset" in bad.stderr and "0.25" in bad.stderr


def test_file_without_a_zone_is_utc_with_one_note(tmp_path, capsys):
    no_zone = [rewrite_ghg(V4, tmp_path / f"raw/2023-06-20T1{m}0000_AIU-2004.ghg",
                           header=lambda line: "" if line.startswith("Timezone:") else line) for m in (3, 4)]
    code, rows = run_csv(no_zone, tmp_path / "out.csv")
    assert code == 0
    assert [r["TIMESTAMP_START"] for r in rows] == ["202306201300", "202306201400"]  # the names, taken as UTC
    notes = [line for line in capsys.readouterr().err.splitlines() if "note" in line]
    assert len(notes) == 1 and "no time zone in 2 file(s)" in notes[0] and "--utc-offset" in notes[0]
    # with the site's standard time given, the names are that clock: same stamps, no note
    code, rows = run_csv(no_zone, tmp_path / "out6.csv", utc_offset_h=-6.0)
    assert [r["TIMESTAMP_START"] for r in rows] == ["202306201300", "202306201400"]
    assert "note" not in capsys.readouterr().err


def test_standard_offsets_of_zones():
    def std(zone: str, *ymd: int) -> float:
        return sitetime.standard_offset_s(ZoneInfo(zone), datetime(*ymd, 12, tzinfo=UTC)) / 3600

    assert std("Europe/Berlin", 2016, 7, 11) == 1 and std("Europe/Berlin", 2016, 12, 11) == 1
    assert std("US/Mountain", 2023, 3, 1) == -7 and std("US/Mountain", 2023, 7, 1) == -7
    assert std("Etc/GMT+6", 2023, 7, 14) == -6 and std("Europe/Warsaw", 2023, 3, 15) == 1
    assert std("Australia/Sydney", 2023, 1, 1) == 10 and std("Asia/Kolkata", 2023, 1, 1) == 5.5
    # the IANA database gives Ireland a negative winter "DST": its standard (no summer time) offset is 0
    assert std("Europe/Dublin", 2023, 1, 15) == 0 and std("Europe/Dublin", 2023, 7, 15) == 0


# ------------------------------------------------------------------------------------------ columns


def test_every_computed_ameriflux_quantity_is_a_column(tmp_path):
    outcome = reprocess.process_file(str(V3), options=Options())
    (row,) = outcome.rows
    code, (csv_row,) = run_csv([V3], tmp_path / "out.csv", digits=None)
    assert code == 0
    header = list(csv_row)
    assert header[:2] == ["TIMESTAMP_START", "TIMESTAMP_END"]
    assert set(header[2:]) <= set(ameriflux.COLUMNS)  # AmeriFlux names only
    for name in ("FC_RANDUNC", "LE_RANDUNC", "H_RANDUNC", "TAU_RANDUNC", "ET", "TA", "RH", "WD", "WS",
                 "FETCH_MAX", "FETCH_70", "FETCH_90"):
        assert name in header, name
    computed = [k for k in row.results if k in ameriflux.COLUMNS]
    assert {"FC_RANDUNC", "ET", "TA", "RH"} <= set(computed)
    for name in computed:  # each as the engine computed it
        assert csv_row[name] == ameriflux.cell(name, row.results[name], None), name
    assert not any(c in header for c in ameriflux.CH4_COLUMNS)  # no methane analyser at this site
    # units as AmeriFlux gives them
    assert ameriflux.COLUMNS["ET"] == "mm hour-1" and ameriflux.COLUMNS["TA"] == "deg C"
    assert ameriflux.COLUMNS["FC_RANDUNC"] == ameriflux.COLUMNS["FC"]


# ------------------------------------------------------------------------------------------ reasons


def test_absent_co2_column_is_the_reason_for_fc(tmp_path, capsys):
    def no_co2(meta: str) -> str:
        return re.sub(r"(?m)^(col_\d+_variable=)co2(\r?)$", r"\1ignore\2", meta)

    path = rewrite_ghg(V3, tmp_path / V3.name, metadata=no_co2)
    out = tmp_path / "out.csv"
    code, (row,) = run_csv([path], out)
    assert code == 0
    assert row["FC"] == "-9999" and float(row["LE"]) != -9999 and float(row["H"]) != -9999
    assert "REASON" not in "".join(row)  # the AmeriFlux file stays standard
    (reason,) = reasons_of(out)
    assert reason == {"TIMESTAMP_START": "202303151100", "TIMESTAMP_END": "202303151130", "VARIABLE": "FC",
                      "REASON": "co2 column absent from the file"}
    err = capsys.readouterr().err
    assert "202303151100-202303151130 FC = -9999: co2 column absent from the file" in err
    # a later run with nothing to explain removes the stale companion file
    run_csv([V3], out)
    assert not reprocess.reasons_path(out).exists()


def test_all_co2_values_missing_is_the_reason(tmp_path):
    cols = (10, 22)  # the file's co2 columns (molar density, mole fraction): col N is field N after DATA

    def blank(fields: list[str]) -> list[str]:
        for c in cols:
            fields[c] = "-9999"
        return fields

    path = rewrite_ghg(V3, tmp_path / V3.name, data_line=blank)
    out = tmp_path / "out.csv"
    code, (row,) = run_csv([path], out)
    assert code == 0 and row["FC"] == "-9999" and float(row["H"]) != -9999
    (reason,) = [r for r in reasons_of(out) if r["VARIABLE"] == "FC"]
    assert reason["REASON"] == "all 18000 co2 samples missing in the file"


def test_records_screened_by_the_analyser_diagnostic_are_the_reason(tmp_path):
    """LI-7500RS diagnostic 0 on every record (PLL, detector, chopper bits cleared): EddyPro discards
    them all for CO2 and H2O."""
    def bad_diag(fields: list[str]) -> list[str]:
        fields[4] = "0"  # col_4 = diag_75
        return fields

    path = rewrite_ghg(V3, tmp_path / V3.name, data_line=bad_diag)
    out = tmp_path / "out.csv"
    code, (row,) = run_csv([path], out)
    assert code == 0 and row["FC"] == "-9999" and row["LE"] == "-9999" and float(row["H"]) != -9999
    reasons = {r["VARIABLE"]: r["REASON"] for r in reasons_of(out)}
    assert reasons["FC"].startswith("all co2 samples missing after screening (18000 of 18000 records flagged by")
    assert reasons["LE"].startswith("all h2o samples missing after screening (18000 of 18000 records flagged by")


def test_a_failing_period_still_gets_its_row_and_the_others_are_processed(tmp_path):
    # the first 15 minutes without vertical wind, the second complete: two periods of one file
    record = itertools.count()

    def no_w_at_first(fields: list[str]) -> list[str]:
        if next(record) < 9000:
            fields[18] = "-9999"  # col_18 = w
        return fields

    both = rewrite_ghg(V3, tmp_path / V3.name, data_line=no_w_at_first)
    outcome = reprocess.process_file(str(both), period_min=15)
    assert outcome.error is None and len(outcome.rows) == 2
    first, second = outcome.rows
    assert set(first.reasons) >= {"FC", "LE", "H", "TAU", "USTAR"}
    assert all("w" in why for why in first.reasons.values())
    assert all(math.isfinite(second.results[k]) for k in FLUXES) and not set(second.reasons) & set(FLUXES)
    assert second.reasons == {"FCH4": "ch4 column absent from the file"}  # (not written: no CH4 column)
    # an engine error in every period: every period still has its row, with the error as the reason
    outcome = reprocess.process_file(str(V3), period_min=15, options=Options(rotation="planar_fit"))
    assert outcome.error is None and len(outcome.rows) == 2
    for r in outcome.rows:
        assert r.results == {} and set(r.reasons) == set(reprocess.EXPLAINED)
        assert all(why.startswith("period failed: ") and "planar" in why for why in r.reasons.values())


def test_engine_reasons_take_precedence():
    results = {"FC": math.nan, "LE": 1.0, "reasons": {"FC": "the engine's own words"}}
    given = reprocess._engine_reasons(results)
    assert "reasons" not in results
    columns = {c: np.ones(10) for c in ("u", "v", "w", "ts", "co2", "h2o")}
    got = reprocess.missing_reasons(results, columns, None, given)
    assert got["FC"] == "the engine's own words" and "LE" not in got


# ------------------------------------------------------------------------------------------ station archive


def site_toml(tmp_path: Path, site_line: str) -> Path:
    path = tmp_path / "station.toml"
    path.write_text(f"""
[site]
id = "cfg"
latitude_deg = 17.2
longitude_deg = -88.5
{site_line}
[[instruments]]
name = "sonic"
driver = "csat3"
port = "/dev/ttyUSB0"
[mqtt]
[spool]
path = "{tmp_path / 'spool.sqlite'}"
""")
    return path


def test_site_time_zone_is_validated_on_load(tmp_path):
    from fluxedge.common.configschema import ConfigError
    from station import config as station_config

    cfg, _ = station_config.load(site_toml(tmp_path, ""))
    assert cfg.site.time_zone == "UTC"
    cfg, _ = station_config.load(site_toml(tmp_path, 'time_zone = "America/Belize"'))
    assert cfg.site.time_zone == "America/Belize"
    for zone, problem in (("Mars/Olympus_Mons", "unknown time zone 'Mars/Olympus_Mons'"),
                          ("Europe/Berlin", "'Etc/GMT-1'")):
        path = site_toml(tmp_path, f'time_zone = "{zone}"')
        with pytest.raises(ConfigError) as err:
            station_config.load(path)
        assert str(err.value).startswith(f"{path}: site.time_zone: ") and problem in str(err.value)


def test_station_archive_names_files_in_the_site_zone_and_reprocesses_to_local_standard_time(tmp_path):
    """A tower in Belize (UTC-6, no daylight saving): the period 2026-11-18 11:10 UTC is archived as
    ``2026-11-18T051000_tower-7.ghg`` with ``Timezone: America/Belize``, and ``flux process`` stamps it
    05:10, the live results bit for bit."""
    import dataclasses
    import zipfile

    from test_archive import START, TOWER, job_for, same, turbulence_block

    from station.processing.fluxjob import run_job

    tower = dataclasses.replace(TOWER, time_zone="America/Belize")
    outcome = run_job(turbulence_block(seconds=300, seed=5), job_for(tmp_path / "arc", tower))
    assert outcome.status == "ok"
    path = Path(outcome.archive_path)
    assert path.name == "2026-11-18T051000_tower-7.ghg" and path.parent.name == "11"
    with zipfile.ZipFile(path) as zf:
        text = zf.read(f"{path.stem}.data").decode("ascii")
    header = dict(line.split(":\t", 1) for line in text.splitlines()[:7])
    assert header["Timezone"] == "America/Belize" and header["Timestamp"] == "05:10:00"
    first = next(line for line in text.splitlines() if line.startswith("DATA\t")).split("\t")
    assert int(first[1]) == START  # Seconds stay UTC, Date/Time are the local clock
    assert (first[5], first[6][:8]) == ("2026-11-18", "05:10:00")
    (row,) = reprocess.process_file(str(path), options=Options()).rows
    assert all(same(outcome.results[k], row.results[k]) for k in outcome.results)
    code, (csv_row,) = run_csv([path], tmp_path / "out.csv")
    assert code == 0
    assert (csv_row["TIMESTAMP_START"], csv_row["TIMESTAMP_END"]) == ("202611180510", "202611180515")

"""The raw archive: LI-COR .ghg layout, atomic writes, retention by disk usage, and bit-identical
reprocessing (`fluxedge flux process` on the archived file == the live computation)."""

import configparser
import csv
import math
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import EC_DATA

from firmware_bridge.turbulence import TurbulenceModel, TurbulenceSpec, observe
from fluxedge.common import ameriflux
from station.acquisition.periodblock import ArchiveSettings, JobConfig, PeriodBlock, TowerInfo
from station.acquisition.resolution import at_instrument_resolution
from station.archive.writer import Archive, ArchiveError, DiskUsage, archive_files
from station.flux.pipeline import Options
from station.processing.fluxjob import run_job
from station.rawdata import read_raw
from station.reprocess.command import process_file

ROOT = Path(__file__).resolve().parents[1]
RATE_HZ = 20.0
START = 1_795_000_200  # 2026-11-18T11:10:00Z
TOWER = TowerInfo("tower-7", 1.35, 103.8, 5.0, 3.0, None, 20.0, "sonic", "csat3", 12.5, "irga", "li7500",
                  (0.15, 0.05, 0.0), software="fluxedge test")
REAL_GHG = EC_DATA / "degeb-hs50-li7200-20hz" / "raw" / "2016-12-11T203000_AIU-1359.ghg"


def turbulence_block(start=START, seconds=300, seed=3, gaps=True) -> PeriodBlock:
    """A period as the station aligns it: the emulator's turbulence model seen by a sonic and an open-path
    analyser, with dropped samples (NaN) and flagged analyser samples, diagnostics and a slot phase."""
    n = int(seconds * RATE_HZ)
    spec = TurbulenceSpec()
    obs = observe(TurbulenceModel(spec, seed=seed).draw(n), spec.pressure_kpa)
    cols = {k: np.asarray(obs[k], dtype=float).copy() for k in ("u", "v", "w", "t_sonic", "co2", "h2o", "pressure")}
    cols["t_air"] = np.asarray(obs["temperature"], dtype=float)
    cols["diag_sonic"] = np.zeros(n)
    cols["diag_gas"] = np.full(n, 255.0)
    cols["signal_strength"] = np.full(n, 100.0)
    if gaps:
        rng = np.random.default_rng(seed)
        dropped = rng.random(n) < 0.03
        for k in ("u", "v", "w", "t_sonic", "diag_sonic"):
            cols[k][dropped] = np.nan
        flagged = rng.random(n) < 0.01
        cols["co2"][flagged] = np.nan
        cols["h2o"][flagged] = np.nan
        cols["diag_gas"][flagged] = 240.0
    present = int(np.sum(np.isfinite(cols["w"]) & np.isfinite(cols["t_sonic"])))
    t = start + 0.0137 + np.arange(n) / RATE_HZ
    return PeriodBlock(start, start + seconds, RATE_HZ, t, cols, n, present)


def job_for(root, tower=TOWER, options=None) -> JobConfig:
    return JobConfig(tower, options or Options(), ArchiveSettings(str(root)), max_missing_pct=10.0)


def same(a: float, b: float) -> bool:
    """Bit for bit (NaN equals NaN)."""
    return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))


# ------------------------------------------------------------------------------------------ layout


def test_file_layout_copies_licor(tmp_path):
    block = turbulence_block()
    outcome = run_job(block, job_for(tmp_path))
    path = Path(outcome.archive_path)
    assert path == tmp_path / "raw" / "2026" / "11" / "2026-11-18T111000_tower-7.ghg"
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None
        assert sorted(zf.namelist()) == ["2026-11-18T111000_tower-7.data", "2026-11-18T111000_tower-7.metadata"]
        data = zf.read("2026-11-18T111000_tower-7.data").decode("ascii").splitlines()
        meta_text = zf.read("2026-11-18T111000_tower-7.metadata").decode("utf-8")
    with zipfile.ZipFile(REAL_GHG) as zf:
        real_data = zf.read(next(n for n in zf.namelist() if n.endswith(".data")))[:4000].decode("latin-1")
        real_meta = configparser.ConfigParser(interpolation=None)
        real_meta.read_string(zf.read(next(n for n in zf.namelist() if n.endswith(".metadata"))).decode("latin-1"))
    # the same header keys, in the same order, as LI-COR writes
    real_keys = [line.split(":")[0] for line in real_data.splitlines()[:7]]
    assert [line.split(":")[0] for line in data[:7]] == real_keys
    assert data[5] == "Timestamp:\t11:10:00" and data[6] == "Timezone:\tUTC"
    names = data[7].split("\t")
    assert names[:4] == ["DATAH", "Seconds", "Nanoseconds", "Sequence Number"]
    for col in ("Date", "Time", "CO2 (mmol/m^3)", "H2O (mmol/m^3)", "Total Pressure (kPa)", "Aux 1 - U (m/s)",
                "Aux 2 - V (m/s)", "Aux 3 - W (m/s)", "Aux 4 - Ts (C)", "Diagnostic Value", "Anemometer Diagnostic"):
        assert col in names
    rows = [line.split("\t") for line in data[8:]]
    assert len(rows) == block.expected and all(r[0] == "DATA" and len(r) == len(names) for r in rows)
    first = dict(zip(names, rows[0], strict=True))
    assert first["Date"] == "2026-11-18" and first["Time"] == "11:10:00:013"
    assert int(first["Seconds"]) == START and int(first["Nanoseconds"]) // 1_000_000 == 13
    # values round-trip exactly at the sonic's resolution (CSAT3: 5 decimals); missing samples carry
    # EddyPro's error label
    w = [float(r[names.index("Aux 3 - W (m/s)")]) for r in rows]
    kept = at_instrument_resolution(block.sanitized(), TOWER).columns["w"]
    assert all(same(a, b) for a, b in zip(np.where(np.array(w) == -9999, np.nan, w), kept, strict=True))
    assert np.nanmax(np.abs(kept - block.columns["w"])) <= 0.5e-5
    assert sum(r[names.index("Aux 3 - W (m/s)")] == "-9999" for r in rows) == block.expected - block.present

    meta = configparser.ConfigParser(interpolation=None)
    meta.read_string(meta_text)
    assert meta_text.startswith(";GHG_METADATA")
    for section in ("Project", "Site", "Station", "Timing", "Instruments", "FileDescription"):
        assert meta.has_section(section)
    # every key LI-COR's metadata has in the sections EddyPro reads (instrument and column keys by pattern)
    for section in ("Site", "Timing", "FileDescription"):
        missing = [k for k in real_meta[section] if not k.startswith("col_") and k not in meta[section]]
        assert not missing, (section, missing)
    site = meta["Site"]
    assert (float(site["altitude"]), float(site["latitude"]), float(site["longitude"])) == (5.0, 1.35, 103.8)
    assert float(site["canopy_height"]) == 3.0
    assert site["displacement_height"] == "" and site["roughness_length"] == ""  # unset: EddyPro derives them
    assert float(meta["Timing"]["acquisition_frequency"]) == 20.0 and float(meta["Timing"]["file_duration"]) == 5.0
    ins = meta["Instruments"]
    assert (ins["instr_1_manufacturer"], ins["instr_1_model"], float(ins["instr_1_height"])) == ("csi", "csat3_1", 20.0)
    assert float(ins["instr_1_north_offset"]) == 12.5
    assert ins["instr_2_model"] == "li7500_1"
    assert float(ins["instr_2_northward_separation"]) == 15.0  # cm, as EddyPro wants them
    assert float(ins["instr_2_eastward_separation"]) == 5.0
    fd = meta["FileDescription"]
    assert fd["separator"] == "tab" and fd["data_label"] == "DATA"
    assert int(fd["header_rows"]) == 8 == data.index(next(line for line in data if line.startswith("DATA\t")))
    described = {int(k.split("_")[1]) for k in fd if k.startswith("col_") and k.endswith("_variable")}
    assert described == set(range(1, len(names)))  # one col_N group per field after DATA
    var = {fd[f"col_{n}_variable"]: n for n in described}
    assert names[var["co2"]] == "CO2 (mmol/m^3)" and fd[f"col_{var['co2']}_measure_type"] == "molar_density"
    assert fd[f"col_{var['co2']}_unit_in"] == "mmol_m3" and fd[f"col_{var['ts']}_unit_in"] == "celsius"
    assert names[var["air_p"]] == "Total Pressure (kPa)" and fd[f"col_{var['air_p']}_unit_in"] == "kpa"
    assert names[var["diag_75"]] == "Diagnostic Value"

    # and the project's own reader takes it as it is
    raw = read_raw(path)
    assert raw.n_samples == block.expected and raw.rate_hz == 20.0 and raw.start.timestamp() == START
    assert raw.gas_types == {"co2": "molar_density", "h2o": "molar_density"}
    assert raw.metadata.sonic.model == "csat3_1" and raw.metadata.sonic.height_m == 20.0
    assert raw.notes == ()


def test_unplugged_analyser_leaves_no_empty_gas_columns(tmp_path):
    block = turbulence_block(gaps=False)
    for k in ("co2", "h2o", "pressure"):
        block.columns[k][:] = np.nan
    outcome = run_job(block, job_for(tmp_path))
    assert outcome.status == "ok" and math.isfinite(outcome.results["H"])
    raw = read_raw(outcome.archive_path)
    assert "co2" not in raw.columns and "pa" not in raw.columns and "ts" in raw.columns


def metadata_of(path) -> configparser.ConfigParser:
    path = Path(path)
    with zipfile.ZipFile(path) as zf:
        meta = configparser.ConfigParser(interpolation=None)
        meta.read_string(zf.read(f"{path.stem}.metadata").decode("utf-8"))
    return meta


def test_site_heights_are_left_empty_when_unset_and_written_when_set(tmp_path):
    block = turbulence_block(seconds=120, seed=8)
    unset = run_job(block, job_for(tmp_path / "unset"))
    site = metadata_of(unset.archive_path)["Site"]
    # EddyPro warns for a 0 every period; empty means "not set" (d = 0.67 h, z0 = 0.15 h)
    assert site["displacement_height"] == "" and site["roughness_length"] == ""
    assert read_raw(unset.archive_path).metadata.site.displacement_height_m is None
    tower = TowerInfo(*[getattr(TOWER, f) for f in ("station_id", "latitude_deg", "longitude_deg", "altitude_m",
                                                    "canopy_height_m")], 2.5,
                      *[getattr(TOWER, f) for f in ("measurement_height_m", "sonic_name", "sonic_driver",
                                                    "north_offset_deg", "gas_name", "gas_driver", "gas_separation_m")])
    given = run_job(block, job_for(tmp_path / "set", tower))
    assert float(metadata_of(given.archive_path)["Site"]["displacement_height"]) == 2.5
    assert given.results["ZL"] != unset.results["ZL"]  # the engine really uses it


def csat3_words(n: int, rng, flagged: np.ndarray) -> np.ndarray:
    """CSAT3 diagnostic words as the instrument sends them: a 0..63 counter in bits 5-0, range codes
    in bits 11-6 (nonzero on a good sample too) and, on ``flagged`` samples, warning flags 15-12."""
    counter = np.arange(n) % 64
    ranges = rng.integers(0, 4, (n, 3))
    words = (ranges[:, 0] << 10) | (ranges[:, 1] << 8) | (ranges[:, 2] << 6) | counter
    flags = np.where(flagged, rng.choice([0x1000, 0x4000, 0x5000, 0x8000], n), 0)
    return (words | flags).astype(float)


def test_anemometer_diagnostic_is_archived_as_the_diagnostic_eddypro_screens_by(tmp_path):
    """The sonic's word goes in as EddyPro's ``anemometer_diagnostic`` (not ``ignore``), reduced to
    what marks a bad sample (CSAT3: its warning flags; counter and range codes are no diagnostic),
    so EddyPro discards exactly the flagged records and keeps every other one."""
    rng = np.random.default_rng(4)
    plain = turbulence_block(seconds=600, seed=21, gaps=False)
    n = plain.expected
    flagged = rng.random(n) < 0.04
    cols = dict(plain.columns)
    cols["diag_sonic"] = csat3_words(n, rng, flagged)
    for k in ("u", "w", "t_sonic"):  # flagged records carry garbage, as a blocked sonic path does
        cols[k] = np.where(flagged, cols[k] + 9.0, cols[k])
    block = PeriodBlock(plain.start_s, plain.end_s, plain.rate_hz, plain.time_s, cols, n, n)
    options = Options()
    outcome = run_job(block, job_for(tmp_path / "a", options=options))
    assert outcome.status == "ok"
    path = Path(outcome.archive_path)
    described = metadata_of(path)["FileDescription"]
    names = {described[f"col_{k.split('_')[1]}_variable"] for k in described if k.endswith("_variable")}
    assert "anemometer_diagnostic" in names
    raw = read_raw(path)
    expected_words = np.where(flagged, cols["diag_sonic"].astype(np.int64) & 0xF000, 0)
    assert np.array_equal(raw["diag_sonic"], expected_words)  # good samples read 0 despite counter/ranges
    # EddyPro's screen dropped exactly the flagged records: the fluxes are those of the clean block
    screened = {k: (np.where(flagged, np.nan, v) if k in ("u", "v", "w", "t_sonic") else v) for k, v in cols.items()}
    clean = run_job(PeriodBlock(block.start_s, block.end_s, block.rate_hz, block.time_s, screened, n,
                                int((~flagged).sum())), job_for(tmp_path / "b", options=options))
    for key in ("H", "LE", "FC", "USTAR", "TAU"):
        assert math.isfinite(outcome.results[key]) and outcome.results[key] == pytest.approx(clean.results[key],
                                                                                              rel=1e-9), key
    # and `fluxedge flux process` on the archive gives the live results bit for bit
    assert_identical(outcome.results, path, tmp_path, options)


# ------------------------------------------------------------------------------------------ atomicity


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    block = turbulence_block(seconds=60)
    archive = Archive(ArchiveSettings(str(tmp_path)))
    target = archive.path_for(block, TOWER)

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(ArchiveError) as err:
        archive.write(block, TOWER)
    assert "No space left on device" in str(err.value) and "\n" not in str(err.value)
    assert str(target) in str(err.value)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []  # no temporary file left either
    # the period is still processed when its archive cannot be written
    outcome = run_job(block, job_for(tmp_path))
    assert outcome.status == "ok" and outcome.archive_path is None and math.isfinite(outcome.results["FC"])
    monkeypatch.undo()
    # a later write of the same period replaces nothing half-written: the file appears whole
    assert archive.write(block, TOWER) == target
    with zipfile.ZipFile(target) as zf:
        assert zf.testzip() is None


def test_leftover_temp_file_of_a_killed_writer_is_ignored_and_replaced(tmp_path):
    block = turbulence_block(seconds=60)
    archive = Archive(ArchiveSettings(str(tmp_path)))
    target = archive.path_for(block, TOWER)
    target.parent.mkdir(parents=True)
    stale = target.parent / f".{target.name}.abc123.tmp"
    stale.write_bytes(b"PK\x03\x04 half a zip")
    assert archive_files(tmp_path) == []
    archive.write(block, TOWER)
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]


# ------------------------------------------------------------------------------------------ retention


class FakeDisk:
    """A file system of ``total`` bytes whose use is a fixed base plus the archive files' sizes."""

    def __init__(self, root, total, base):
        self.root, self.total, self.base = Path(root), total, base

    def __call__(self, _path) -> DiskUsage:
        used = self.base + sum(p.stat().st_size for p in (self.root / "raw").rglob("*.ghg"))
        return DiskUsage(self.total, used, self.total - used)


def test_retention_deletes_oldest_and_keeps_newest(tmp_path, caplog):
    blocks = [turbulence_block(start=START + k * 60, seconds=60, seed=k) for k in range(6)]
    probe = Archive(ArchiveSettings(str(tmp_path / "probe")))
    size = probe.write(blocks[0], TOWER).stat().st_size
    # room for about three files above the 90 % line
    disk = FakeDisk(tmp_path, total=100 * size, base=87 * size)
    archive = Archive(ArchiveSettings(str(tmp_path), max_disk_used_pct=90.0), usage=disk)
    written = [archive.write(b, TOWER) for b in blocks]
    kept = archive_files(tmp_path)
    assert kept == written[-len(kept):]  # the newest, in order
    assert 2 <= len(kept) <= 3
    assert not written[0].exists() and written[-1].exists()
    assert any("archive_pruned" in r.getMessage() and written[0].name in r.getMessage() for r in caplog.records)
    # min_free_mb works the same way; even if nothing would be enough, the file just written stays
    greedy = Archive(ArchiveSettings(str(tmp_path), max_disk_used_pct=100.0, min_free_mb=1e9), usage=disk)
    newest = greedy.write(turbulence_block(start=START + 3600, seconds=60), TOWER)
    assert archive_files(tmp_path) == [newest]
    assert not (tmp_path / "raw" / "2026" / "11" / written[0].name).exists()


# ------------------------------------------------------------------------------------------ bit-identical


OPTION_FLAGS = ["--despiking", "vickers_mahrt", "--rotation", "double", "--detrending", "block", "--time-constant",
                "250", "--lag", "covariance_max_default", "--spectral", "moncrieff", "--qc", "mauder_foken_2004",
                "--footprint", "kljun_2004", "--self-heating", "none"]


def cli_rows(path, out, *extra):
    proc = subprocess.run([sys.executable, "-m", "fluxedge.cli", "flux", "process", str(path), "-o", str(out),
                           *OPTION_FLAGS, "--digits", "full", *extra], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    with open(out, newline="") as fh:
        return list(csv.DictReader(fh))


def assert_identical(live: dict, path: Path, tmp_path: Path, options: Options, cli_flags=()):
    # the engine as `fluxedge flux process` runs it on the file: every result, bit for bit
    outcome = process_file(str(path), options=options)
    assert outcome.error is None
    (row,) = outcome.rows
    assert set(row.results) == set(live)
    differ = {k: (live[k], row.results[k]) for k in live if not same(live[k], row.results[k])}
    assert not differ
    for key in ("FC", "LE", "H", "TAU", "USTAR", "CO2_LAG", "H2O_LAG", "FC_SSITC_TEST", "FETCH_MAX", "ZL"):
        assert math.isfinite(live[key]), key
    # and the real command line at full precision: every column it writes is the live value exactly
    (csv_row,) = cli_rows(path, tmp_path / "out.csv", *cli_flags)
    compared = [c for c in csv_row if c in ameriflux.COLUMNS]
    assert len(compared) >= 25
    for column in compared:
        assert csv_row[column] == ameriflux.cell(column, live.get(column), None), column
        if column not in ameriflux.INTEGER_COLUMNS and csv_row[column] != "-9999":
            assert same(float(csv_row[column]), live[column]), column
    return csv_row


def test_flux_process_on_archive_is_bit_identical_to_live(tmp_path):
    options = Options()
    outcome = run_job(turbulence_block(seconds=600, seed=11), job_for(tmp_path, options=options))
    assert outcome.status == "ok"
    assert 0.0 < outcome.results["MISSING_PCT"] < 10.0  # the gaps really are in the period
    assert_identical(outcome.results, Path(outcome.archive_path), tmp_path, options)


def test_met_air_temperature_is_archived_as_air_t_and_used_as_ambient_ta(tmp_path):
    """The station's met Ta (channel ``ta_met``) goes into the file as EddyPro's ``air_t`` and is the
    engine's ambient Ta, live and from the archive alike."""
    options = Options()
    plain = turbulence_block(seconds=600, seed=12)
    sonic_ta = run_job(plain, job_for(tmp_path / "a", options=options)).results["TA"]
    block = PeriodBlock(plain.start_s, plain.end_s, plain.rate_hz, plain.time_s,
                        {**plain.columns, "ta_met": np.full(plain.expected, sonic_ta + 3.0)}, plain.expected,
                        plain.present)
    outcome = run_job(block, job_for(tmp_path / "b", options=options))
    assert outcome.status == "ok"
    assert outcome.results["TA"] == pytest.approx(sonic_ta + 3.0, abs=5e-6)  # kept at 7 significant digits
    path = Path(outcome.archive_path)
    with zipfile.ZipFile(path) as zf:
        meta = configparser.ConfigParser(interpolation=None)
        meta.read_string(zf.read(f"{path.stem}.metadata").decode("utf-8"))
    columns = meta["FileDescription"]
    (index,) = [k.split("_")[1] for k, v in columns.items() if k.endswith("_variable") and v == "air_t"]
    assert columns[f"col_{index}_unit_in"] == "celsius"
    assert_identical(outcome.results, path, tmp_path, options)


def test_real_period_through_archive_is_bit_identical(tmp_path):
    """A real 15-min CSAT3 + open-path period (fluxpart, shared/data/ec) as the station would align it."""
    data = EC_DATA / "fluxpart-csat3-openpath-20hz"
    raw = read_raw(data / "raw" / "TOA5_6843.ts_Above_2012_06_07_1245.dat", data / "eddypro" / "fluxpart.metadata")
    n = raw.n_samples
    start = int(raw.start.timestamp())
    cols = {"u": raw["u"], "v": raw["v"], "w": raw["w"], "t_sonic": raw["ts"] - 273.15, "co2": raw["co2"],
            "h2o": raw["h2o"], "pressure": raw["pa"] / 1000.0}
    present = int(np.sum(np.isfinite(cols["w"]) & np.isfinite(cols["t_sonic"])))
    block = PeriodBlock(start, start + round(n / raw.rate_hz), raw.rate_hz, start + np.arange(n) / raw.rate_hz, cols,
                        n, present)
    tower = TowerInfo("fluxpart", 36.0, -120.0, 0.0, 4.42, None, 7.11, "csat", "csat3", 0.0, "irga", "li7500",
                      (0.0, 0.0, 0.0))
    options = Options()
    outcome = run_job(block, job_for(tmp_path, tower, options))
    assert outcome.status == "ok"
    assert 150 < outcome.results["H"] < 200 and 350 < outcome.results["LE"] < 500  # EddyPro: 173.0 and 433.6
    assert_identical(outcome.results, Path(outcome.archive_path), tmp_path, options)


# ------------------------------------------------------------------------------------------ config


def station_toml(tmp_path, archive: str) -> Path:
    path = tmp_path / "station.toml"
    path.write_text(f"""
[site]
id = "cfg"
latitude_deg = 1.0
longitude_deg = 2.0
[[instruments]]
name = "sonic"
driver = "csat3"
port = "/dev/ttyUSB0"
[mqtt]
[spool]
path = "{tmp_path / 'spool.sqlite'}"
{archive}
""")
    return path


@pytest.mark.parametrize(("table", "key", "problem"), [
    ("[archive]\nmax_disk_used_pct = 150", "archive.max_disk_used_pct", "between 1 and 100"),
    ("[archive]\nmin_free_mb = -1", "archive.min_free_mb", "negative"),
    ('[archive]\ndirectory = "/nonexistent/deep/dir"', "archive.directory", "nor its parent directory exists"),
    ("[archive]\nretention_days = 3", "archive.retention_days", "unknown key"),
])
def test_archive_config_errors_name_file_and_key(tmp_path, table, key, problem):
    from fluxedge.common.configschema import ConfigError
    from station import config as station_config

    path = station_toml(tmp_path, table)
    with pytest.raises(ConfigError) as err:
        station_config.load(path)
    message = str(err.value)
    assert message.startswith(f"{path}: {key}: ") and problem in message and "\n" not in message


def test_archive_config_defaults_next_to_the_spool(tmp_path):
    from station import config as station_config

    cfg, _ = station_config.load(station_toml(tmp_path, ""))
    assert cfg.archive.enabled and cfg.archive.root(cfg.spool.path) == tmp_path / "archive"
    table = f'[archive]\ndirectory = "{tmp_path / "arc"}"\nenabled = false'
    cfg, _ = station_config.load(station_toml(tmp_path, table))
    assert not cfg.archive.enabled and cfg.archive.root(cfg.spool.path) == tmp_path / "arc"

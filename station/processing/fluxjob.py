"""One closed period in the flux worker: archive the raw block, then compute its fluxes.

The live computation goes through exactly what ``fluxedge flux process`` does with the archived
file: the block's metadata text is parsed by :mod:`station.rawdata` (the same :class:`Metadata`
the reader gets from the ``.ghg``), each column is converted with that metadata's conversions (the
reader's arithmetic on the same float64 values, since the file holds their ``repr``), the engine
setup comes from :func:`station.reprocess.enginesetup.setup_for` and the results from
:func:`station.flux.pipeline.process`. The archive therefore reprocesses bit for bit to the live
results with the same processing options.

Both start from the block at its instruments' resolution
(:func:`station.acquisition.resolution.at_instrument_resolution`): a value derived in float64 (a
CSAT3's counts times its scale) is archived as ``0.78675``, not ``0.7867500000000001``, and the
live fluxes are computed from exactly those values.

Every gas analyser of the tower is in the block and the file (:func:`station.archive.ghgformat.layout`), so
the engine gets co2, h2o and ch4 each with its own analyser's geometry. CH4 from an LI-7700 is an
open-path density with the WPL terms and the LI-7700 spectroscopic corrections (McDermitt et al.
2011), as EddyPro computes them.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from fluxedge.common.logs import event
from station.acquisition.periodblock import JobConfig, PeriodBlock, PeriodOutcome, TowerInfo
from station.acquisition.resolution import at_instrument_resolution
from station.archive.ghgformat import ColumnSpec, column_values, layout, metadata_text
from station.archive.writer import Archive, ArchiveError, archive_path, file_stem
from station.flux.pipeline import Options, process
from station.rawdata import CANONICAL_NAMES, RawPeriod, parse_metadata
from station.rawdata.units import GASES
from station.reprocess.enginesetup import ENGINE_VARIABLES, setup_for

log = logging.getLogger("station.flux")


def live_rawperiod(block: PeriodBlock, tower: TowerInfo, specs: list[ColumnSpec] | None = None) -> RawPeriod:
    """The :class:`RawPeriod` the ``.ghg`` reader would return for this block's archive file,
    restricted to the columns the engine reads, built in memory."""
    specs = specs if specs is not None else layout(tower, block)
    stem = file_stem(block.start_s, tower.station_id, tower.time_zone)
    md = parse_metadata(metadata_text(tower, block, specs, stem), f"{stem}.metadata")
    columns: dict[str, np.ndarray] = {}
    units: dict[str, str] = {}
    gas_types: dict[str, str] = {}
    for col in md.read_columns:
        spec = specs[col.index - 1]
        name = CANONICAL_NAMES.get(col.variable, col.variable)
        if col.variable in GASES:
            name = col.variable
        if name not in ENGINE_VARIABLES:
            continue
        values = np.array(column_values(block, spec, tower), dtype=np.float64)  # a copy, as parsed from text
        if col.conversion != "none":
            values = col.linear(values)
        if col.to_canonical is not None:
            col.to_canonical.apply(values)
        columns[name] = values
        units[name] = col.to_canonical.unit if col.to_canonical is not None else col.unit
        if col.variable in GASES:
            gas_types[name] = col.measure_type or "molar_density"
    n = len(block.time_s)
    start = datetime.fromtimestamp(block.start_s, UTC)
    end = datetime.fromtimestamp(block.start_s + n / md.acquisition_frequency_hz, UTC)
    return RawPeriod(source=Path(f"{stem}.ghg"), start=start, end=end, rate_hz=md.acquisition_frequency_hz,
                     n_samples=n, columns=columns, units=units, gas_types=gas_types, metadata=md,
                     header={"Timezone": tower.time_zone})


def engine_results(raw: RawPeriod, options: Options) -> dict[str, float]:
    """The engine on one whole-file period, called exactly as ``fluxedge flux process`` calls it."""
    n = raw.n_samples
    t0 = raw.start.timestamp()
    columns = {c: np.asarray(raw.columns[c][0:n], dtype=float) for c in ENGINE_VARIABLES if c in raw.columns}
    setup = setup_for(raw, n / raw.rate_hz, t0 + (0 + n) / 2 / raw.rate_hz)
    return process(columns, setup, options)


def compute(block: PeriodBlock, tower: TowerInfo, options: Options) -> dict[str, float]:
    """Every result of the live computation of ``block`` (the pipeline's names), from the block at
    its instruments' resolution as :func:`run_job` archives and computes it."""
    block = at_instrument_resolution(block.sanitized(), tower)
    return engine_results(live_rawperiod(block, tower), options)


def _has_samples(block: PeriodBlock) -> bool:
    return any(bool(np.isfinite(v).any()) for v in block.columns.values())


def _has_sonic(block: PeriodBlock) -> bool:
    """Any slot with the sonic's w and Ts (what ``present`` counts)."""
    w, ts = block.columns.get("w"), block.columns.get("t_sonic")
    return block.present > 0 and w is not None and ts is not None and bool((np.isfinite(w) & np.isfinite(ts)).any())


def archive_block(block: PeriodBlock, job: JobConfig) -> str | None:
    """Write the block's archive file if archiving is on and there is anything to keep; None otherwise
    (a write failure is logged, never raised: the period is still processed)."""
    if job.archive is None or not _has_samples(block):
        return None
    try:
        return str(Archive(job.archive).write(block, job.tower))
    except ArchiveError as exc:
        event(log, "archive_failed", logging.ERROR, error=str(exc))
        return None


def expected_archive(block: PeriodBlock, job: JobConfig) -> Path | None:
    if job.archive is None:
        return None
    return archive_path(job.archive.root, block.start_s, job.tower.station_id, job.tower.time_zone)


def run_job(block: PeriodBlock, job: JobConfig, *, do_compute: bool = True) -> PeriodOutcome:
    """Archive and process one period; never raises for bad data (the outcome says what happened)."""
    started = time.monotonic()
    block = at_instrument_resolution(block.sanitized(), job.tower)
    path = archive_block(block, job)
    common = {"start_s": block.start_s, "end_s": block.end_s, "archive_path": path, "worker_pid": os.getpid(),
              "present": block.present, "expected": block.expected}
    if not do_compute:
        return PeriodOutcome(status="failed", error="archived only", **common)
    if not _has_sonic(block):
        return PeriodOutcome(status="skipped", error=f"no sonic samples in the period (sonic "
                                                     f"{job.tower.sonic_name!r} silent or disconnected)", **common)
    if block.missing_pct > job.max_missing_pct:
        return PeriodOutcome(status="skipped", error=f"{block.missing_pct:.1f} % of samples missing "
                                                     f"(limit {job.max_missing_pct} %)", **common)
    try:
        results = engine_results(live_rawperiod(block, job.tower), job.options)
    except (ValueError, FloatingPointError, np.linalg.LinAlgError) as exc:
        return PeriodOutcome(status="failed", error=f"flux engine: {exc}", compute_s=time.monotonic() - started,
                             **common)
    return PeriodOutcome(status="ok", results={k: float(v) for k, v in results.items()},
                         compute_s=time.monotonic() - started, **common)

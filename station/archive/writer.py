"""The raw archive: one LI-COR ``.ghg`` file per averaging period, kept until the disk fills.

Files are ``<root>/raw/YYYY/MM/YYYY-MM-DDTHHMMSS_<station>.ghg`` (period START in the site's clock:
``[site] time_zone``, UTC by default), zips holding ``<stem>.data`` and ``<stem>.metadata`` as LI-COR
SmartFlux writes them (see :mod:`station.archive.ghgformat`), so EddyPro and ``fluxedge flux process`` read
them as they are: SmartFlux names a file by the logger's local clock and writes its zone as the
``Timezone:`` header line, which the readers use to place the file in UTC.

A file appears whole or not at all: it is written to a hidden temporary file in the same directory,
fsynced, renamed over its final name and the directory fsynced. After each write the oldest archive
files are deleted while the file system is fuller than ``max_disk_used_pct`` or has less than
``min_free_mb`` MiB free; the file just written is never deleted.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from fluxedge.common.logs import event
from fluxedge.common.sitetime import local_clock
from station.acquisition.periodblock import ArchiveSettings, PeriodBlock, TowerInfo
from station.archive.ghgformat import data_text, layout, metadata_text

log = logging.getLogger("station.archive")
SUFFIX = ".ghg"


class DiskUsage(NamedTuple):
    total: int
    used: int
    free: int


class ArchiveError(Exception):
    """An archive file could not be written (the message names the file and the cause)."""


def file_stem(start_s: int, station_id: str, time_zone: str = "UTC") -> str:
    """LI-COR's name of a period's file: ``2016-12-11T203000_AIU-1359`` (period start in the local
    clock of ``time_zone``, as SmartFlux names its files)."""
    return f"{local_clock(start_s, time_zone):%Y-%m-%dT%H%M%S}_{station_id}"


def archive_path(root: str | Path, start_s: int, station_id: str, time_zone: str = "UTC") -> Path:
    month = f"{local_clock(start_s, time_zone):%Y/%m}"
    return Path(root) / "raw" / month / f"{file_stem(start_s, station_id, time_zone)}{SUFFIX}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, members: list[tuple[str, bytes]], date_time: tuple[int, ...]) -> None:
    """Write a zip of ``members`` to ``path`` atomically (temp file, fsync, rename, fsync dir)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a writer killed mid-way
        stale.unlink(missing_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
                for name, payload in members:
                    info = zipfile.ZipInfo(name, date_time=date_time[:6])
                    info.compress_type = zipfile.ZIP_DEFLATED
                    info.external_attr = 0o644 << 16
                    zf.writestr(info, payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def archive_files(root: str | Path) -> list[Path]:
    """Every finished archive file under ``root``, oldest first (names sort by period start)."""
    raw = Path(root) / "raw"
    if not raw.is_dir():
        return []
    files = [p for p in raw.glob(f"*/*/*{SUFFIX}") if not p.name.startswith(".")]
    return sorted(files, key=lambda p: (p.name.split("_", 1)[0], str(p)))


def _disk_usage(path: Path) -> DiskUsage:
    u = shutil.disk_usage(path)
    return DiskUsage(u.total, u.used, u.free)


class Archive:
    """Writes period files under ``settings.root`` and enforces the disk-usage retention."""

    def __init__(self, settings: ArchiveSettings, usage: Callable[[Path], DiskUsage] = _disk_usage) -> None:
        self.settings = settings
        self.root = Path(settings.root)
        self._usage = usage

    def path_for(self, block: PeriodBlock, tower: TowerInfo) -> Path:
        return archive_path(self.root, block.start_s, tower.station_id, tower.time_zone)

    def write(self, block: PeriodBlock, tower: TowerInfo) -> Path:
        """Archive one period; returns the file. Raises :class:`ArchiveError` (one line) on failure,
        leaving no partial file behind."""
        path = self.path_for(block, tower)
        stem = path.name[: -len(SUFFIX)]
        specs = layout(tower, block)
        try:
            members = [(f"{stem}.data", data_text(tower, block, specs)),
                       (f"{stem}.metadata", metadata_text(tower, block, specs, stem).encode("utf-8"))]
            write_atomic(path, members, local_clock(block.start_s, tower.time_zone).timetuple()[:6])
        except OSError as exc:
            raise ArchiveError(f"{path}: cannot write the archive file: {exc.strerror or exc}") from None
        event(log, "archive_written", logging.DEBUG, file=path.name, bytes=path.stat().st_size, samples=block.present)
        self.prune(keep=path)
        return path

    def over_limit(self) -> bool:
        u = self._usage(self.root)
        used_pct = 100.0 * u.used / u.total if u.total else 0.0
        return used_pct > self.settings.max_disk_used_pct or u.free < self.settings.min_free_mb * 2**20

    def prune(self, keep: Path | None = None) -> list[Path]:
        """Delete the oldest archive files while the disk is over the limit; never ``keep``."""
        removed: list[Path] = []
        if not self.over_limit():
            return removed
        for old in archive_files(self.root):
            if keep is not None and old == keep:
                continue
            try:
                size = old.stat().st_size
                old.unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:
                event(log, "archive_prune_failed", logging.WARNING, file=str(old), error=exc.strerror or str(exc))
                continue
            removed.append(old)
            u = self._usage(self.root)
            event(log, "archive_pruned", logging.WARNING, file=old.name, bytes=size,
                  disk_used_pct=round(100.0 * u.used / u.total, 1) if u.total else 0.0,
                  free_mb=round(u.free / 2**20, 1))
            with_parent = old.parent
            for d in (with_parent, with_parent.parent):
                try:
                    d.rmdir()  # only when empty
                except OSError:
                    break
            if not self.over_limit():
                break
        return removed

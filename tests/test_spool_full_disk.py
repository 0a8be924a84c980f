"""The spool on a really full file system (a small tmpfs mounted for the test), its transactions and
its connections: the drop policy must still work when the disk is full, a drop must never count a
row another thread acknowledged meanwhile, and close() must close every thread's connection."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from station.outbox.spool import Spool, SpoolFullError

PAYLOAD = 3000


@contextlib.contextmanager
def small_filesystem(size: str):
    """A tmpfs of ``size`` (e.g. "8m") mounted on a fresh directory; unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mnt = Path(tempfile.mkdtemp(prefix="fluxedge-fs-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
        if os.path.ismount(mnt):
            subprocess.run(["umount", "-l", str(mnt)], check=False)
        mnt.rmdir()


def fill_up(path: Path) -> Path:
    """Fill the file system holding ``path`` until the kernel says ENOSPC (another program's file)."""
    filler = path / "filler.bin"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    assert os.statvfs(path).f_bavail == 0
    return filler


def kinds(spool: Spool) -> dict[str, int]:
    out: dict[str, int] = {}
    for m in spool.oldest(100_000):
        out[m.kind] = out.get(m.kind, 0) + 1
    return out


def test_full_disk_drops_diagnostics_and_keeps_every_flux(tmp_path):
    with small_filesystem("8m") as fs:
        spool = Spool(fs / "spool.sqlite", max_bytes=1 << 40)  # the size bound never applies here
        diag_ids = []
        for i in range(300):
            diag_ids.append(spool.put("diag", "t/diag", b"D" * PAYLOAD))
            if i % 10 == 0:
                spool.put("flux", "t/flux", b"F" * PAYLOAD)
        filler = fill_up(fs)  # e.g. the raw archive or a log filled the disk
        # every flux period still gets spooled: diagnostics make room, oldest first
        for i in range(250):
            spool.put("flux", "t/flux", f"{i:04d}".encode() + b"G" * PAYLOAD)
        dropped = spool.dropped_by_kind()
        assert set(dropped) == {"diag"} and 0 < dropped["diag"] < 300
        assert kinds(spool)["flux"] == 280
        left_diag = [m.id for m in spool.oldest(100_000) if m.kind == "diag"]
        assert left_diag == diag_ids[dropped["diag"]:]  # the oldest diagnostics went
        assert (fs / "spool.sqlite.reserve").stat().st_size == 2 * 2**20  # the reserve is back for next time
        # a diagnostic on a full disk pushes out an older diagnostic, never a flux
        spool.put("diag", "t/diag", b"d" * PAYLOAD)
        assert "flux" not in spool.dropped_by_kind()
        # acknowledged rows can still be deleted with the disk full (WAL needs room for a delete too)
        flux_ids = [m.id for m in spool.oldest(100_000) if m.kind == "flux"][:20]
        assert spool.delete(flux_ids) == 20
        assert spool.integrity_ok()
        spool.close()
        filler.unlink()
        again = Spool(fs / "spool.sqlite", max_bytes=1 << 40)
        assert kinds(again)["flux"] == 260 and again.dropped_by_kind() == spool.dropped_by_kind()
        again.close()


def test_full_disk_with_nothing_lower_to_drop_is_a_one_line_error_not_a_crash(tmp_path):
    with small_filesystem("8m") as fs:
        spool = Spool(fs / "spool.sqlite", max_bytes=1 << 40)
        for _ in range(50):
            spool.put("flux", "t/flux", b"F" * PAYLOAD)
        fill_up(fs)
        # diagnostics may not push out fluxes: each is stored in place of older diagnostics, or
        # refused with a one-line SpoolFullError (the station logs it and carries on)
        refused = []
        for _ in range(300):
            try:
                spool.put("diag", "t/diag", b"D" * PAYLOAD)
            except SpoolFullError as exc:
                refused.append(str(exc))
        assert all("\n" not in r and str(fs / "spool.sqlite") in r for r in refused)
        assert kinds(spool)["flux"] == 50 and "flux" not in spool.dropped_by_kind()
        # a flux still gets in, at the cost of the oldest flux (fluxes and alarms go last)
        spool.put("flux", "t/flux", b"new")
        assert spool.oldest(100_000)[-1].payload == b"new"
        assert spool.integrity_ok()
        spool.close()


def test_a_row_acknowledged_while_a_drop_runs_is_never_counted_as_dropped(tmp_path):
    spool = Spool(tmp_path / "spool.sqlite", max_bytes=11_000)
    diag_ids = [spool.put("diag", "t/diag", b"D" * 1000) for _ in range(10)]
    delivered = []

    def publisher_acknowledges_oldest():  # the publisher thread: PUBACK for the oldest diagnostic
        delivered.append(spool.delete([diag_ids[0]]))

    threads = []
    picked = []

    def on_statement(sql: str) -> None:
        # the statement right after the drop picked its victims: the PUBACK arrives now
        if picked and not threads:
            t = threading.Thread(target=publisher_acknowledges_oldest)
            threads.append(t)
            t.start()
            time.sleep(0.5)  # long enough for an unsynchronised delete to land first
        if sql.lstrip().startswith("SELECT id, kind, priority FROM outbox"):
            picked.append(sql)

    spool._db().set_trace_callback(on_statement)
    spool.put("flux", "t/flux", b"F" * 1000)  # over the bound: the diagnostics are dropped
    spool._db().set_trace_callback(None)
    threads[0].join(30)
    dropped = spool.dropped_by_kind().get("diag", 0)
    assert spool.depth() == 1 and kinds(spool) == {"flux": 1}
    # every diagnostic is either delivered or dropped, never both
    assert dropped + delivered[0] == 10, (dropped, delivered)
    assert spool.size_bytes() == 1000 + len("t/flux") + 64


def open_files(path: Path) -> list[str]:
    out = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(str(path)):
                out.append(target)
    return out


def test_close_closes_every_threads_connection(tmp_path):
    spool = Spool(tmp_path / "spool.sqlite")
    barrier = threading.Barrier(4)

    def worker(n):
        spool.put("diag", "t/diag", f"from thread {n}".encode())  # opens this thread's own connection
        barrier.wait()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    barrier.wait()
    for t in threads:
        t.join()
    spool.put("diag", "t/diag", b"main")
    assert open_files(tmp_path)  # the connections are open
    spool.close()
    assert open_files(tmp_path) == []
    # and a spool used after close opens a fresh connection
    assert spool.depth() == 4
    spool.close()

"""The on-disk outbox: order, crash safety (a real SIGKILL of a writing process), the size bound
with its drop policy and per-kind counters, and the cost of a put."""

import os
import signal
import subprocess
import sys
import time

import pytest

from station.outbox.spool import PRIORITY, Spool, SpoolError

WRITER = r"""
import sys
from station.outbox.spool import Spool
spool = Spool(sys.argv[1], max_bytes=1 << 40)
n = 0
while True:
    row = spool.put("flux", f"t/{n}", (f"payload-{n}-" * 50).encode())
    sys.stdout.write(f"{n} {row}\n")
    sys.stdout.flush()
    n += 1
"""


def payload(n):
    return (f"payload-{n}-" * 50).encode()


def test_oldest_first_and_delete_only_what_was_acked(tmp_path):
    spool = Spool(tmp_path / "s.sqlite")
    kinds = ["diag", "flux", "met", "alarm", "flux"]
    ids = [spool.put(k, f"t/{i}", f"p{i}".encode()) for i, k in enumerate(kinds)]
    assert ids == sorted(ids)
    assert [m.payload for m in spool.oldest(3)] == [b"p0", b"p1", b"p2"]  # by arrival, not by priority
    spool.delete([ids[1]])
    assert [m.kind for m in spool.oldest(10)] == ["diag", "met", "alarm", "flux"]
    assert spool.depth() == 4 and 0 <= spool.oldest_age_s() < 5


def test_kill_9_while_writing_loses_no_returned_row(tmp_path):
    path = tmp_path / "s.sqlite"
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, env=env)
    confirmed = {}
    deadline = time.monotonic() + 60
    while len(confirmed) < 300 and time.monotonic() < deadline:
        line = child.stdout.readline()
        assert line, "writer died"
        n, row = map(int, line.split())
        confirmed[row] = n
    os.kill(child.pid, signal.SIGKILL)  # in the middle of its next put
    rest = child.stdout.read().split(b"\n")
    child.wait()
    assert child.returncode == -signal.SIGKILL
    for line in rest:  # put() returned for these too before the kill
        if line.strip():
            n, row = map(int, line.split())
            confirmed[row] = n
    spool = Spool(path)
    assert spool.integrity_ok()
    stored = {m.id: m for m in spool.oldest(100_000)}
    for row, n in confirmed.items():
        assert stored[row].payload == payload(n) and stored[row].topic == f"t/{n}"
    assert len(stored) - len(confirmed) in (0, 1)  # at most the row committed as the kill landed
    assert list(stored) == sorted(stored)
    spool.put("flux", "t/after", b"x")  # and it is writable again
    assert spool.depth() == len(stored) + 1


def test_size_bound_drops_diagnostics_then_met_never_fluxes_or_alarms_first(tmp_path):
    spool = Spool(tmp_path / "s.sqlite", max_bytes=600_000)
    put = {"flux": 0, "alarm": 0, "met": 0, "diag": 0}
    for i in range(60):
        for kind in ("flux", "alarm", "met", "diag"):
            spool.put(kind, f"t/{kind}", kind[0].encode() * 2000 + str(i).encode())
            put[kind] += 1
    for _ in range(200):  # keep writing diagnostics: they push out older diagnostics, then met
        spool.put("diag", "t/diag", b"D" * 2000)
        put["diag"] += 1
    left = {k: 0 for k in put}
    for m in spool.oldest(100_000):
        left[m.kind] += 1
    dropped = spool.dropped_by_kind()
    assert spool.size_bytes() <= 600_000
    assert left["flux"] == 60 and left["alarm"] == 60 and "flux" not in dropped and "alarm" not in dropped
    assert dropped["diag"] > 0
    for kind in put:
        assert left[kind] + dropped.get(kind, 0) == put[kind], kind
    # the oldest of a kind go first
    diag_left = [m for m in spool.oldest(100_000) if m.kind == "diag"]
    assert all(m.payload == b"D" * 2000 for m in diag_left)
    spool.close()
    again = Spool(tmp_path / "s.sqlite", max_bytes=600_000)
    assert again.dropped_by_kind() == dropped and again.dropped() == sum(dropped.values())


def test_met_goes_before_fluxes_when_no_diagnostics_remain(tmp_path):
    spool = Spool(tmp_path / "s.sqlite", max_bytes=150_000)
    for _ in range(40):
        spool.put("flux", "t/flux", b"F" * 2000)
        spool.put("met", "t/met", b"M" * 2000)
    dropped = spool.dropped_by_kind()
    assert set(dropped) == {"met"} and PRIORITY["met"] < PRIORITY["flux"]
    assert sum(m.kind == "flux" for m in spool.oldest(1000)) == 40


def test_full_spool_of_fluxes_drops_the_oldest_flux(tmp_path):
    spool = Spool(tmp_path / "s.sqlite", max_bytes=200_000)
    for i in range(200):
        spool.put("flux", "t/flux", str(i).encode() + b"F" * 2000)
    kept = spool.oldest(1000)
    assert spool.dropped_by_kind()["flux"] == 200 - len(kept)
    assert kept[-1].payload.startswith(b"199F") and not kept[0].payload.startswith(b"0F")


def vm_steps_of_a_put(spool, kind):
    """SQLite virtual-machine steps one put costs (the spool's own connection, this thread)."""
    steps = [0]

    def tick():
        steps[0] += 1
        return 0

    db = spool._db()
    db.set_progress_handler(tick, 1)
    spool.put(kind, "t", b"x" * 500)
    db.set_progress_handler(None, 1)
    return steps[0]


def test_the_cost_of_a_put_does_not_grow_with_the_spool(tmp_path):
    small = Spool(tmp_path / "small.sqlite", max_bytes=500_000)
    big = Spool(tmp_path / "big.sqlite", max_bytes=500_000)
    for _ in range(20):
        small.put("diag", "t", b"x" * 500)
    for _ in range(5_000):  # far past the bound: every put from here on also drops
        big.put("diag", "t", b"x" * 500)
    assert big.dropped() > 3_000 and small.dropped() == 0
    cost_small = vm_steps_of_a_put(small, "flux")
    cost_big = vm_steps_of_a_put(big, "flux")  # insert + size check + dropping the oldest diagnostics
    assert cost_big < 3 * cost_small + 2_000, (cost_small, cost_big)  # a scan would be > 800 rows


def test_a_file_that_is_not_a_spool_gives_a_one_line_error(tmp_path):
    bad = tmp_path / "spool.sqlite"
    bad.write_bytes(b"this is not SQLite" * 100)
    with pytest.raises(SpoolError, match=f"^{bad}: cannot open the spool .*not a database") as err:
        Spool(bad)
    assert "\n" not in str(err.value)
    assert bad.read_bytes() == b"this is not SQLite" * 100  # left untouched for inspection


def test_station_run_on_a_broken_spool_file_says_so_in_one_line(tmp_path):
    bad = tmp_path / "spool.sqlite"
    bad.write_bytes(b"garbage" * 1000)
    cfg = tmp_path / "station.toml"
    cfg.write_text('[site]\nid = "t"\nlatitude_deg = 1\nlongitude_deg = 1\n'
                   '[[instruments]]\nname = "sonic"\ndriver = "csat3"\nport = "/dev/null"\n'
                   f'[mqtt]\nport = 1\n[spool]\npath = "{bad}"\n')
    out = subprocess.run([sys.executable, "-m", "fluxedge.cli", "station", "run", "-c", str(cfg)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines() == [f"fluxedge: error: {bad}: cannot open the spool (file is not a "
                                               "database); move the file away to start a new one"]


def test_full_disk_drops_by_the_same_policy_as_the_size_bound(tmp_path):
    """SQLite's page limit stands in for a full disk (the same SQLITE_FULL error): fluxes make room by
    dropping diagnostics first, then the oldest fluxes (as a full size bound does); a diagnostics
    message that only dropping fluxes could fit is refused (SpoolFullError), and nothing is dropped for it."""
    from station.outbox.spool import SpoolFullError

    spool = Spool(tmp_path / "s.sqlite", max_bytes=2**30)
    db = spool._db()
    for i in range(200):
        spool.put("diag", "t/diag", b"d" * 1000 + str(i).encode())
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages}")
    fluxes = [spool.put("flux", "t/flux", b"f" * 1000 + str(i).encode()) for i in range(400)]
    dropped = spool.dropped_by_kind()
    assert dropped["diag"] == 200 and dropped["flux"] > 0  # diagnostics went first, then old fluxes
    kept = [m.id for m in spool.oldest(100_000)]
    assert kept == fluxes[-len(kept):] and len(kept) > 100  # the newest fluxes, in order
    with pytest.raises(SpoolFullError, match="diag"):  # room only by dropping fluxes: refused
        spool.put("diag", "t/diag", b"x" * 2_000_000)
    assert spool.dropped_by_kind() == dropped and [m.id for m in spool.oldest(100_000)] == kept

"""Must show (issue 19): ``fluxedge flux process`` on a real Dask distributed cluster (a scheduler
and two worker processes on this machine): many stations' trees in one run, results equal to
``--jobs 1`` bit for bit, and a worker killed mid-run changes nothing (its tasks are redone,
nothing is lost or duplicated); a scheduler nobody runs is one line."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fluxedge.demo.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
DEGEB = ROOT.parent / "shared" / "data" / "ec" / "degeb-hs50-li7200-20hz" / "raw"
CLI = [sys.executable, "-m", "fluxedge.cli"]
DASK = str(Path(sys.executable).with_name("dask"))
STATIONS = ("geb-a", "geb-b", "geb-c")
COPIES = 5  # each station: the 4 DE-Geb periods, 5 times (20 files): 60 tasks in all


def start(cmd: list[str], log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def cluster(tmp_path):
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [start([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                   tmp_path / "scheduler.log")]
    time.sleep(1.0)
    for k in range(2):
        procs.append(start([DASK, "worker", address, "--nworkers", "1", "--nthreads", "1", "--no-dashboard",
                            "--name", f"w{k}", "--death-timeout", "60"], tmp_path / f"worker{k}.log"))
    from distributed import Client

    with Client(address, timeout=30, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=60)
    try:
        yield address, procs
    finally:
        for p in reversed(procs):
            stop(p)


@pytest.fixture
def trees(tmp_path):
    root = tmp_path / "raw"
    for station in STATIONS:
        month = root / station / "2016" / "12"
        month.mkdir(parents=True)
        for copy in range(COPIES):
            for f in sorted(DEGEB.glob("*.ghg")):
                shutil.copyfile(f, month / f"{f.stem}_{copy}.ghg")
    return root


def process(root: Path, out: Path, *extra: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "flux", "process", "--tree", str(root), "-o", str(out), *extra],
                          capture_output=True, text=True, timeout=timeout)


def outputs(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def test_a_cluster_gives_the_local_results_bit_for_bit_even_when_a_worker_dies(cluster, trees, tmp_path):
    address, procs = cluster
    local = process(trees, tmp_path / "local", "--jobs", "1", "--digits", "full")
    assert local.returncode == 0, local.stderr
    expected = outputs(tmp_path / "local")
    assert sorted(expected) == [f"{s}.csv" for s in STATIONS]
    assert all(len(v.decode().splitlines()) == 1 + 4 * COPIES for v in expected.values())

    remote = process(trees, tmp_path / "dask", "--scheduler", address, "--digits", "full")
    assert remote.returncode == 0, remote.stderr
    assert outputs(tmp_path / "dask") == expected

    # again, and one of the two workers is killed while the run is under way
    run = subprocess.Popen([*CLI, "flux", "process", "--tree", str(trees), "-o", str(tmp_path / "killed"),
                            "--scheduler", address, "--digits", "full"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    from distributed import Client

    with Client(address, timeout=30, set_as_default=False) as watcher:
        w0 = next(a for a, w in watcher.scheduler_info()["workers"].items() if w["name"] == "w0")
        deadline = time.monotonic() + 120
        while not watcher.processing().get(w0):  # w0 is computing one of this run's tasks
            assert run.poll() is None and time.monotonic() < deadline, "w0 got no task to be killed in"
            time.sleep(0.05)
        time.sleep(0.5)  # and has finished a few, whose results it holds
        assert run.poll() is None, "the run ended before the worker could be killed: give it more work"
        os.killpg(procs[1].pid, signal.SIGKILL)
    _, stderr = run.communicate(timeout=300)
    assert run.returncode == 0, stderr
    assert outputs(tmp_path / "killed") == expected  # nothing lost, nothing twice
    scheduler_log = (tmp_path / "scheduler.log").read_text()
    assert "Remove worker" in scheduler_log or "removing worker" in scheduler_log.lower(), scheduler_log[-2000:]


def test_an_unreachable_scheduler_is_one_line(trees, tmp_path):
    done = process(trees, tmp_path / "out", "--scheduler", f"tcp://127.0.0.1:{free_port()}", timeout=120)
    assert done.returncode == 2 and "cannot reach the Dask scheduler" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_the_worker_allocator_is_tuned_on_glibc():
    """Dask's MALLOC_TRIM_THRESHOLD_ would make each period 2.4x slower (station/reprocess/executor.py)."""
    from station.reprocess import executor

    assert executor.tune_allocator() is True and executor.tune_allocator() is True


def test_one_bad_item_fails_alone_though_items_go_in_batches(cluster):
    """Items go to the workers in batches (executor.batch_size); an item that raises, or that kills
    every worker it runs on, is the only one reported failed: its batch-mates' results come back, in
    the order of the work, each once."""
    from station.reprocess import executor

    address, _ = cluster
    work = list(range(24))
    assert executor.batch_size(len(work), 2) == 3  # 8 tasks, so the bad ones share a batch with good ones

    def compute(x):
        if x == 4:
            raise ValueError("bad item 4")
        if x == 10:
            os._exit(3)  # takes its worker down, every time (the nanny restarts it)
        return x * x

    got = list(executor.on_cluster(compute, work, address, lambda item, why: ("failed", item, why)))
    assert [g for g in got if not isinstance(g, tuple)] == [x * x for x in work if x not in (4, 10)]
    failed = {g[1]: g[2] for g in got if isinstance(g, tuple)}
    assert sorted(failed) == [4, 10]
    assert failed[4] == "ValueError: bad item 4"
    assert "KilledWorker" in failed[10]
    assert [g if not isinstance(g, tuple) else g[1] for g in got] == [x if x in (4, 10) else x * x for x in work]

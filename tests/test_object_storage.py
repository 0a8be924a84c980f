"""Raw archives in object storage (issue 19): ``fluxedge flux process --tree s3://bucket/raw`` reads
every station's files from a real S3 server (moto's, on 127.0.0.1) through fsspec and s3fs, locally
and on a Dask worker, and writes what the same tree on disk gives, byte for byte; missing objects
and buckets are named in one line."""

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
CLI = [sys.executable, "-m", "fluxedge.cli", "flux", "process"]
DASK = str(Path(sys.executable).with_name("dask"))
STATIONS = ("geb-a", "geb-b")


@pytest.fixture(scope="module")
def s3():
    """A real S3 endpoint (moto's server) with the environment every client reads it from."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "fluxedge", "AWS_SECRET_ACCESS_KEY": "fluxedge-secret",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    try:
        yield env
    finally:
        server.stop()


@pytest.fixture(scope="module")
def trees(s3, tmp_path_factory):
    """The same station trees on disk and in the bucket ``archive``: each station the four DE-Geb
    half hours in ``<station>/2016/12/``, one of them twice as a TOA5-free tree has it."""
    import s3fs

    local = tmp_path_factory.mktemp("trees") / "raw"
    fs = s3fs.S3FileSystem(key=s3["AWS_ACCESS_KEY_ID"], secret=s3["AWS_SECRET_ACCESS_KEY"],
                           endpoint_url=s3["AWS_ENDPOINT_URL"])
    fs.mkdir("archive")
    for station in STATIONS:
        month = local / station / "2016" / "12"
        month.mkdir(parents=True)
        for f in sorted(DEGEB.glob("*.ghg")):
            shutil.copyfile(f, month / f.name)
            fs.put_file(str(f), f"archive/raw/{station}/2016/12/{f.name}")
    fs.pipe_file("archive/raw/README.txt", b"not a station")  # a file beside the stations: not one
    return local


def run(args: list[str], env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, env=env)


def outputs(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def test_a_tree_in_object_storage_gives_what_the_same_tree_on_disk_gives(s3, trees, tmp_path):
    on_disk = run(["--tree", str(trees), "-o", str(tmp_path / "disk"), "--digits", "full"], s3)
    assert on_disk.returncode == 0, on_disk.stderr
    expected = outputs(tmp_path / "disk")
    assert sorted(expected) == [f"{s}.csv" for s in STATIONS]
    assert all(len(v.decode().splitlines()) == 5 for v in expected.values())

    for extra in ([], ["--jobs", "2"]):
        remote = run(["--tree", "s3://archive/raw", "-o", str(tmp_path / "s3"), "--digits", "full", *extra], s3)
        assert remote.returncode == 0, remote.stderr
        assert outputs(tmp_path / "s3") == expected, extra

    # joined into clock periods: the plan reads each object's time zone in ranges, not whole
    joined_disk = run(["--tree", str(trees), "-o", str(tmp_path / "jd"), "--period", "30", "--digits", "full"], s3)
    joined_s3 = run(["--tree", "s3://archive/raw", "-o", str(tmp_path / "js"), "--period", "30", "--digits", "full"],
                    s3)
    assert joined_disk.returncode == joined_s3.returncode == 0, joined_s3.stderr
    assert outputs(tmp_path / "js") == outputs(tmp_path / "jd")


def test_a_dask_worker_reads_the_bucket_itself(s3, trees, tmp_path):
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=s3, start_new_session=True)]
    try:
        time.sleep(1.0)
        procs.append(subprocess.Popen([DASK, "worker", address, "--nworkers", "1", "--nthreads", "1",
                                       "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      env=s3, start_new_session=True))
        on_disk = run(["--tree", str(trees), "-o", str(tmp_path / "disk"), "--digits", "full"], s3)
        on_cluster = run(["--tree", "s3://archive/raw", "-o", str(tmp_path / "dask"), "--digits", "full",
                          "--scheduler", address], s3)
        assert on_disk.returncode == 0 and on_cluster.returncode == 0, on_cluster.stderr
        assert outputs(tmp_path / "dask") == outputs(tmp_path / "disk")
    finally:
        for p in reversed(procs):
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(20)


def test_missing_objects_and_buckets_are_named_in_one_line(s3, trees, tmp_path):
    gone = "s3://archive/raw/geb-a/2016/12/2016-12-11T233000_AIU-1359.ghg"
    there = "s3://archive/raw/geb-a/2016/12/2016-12-11T200000_AIU-1359.ghg"
    done = run([there, gone, "-o", str(tmp_path / "two.csv")], s3)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    (line,) = [ln for ln in done.stderr.splitlines() if "error" in ln]
    assert gone in line and "cannot download" in line
    assert len((tmp_path / "two.csv").read_text().splitlines()) == 2  # the one that is there, processed

    no_bucket = run(["--tree", "s3://no-such-bucket/raw", "-o", str(tmp_path / "x")], s3)
    assert no_bucket.returncode == 2 and "Traceback" not in no_bucket.stderr
    assert len(no_bucket.stderr.strip().splitlines()) == 1 and "s3://no-such-bucket/raw" in no_bucket.stderr

    unknown = run(["--tree", "nosuchprotocol://x/raw", "-o", str(tmp_path / "y")], s3)
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr, unknown.stderr
    assert "nosuchprotocol" in unknown.stderr

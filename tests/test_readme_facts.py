"""What the README says about the flux worker and the engine's memory is what the code does."""

import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from station.processing.fluxworker import WorkerProcess

ROOT = Path(__file__).resolve().parents[1]
README = re.sub(r"\s+", " ", (ROOT / "README.md").read_text())
DATA = Path(os.environ.get("FLUXEDGE_EC_DATA", ROOT.parent / "shared" / "data" / "ec"))


def _children(pid: int) -> list[list[bytes]]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            found.append(Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0"))
    return found


def test_the_flux_worker_is_a_subprocess_as_the_readme_says():
    sentence = README[README.index("one long-lived flux worker"):][:200]
    assert "started with `subprocess`" in sentence and "spawn" not in sentence, sentence
    before = _children(os.getpid())
    worker = WorkerProcess(logging.WARNING)
    try:
        deadline = time.monotonic() + 10
        while True:  # until the child has exec'd (before that its cmdline is empty or the parent's)
            cmdline = Path(f"/proc/{worker.pid}/cmdline").read_bytes().split(b"\0")
            if b"station.processing.fluxworker" in cmdline or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        assert cmdline[0] == sys.executable.encode() and cmdline[1:3] == [b"-m", b"station.processing.fluxworker"]
        started = [c for c in _children(os.getpid()) if c not in before]
        assert started == [cmdline]  # the worker alone: no multiprocessing resource tracker beside it
    finally:
        worker.conn.close()  # the worker returns on end of file
        worker.join(10)
        worker.kill()
    assert not worker.is_alive()


def test_the_memory_figures_are_resident_memory_of_a_fresh_process():
    assert "tracemalloc" not in (ROOT / "bench" / "flux.py").read_text()
    sentence = README[README.index("Speed on this 2-core machine"):][:420]
    assert "resident" in sentence and "VmHWM" in sentence, sentence
    ghg = sorted((DATA / "degeb-hs50-li7200-20hz" / "raw").glob("*.ghg"))
    if not ghg:
        pytest.skip(f"no real EC data in {DATA}")
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "flux.py"), "--memory-child", str(ghg[0])],
                          capture_output=True, text=True, timeout=120, check=True)
    mem = json.loads(proc.stdout.splitlines()[-1])
    # the kernel's figures: a loaded interpreter is tens of MB, a period's arrays add at least their own size
    assert 15 * 1024 < mem["loaded_kb"] < mem["hwm_kb"] and mem["pss_kb"] <= mem["hwm_kb"]
    assert mem["hwm_kb"] - mem["loaded_kb"] > 36_000 * 7 * 8 / 1024
    readme_mb = float(re.search(r"peaks at about (\d+) MB resident", sentence).group(1))
    assert readme_mb == pytest.approx(mem["hwm_kb"] / 1024, rel=0.4)  # the README's figure, measured again

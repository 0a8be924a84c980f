"""Flux engine speed and memory on the real 20 Hz LI-7200 half hours (shared/data/ec/degeb...).

    .venv/bin/python bench/flux.py [--repeat 7] [--month-files 1440] [--jobs 2]

Prints, each as the median of ``--repeat`` runs on one core:
  1. one 30-min period (36,000 samples: u v w ts co2 h2o + pressure) through the full default
     chain (despiking, rotation, lags, detrending, fluxes, spectral corrections, QC, footprint,
     random errors), excluding file reading;
  2. the same including reading its .ghg file;
  3. peak resident memory of a fresh process that reads and processes one period: its VmHWM
     (/proc/self/status, what the kernel had to give it), the resident memory it had after importing
     the engine (interpreter + NumPy + engine) and the difference, the period's own peak; and its
     PSS (/proc/self/smaps_rollup: shared pages counted once) after the period;
  4. a site-month: ``--month-files`` half hours (symlinks to the four real files) through
     ``fluxedge flux process --jobs N``, wall time;
  5. the whole command as a user runs it (issue 19): ``fluxedge flux process --jobs 1`` on 24 half hours
     (symlinks to the four real files), each run a fresh process: its wall time (median of ``--repeat``),
     the wall time per half hour (start-up and per-file costs included), the speed-up over EddyPro
     (:data:`EDDYPRO_S_PER_PERIOD`), its peak resident memory (VmHWM, the child's ``ru_maxrss``) and the
     resident memory of a process that has imported what the command imports. Twice: with the
     bytecode cached as an installed package has it, and with the sources compiled at every start
     (as under ``PYTHONDONTWRITEBYTECODE=1``, the development set-up).
Targets (issue 4): <= 20 ms, <= 60 ms, <= 50 MB above the loaded interpreter, <= 120 s with 2 jobs.
Targets (issue 19): 100x EddyPro's whole-process time per half hour; peak resident memory near EddyPro's 40 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from station.processing.runtime import configure_numeric_process

configure_numeric_process()  # as the fluxedge command does: one BLAS thread, malloc keeps freed memory

from station.flux.pipeline import process  # noqa: E402
from station.rawdata import read_raw  # noqa: E402
from station.reprocess.command import ENGINE_VARIABLES, setup_for  # noqa: E402

DATA = Path(os.environ.get("FLUXEDGE_EC_DATA", Path(__file__).resolve().parents[2] / "shared" / "data" / "ec"))
GHG = sorted((DATA / "degeb-hs50-li7200-20hz" / "raw").glob("*.ghg"))
WANTED = ("u", "v", "w", "ts", "pa", "co2", "h2o")
#: EddyPro 7.0.9 (eddypro_rp, the reference runs' settings) whole-process time per 30-min DE-Geb period [s]:
#: measured side by side with fluxedge on these 2-core machines, 24 periods (issue 19)
EDDYPRO_S_PER_PERIOD = 4.7
#: half hours of figure 5
PROCESS_PERIODS = 24
#: what ``fluxedge flux process`` imports, for the resident memory after imports
_COMMAND_IMPORTS = ("import fluxedge.cli; fluxedge.cli.build_parser(); import station.reprocess.command; "
                    "from pathlib import Path; print([l.split()[1] for l in Path('/proc/self/status').read_text()"
                    ".splitlines() if l.startswith('VmRSS:')][0])")


def one_period(path: Path, read: bool, raw=None):
    if read:
        raw = read_raw(path, variables=ENGINE_VARIABLES)  # as fluxedge flux process reads
    columns = {c: raw.columns[c] for c in WANTED if c in raw.columns}
    return process(columns, setup_for(raw, raw.n_samples / raw.rate_hz))


def median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def status_kb(name: str) -> int:
    """A ``/proc/self/status`` figure (VmRSS, VmHWM) [kB]."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    raise KeyError(name)


def pss_kb() -> int:
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    raise KeyError("Pss")


def memory_child(path: Path) -> None:
    """In a fresh process (the engine imported, nothing else done): read and process one period,
    print the resident figures as JSON."""
    loaded = status_kb("VmRSS")
    one_period(path, True)
    print(json.dumps({"loaded_kb": loaded, "hwm_kb": status_kb("VmHWM"), "pss_kb": pss_kb()}))


def peak_resident(path: Path) -> dict[str, int]:
    proc = subprocess.run([sys.executable, __file__, "--memory-child", str(path)], capture_output=True, text=True,
                          check=True)
    return json.loads(proc.stdout.splitlines()[-1])


def period_links(directory: Path, n: int) -> list[str]:
    """``n`` symlinks to the real half hours, with distinct names (a site-month as the command sees it)."""
    links = []
    for i in range(n):
        link = directory / f"p{i:05d}_{GHG[i % len(GHG)].name}"
        link.symlink_to(GHG[i % len(GHG)])
        links.append(str(link))
    return links


#: ``fluxedge <args>`` as ``python -m fluxedge.cli`` runs it, printing its VmHWM [kB] to stderr at the end. The
#: child's ``ru_maxrss`` would not do: a child forked (or vforked) from this big process inherits its high-water
#: mark across exec
_COMMAND = ("import sys; from pathlib import Path; from fluxedge.cli import main; rc = main(sys.argv[1:]); "
            "print('VmHWM', [l.split()[1] for l in Path('/proc/self/status').read_text().splitlines() "
            "if l.startswith('VmHWM:')][0], file=sys.stderr); sys.exit(rc)")


def timed_command(args: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall time [s] and peak resident memory (VmHWM) [kB] of ``fluxedge args`` in a fresh process."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _COMMAND, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True, env=env, cwd=Path(__file__).resolve().parents[1])
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"fluxedge {' '.join(args[:4])} ...: exit {proc.returncode}\n{proc.stderr[-2000:]}")
    return wall, int(proc.stderr.split("VmHWM")[-1].split()[0])


def whole_process(repeat: int) -> None:
    """Figure 5 (the module doc)."""
    root = str(Path(__file__).resolve().parents[1])
    with tempfile.TemporaryDirectory() as tmp:
        links = period_links(Path(tmp), PROCESS_PERIODS)
        args = ["flux", "process", *links, "--jobs", "1", "-o", str(Path(tmp) / "out.csv")]
        base = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH"))))}
        cached = {k: v for k, v in base.items() if k != "PYTHONDONTWRITEBYTECODE"}
        cached["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")  # as installed: bytecode compiled once
        for label, env in (("bytecode cached (installed)", cached),
                           ("sources compiled at start", {**base, "PYTHONDONTWRITEBYTECODE": "1"})):
            timed_command(args, env)  # warm: the page cache, and the bytecode cache of the first set-up
            runs = [timed_command(args, env) for _ in range(repeat)]
            wall = statistics.median(w for w, _ in runs)
            hwm_mb = statistics.median(m for _, m in runs) / 1024
            imported = subprocess.run([sys.executable, "-c", _COMMAND_IMPORTS], capture_output=True, text=True,
                                      env=env, check=True, cwd=root)
            per = wall / PROCESS_PERIODS
            print(f"flux process --jobs 1, {PROCESS_PERIODS} half hours, {label}:")
            print(f"{'  wall time of the whole command':45} {wall:8.2f} s")
            print(f"{'  per half hour (start-up included)':45} {1e3 * per:8.1f} ms")
            print(f"{f'  x EddyPro ({EDDYPRO_S_PER_PERIOD} s per half hour)':45} {EDDYPRO_S_PER_PERIOD / per:8.1f} x")
            print(f"{'  peak resident (VmHWM)':45} {hwm_mb:8.1f} MB")
            print(f"{'  resident after the command imports':45} {int(imported.stdout.split()[-1]) / 1024:8.1f} MB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--month-files", type=int, default=1440)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--no-process", action="store_true", help="skip figure 5 (the whole command on 24 half hours)")
    ap.add_argument("--memory-child", metavar="GHG", help=argparse.SUPPRESS)  # the fresh process of figure 3
    args = ap.parse_args()
    if args.memory_child:
        memory_child(Path(args.memory_child))
        return
    raw = read_raw(GHG[0])
    one_period(GHG[0], False, raw)  # warm caches
    engine = median_ms(lambda: one_period(GHG[0], False, raw), args.repeat)
    print(f"{'engine only, one 36,000-sample period':45} {engine:8.1f} ms")
    total = median_ms(lambda: one_period(GHG[0], True), args.repeat)
    print(f"{'reading the .ghg + engine':45} {total:8.1f} ms")
    mem = peak_resident(GHG[0])
    print(f"{'peak resident (VmHWM), fresh process, 1 period':45} {mem['hwm_kb'] / 1024:8.1f} MB")
    print(f"{'  resident after importing the engine':45} {mem['loaded_kb'] / 1024:8.1f} MB")
    print(f"{'  the period above that (read + process)':45} {(mem['hwm_kb'] - mem['loaded_kb']) / 1024:8.1f} MB")
    print(f"{'  PSS after the period':45} {mem['pss_kb'] / 1024:8.1f} MB")
    if args.month_files:
        with tempfile.TemporaryDirectory() as tmp:
            links = period_links(Path(tmp), args.month_files)
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "fluxedge.cli", "flux", "process", *links, "--jobs",
                                   str(args.jobs), "-o", str(Path(tmp) / "month.csv")], capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if proc.returncode:
                raise SystemExit(proc.stderr[-2000:])
        print(f"{f'site-month, {args.month_files} half hours, --jobs {args.jobs}':45} {wall:8.1f} s")
    if not args.no_process:
        whole_process(args.repeat)


if __name__ == "__main__":
    main()

"""The flux worker: one long-lived process that archives and processes each closed period, so the
acquisition side (reader threads, spool, publisher) never waits for the flux engine.

The station hands blocks to :meth:`FluxWorker.submit` (it returns at once); a dispatcher thread sends
them one at a time to the worker process over a socket pair (pickled, as multiprocessing's
connections do) and passes every :class:`PeriodOutcome` to ``on_outcome`` in the parent, where the
spool writes happen. The worker is a fresh interpreter (``python -m station.processing.fluxworker FD LEVEL``)
started with ``subprocess``: the parent has threads, so it must not fork, and multiprocessing's
``spawn`` would add its resource-tracker process (13 MB resident on a Pi for nothing: no shared
memory or semaphores are used). If the worker dies (killed, crashed, out of memory) or
overruns ``job_timeout_s``, the period is reported as failed, the worker is restarted, and the new
one archives the block if the file is not there yet; the next periods are processed as usual.
"""

from __future__ import annotations

import logging
import os
import pickle
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

from fluxedge.common.logs import event
from station.acquisition.periodblock import JobConfig, PeriodBlock, PeriodOutcome
from station.archive.writer import archive_path
from station.processing.runtime import BLAS_THREAD_VARIABLES, keep_freed_memory

log = logging.getLogger("station.flux")
RUN, ARCHIVE_ONLY = "run", "archive"


def worker_main(conn: Connection, log_level: int) -> None:
    """The worker process: take the JobConfig, then answer each (kind, block) with a PeriodOutcome
    until the connection closes."""
    import signal
    import warnings

    # the station ends its worker itself (Ctrl-C and systemd's SIGTERM reach the whole process group)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from fluxedge.common import logs
    from station.processing.fluxjob import run_job

    logs.setup(verbose=log_level <= logging.DEBUG, quiet=log_level >= logging.WARNING)
    warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN statistics become -9999, not warnings
    try:
        job: JobConfig = conn.recv()
    except (EOFError, OSError):
        return
    while True:
        try:
            kind, block = conn.recv()
        except (EOFError, OSError):
            return  # the station is gone
        if kind is None:
            return
        try:
            conn.send(run_job(block, job, do_compute=kind == RUN))
        except (BrokenPipeError, OSError):
            return  # the station went away while this period was processed


class WorkerProcess:
    """The worker's interpreter, with the few process calls the dispatcher needs."""

    def __init__(self, log_level: int) -> None:
        parent, child = socket.socketpair()
        package_root = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ)
        for name in BLAS_THREAD_VARIABLES:  # before the worker loads NumPy
            env.setdefault(name, "1")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
        try:
            self._popen = subprocess.Popen(
                [sys.executable, "-m", "station.processing.fluxworker", str(child.fileno()), str(log_level)],
                pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL, env=env, close_fds=True)
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        self.conn = Connection(parent.detach())
        self.pid = self._popen.pid

    def is_alive(self) -> bool:
        return self._popen.poll() is None

    @property
    def exitcode(self) -> int | None:
        return self._popen.poll()

    def join(self, timeout: float | None = None) -> None:
        try:
            self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pass

    def kill(self) -> None:
        if self.is_alive():
            self._popen.kill()


class FluxWorker:
    def __init__(self, job: JobConfig, on_outcome: Callable[[PeriodOutcome], None], *,
                 job_timeout_s: float = 1800.0) -> None:
        self.job = job
        self.on_outcome = on_outcome
        self.job_timeout_s = job_timeout_s
        self._jobs: queue.Queue[PeriodBlock | None] = queue.Queue()
        self._proc = None
        self._conn = None
        self._thread = threading.Thread(target=self._dispatch, name="flux-dispatch", daemon=True)
        self._busy = threading.Event()
        self._abandon = threading.Event()  # set when stop() gave up waiting: no more restarts
        self.restarts = 0
        self.done = 0

    # -- parent API ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._spawn()
        self._thread.start()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def submit(self, block: PeriodBlock) -> None:
        """Queue one period (never blocks)."""
        self._jobs.put(block)

    def alive(self) -> bool:
        """The dispatcher runs (the worker process itself is restarted when it dies)."""
        return self._thread.is_alive()

    def pending(self) -> int:
        """Periods queued or being processed."""
        return self._jobs.qsize() + (1 if self._busy.is_set() else 0)

    def stop(self, timeout_s: float = 60.0) -> None:
        """Finish the queued periods (within ``timeout_s``), then end the worker process."""
        self._jobs.put(None)
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            event(log, "flux_worker_stop_timeout", logging.WARNING, pending=self.pending())
            self._abandon.set()
            proc = self._proc
            if proc is not None and proc.is_alive():
                proc.kill()
            self._thread.join(10.0)
        self._end_process()

    # -- process management -------------------------------------------------------------------------
    def _spawn(self) -> None:
        proc = WorkerProcess(logging.getLogger().level)
        try:
            proc.conn.send(self.job)
        except (OSError, ValueError):
            pass  # it died at once: the first job finds it dead and restarts it
        self._proc, self._conn = proc, proc.conn
        event(log, "flux_worker_started", pid=proc.pid)

    def _end_process(self) -> None:
        proc, conn = self._proc, self._conn
        if proc is None:
            return
        try:
            conn.send((None, None))
        except (OSError, ValueError):
            pass
        proc.join(5.0)
        if proc.is_alive():
            proc.kill()
            proc.join(5.0)
        conn.close()
        self._proc = self._conn = None

    def _restart(self, why: str) -> None:
        proc = self._proc
        if proc is not None and proc.is_alive():
            proc.kill()
        if proc is not None:
            proc.join(5.0)
        exitcode = proc.exitcode if proc is not None else None
        event(log, "flux_worker_died", logging.ERROR, pid=proc.pid if proc else None, exitcode=exitcode,
              reason=why)
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None
        if self._abandon.is_set():
            return  # the station is stopping
        self.restarts += 1
        self._spawn()

    def _ask(self, kind: str, block: PeriodBlock) -> PeriodOutcome | str:
        """Send one job and wait for its outcome; a string says why none came."""
        try:
            self._conn.send((kind, block))
        except (OSError, ValueError) as exc:
            return f"cannot send to the worker: {exc}"
        deadline = time.monotonic() + self.job_timeout_s
        while True:
            try:
                if self._conn.poll(0.5):
                    return self._conn.recv()
            except (EOFError, OSError, pickle.UnpicklingError):
                self._proc.join(2.0)
                return f"worker exited (exit code {self._proc.exitcode})"
            if not self._proc.is_alive():
                if self._conn.poll(0):
                    continue  # the answer arrived just before it went
                return f"worker exited (exit code {self._proc.exitcode})"
            if time.monotonic() > deadline:
                return f"no result within {self.job_timeout_s:.0f} s"

    def _run(self, block: PeriodBlock) -> PeriodOutcome:
        if not self._abandon.is_set() and (self._proc is None or not self._proc.is_alive()):
            self._restart("found dead")
        if self._proc is None:
            return PeriodOutcome(block.start_s, block.end_s, "failed", error="no flux worker (station stopping)",
                                 present=block.present, expected=block.expected)
        answer = self._ask(RUN, block)
        if isinstance(answer, PeriodOutcome):
            return answer
        self._restart(answer)
        path = None
        if self.job.archive is not None:
            path = archive_path(self.job.archive.root, block.start_s, self.job.tower.station_id,
                                self.job.tower.time_zone)
        if path is not None and not path.exists() and self._proc is not None:
            retry = self._ask(ARCHIVE_ONLY, block)  # keep the raw data even though the period failed
            if not isinstance(retry, PeriodOutcome):
                self._restart(f"archiving after a failure: {retry}")
        archived = str(path) if path is not None and path.exists() else None
        return PeriodOutcome(block.start_s, block.end_s, "failed", error=answer, archive_path=archived,
                             present=block.present, expected=block.expected)

    def _dispatch(self) -> None:
        while True:
            block = self._jobs.get()
            if block is None:
                return
            self._busy.set()
            try:
                try:
                    outcome = self._run(block)
                except Exception as exc:  # e.g. no new process could be started: report, keep going
                    event(log, "flux_worker_error", logging.ERROR, error=repr(exc))
                    outcome = PeriodOutcome(block.start_s, block.end_s, "failed", error=f"flux worker: {exc}",
                                            present=block.present, expected=block.expected)
                self.done += 1
                try:
                    self.on_outcome(outcome)
                except Exception as exc:  # the station's handler must not kill the dispatcher
                    event(log, "period_outcome_error", logging.ERROR, error=repr(exc))
            finally:
                self._busy.clear()


if __name__ == "__main__":
    keep_freed_memory()
    worker_main(Connection(int(sys.argv[1])), int(sys.argv[2]))

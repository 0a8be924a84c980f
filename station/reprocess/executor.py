"""Where the periods of ``flux process`` are computed: here (one process, or ``--jobs N`` local
worker processes) or on an existing Dask distributed cluster (``--scheduler tcp://HOST:8786``).

Each :class:`~station.reprocess.command.WorkItem` is a file, or files joined into periods;
results come back in the order of the work, whatever order they finish in, so the output is the
same bit for bit wherever it was computed. On a cluster the items go in batches, one task each
(:func:`batch_size`: about a second of work, at least four tasks per worker): a task per half-hour
file cost the scheduler and the client a share of the two cores that made 2 workers only 1.73
times as fast as one (bench/cluster.py, 192 periods). A task whose worker dies is run again by the
scheduler on another worker (Dask's own bookkeeping: its result is kept once); a batch that fails
for good (it killed ``allowed-failures`` workers) is run again item by item, so only the item that
fails becomes a failed file in the report and the others go on.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable, Iterator

#: glibc mallopt(3) parameters
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: arrays below this come from the heap and are reused between periods [bytes] (glibc's own upper
#: bound of its dynamic threshold on 64-bit systems, DEFAULT_MMAP_THRESHOLD_MAX)
MMAP_THRESHOLD = 32 * 2**20
#: free memory at the top of the heap kept for the next period rather than given back [bytes]
TRIM_THRESHOLD = 64 * 2**20
_tuned = False


class SchedulerError(Exception):
    """The cluster cannot be used (unreachable scheduler, no workers, no ``distributed``)."""


def local(fn: Callable, work: list, jobs: int) -> Iterator:
    """``fn`` over ``work`` in order: in this process, or in ``jobs`` worker processes."""
    if jobs <= 1 or len(work) <= 1:
        yield from map(fn, work)
        return
    from concurrent.futures import ProcessPoolExecutor  # ~10 ms of imports (multiprocessing) a --jobs 1 run spares

    with ProcessPoolExecutor(max_workers=jobs) as pool:
        yield from pool.map(fn, work, chunksize=max(1, len(work) // (jobs * 8)))


def tune_allocator() -> bool:
    """Undo, in a Dask worker, what its nanny's ``MALLOC_TRIM_THRESHOLD_=65536`` costs the engine.

    Dask sets that variable for every worker so memory goes back to the OS (distributed docs,
    "Memory not released back to the OS"). In glibc a fixed trim threshold also switches off the
    dynamic mmap threshold (mallopt(3)), so every array over 128 KiB is mmap-ed and unmapped again:
    a period took 0.22 s instead of 0.09 s (measured: MALLOC_TRIM_THRESHOLD_=65536 in a plain
    process). Fixed thresholds of 32 MiB (mmap) and 64 MiB (trim) restore 0.086 s per period, with
    the same peak resident memory (78 MB). A no-op where the C library has no mallopt (musl)."""
    global _tuned
    if _tuned:
        return True
    try:
        libc = ctypes.CDLL(None)
        _tuned = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
            libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    except (OSError, AttributeError):
        _tuned = False
    return _tuned


#: items per task at most: about a second of work for 30-min, 20 Hz files (~70 ms each)
MAX_BATCH = 16


class _Raised:
    """An item of a batch whose function raised: the task still returns its batch-mates' results."""

    def __init__(self, why: str) -> None:
        self.why = why


def _on_worker(fn: Callable, items: tuple) -> list:
    tune_allocator()
    out = []
    for item in items:
        try:
            out.append(fn(item))
        except Exception as exc:  # one item's error is that item's, not its batch's
            out.append(_Raised(f"{type(exc).__name__}: {exc}"[:500]))
    return out


def batch_size(n_items: int, n_workers: int) -> int:
    """Items per task: at most :data:`MAX_BATCH`, and at least four tasks per worker so that the
    last tasks do not leave workers idle."""
    return max(1, min(MAX_BATCH, n_items // (4 * max(1, n_workers))))


def on_cluster(fn: Callable, work: list, scheduler: str, failed: Callable[[object, str], object],
               connect_timeout_s: float = 20.0) -> Iterator:
    """``fn`` over ``work`` on the Dask cluster at ``scheduler``, results in the order of ``work``;
    an item whose task failed for good yields ``failed(item, why)`` instead."""
    try:
        from distributed import Client
    except ImportError:
        raise SchedulerError("--scheduler needs dask distributed: pip install 'fluxedge[cluster]'") from None
    try:
        client = Client(scheduler, timeout=connect_timeout_s, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise SchedulerError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
    try:
        if not client.scheduler_info().get("workers"):
            client.wait_for_workers(1, timeout=connect_timeout_s)
        size = batch_size(len(work), len(client.scheduler_info().get("workers", {})))
        batches = [tuple(work[i:i + size]) for i in range(0, len(work), size)]
        task = functools.partial(_on_worker, fn)
        # pure=False: two identical batches (the same files given twice) are two tasks, as they are locally
        futures = client.map(task, batches, pure=False, retries=0)
        for batch, future in zip(batches, futures, strict=True):
            try:
                results = future.result()
            except Exception:  # KilledWorker after allowed-failures deaths: find the item that does it
                results = [_one_by_one(client, task, item) for item in batch]
            future.release()
            for item, result in zip(batch, results, strict=True):
                yield failed(item, result.why) if isinstance(result, _Raised) else result
    except TimeoutError:
        raise SchedulerError(f"the Dask scheduler at {scheduler} has no workers (start 'dask worker "
                             f"{scheduler}' on the machines)") from None
    finally:
        client.close()


def _one_by_one(client, task: Callable, item) -> object:
    """``item`` alone as a task: its result, or :class:`_Raised` if this task too fails for good."""
    future = client.submit(task, (item,), pure=False, retries=0)
    try:
        (result,) = future.result()
    except Exception as exc:
        result = _Raised(f"{type(exc).__name__}: {exc}"[:500])
    future.release()
    return result

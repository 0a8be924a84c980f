"""The on-disk outbox: every message is committed to SQLite (WAL, synchronous=FULL) before
anything tries to send it, and deleted only when the broker acknowledged it.

Durability: ``put`` returns only after its transaction is committed with ``synchronous=FULL`` in
WAL mode, so a row whose put returned survives kill -9 and power loss; after a crash SQLite
replays the WAL on the next open.

Bounded by size: the spool keeps a running total of the bytes it holds (payload + topic +
``ROW_OVERHEAD_BYTES`` per row, in the ``counters`` table, updated in the same transactions as the
rows). When it passes ``max_bytes`` the oldest rows of the lowest priority kind present are
dropped first - diagnostics, then met and status, then fluxes and alarms last - and counted per
kind in persistent counters (``dropped_by_kind()``). The check after each put is one primary-key
lookup and victims come from the (priority, id) index, so no put ever scans the table. The file
itself stays at its high-water mark (SQLite reuses freed pages), a little above ``max_bytes``.

Transactions: each put (row + byte counter), each delete and each drop (the choice of its victims,
their deletion and the per-kind counters) is one ``BEGIN IMMEDIATE`` transaction, so another
thread's delete cannot slip between a drop's selection and its deletion, and a crash leaves the
counters consistent with the rows.

A full disk: in WAL mode even a DELETE needs disk (its pages go to the WAL first), so on a full
file system the drop policy itself would fail with ``database or disk is full``. The spool keeps
a reserve: ``<path>.reserve``, ``reserve_bytes`` preallocated beside the database. When a write
fails for lack of space the reserve is given back, the WAL is checkpointed into the database and
truncated, and rows are dropped by the same policy (never of a higher priority than the new row)
until the write fits. Afterwards the freed pages are returned to the file system (the database
uses SQLite's incremental auto-vacuum) and the reserve is taken again, dropping further rows by
the same rule if the freed space is not enough, so the next full disk finds it in place. The WAL
is checkpointed every :data:`WAL_CHECKPOINT_PAGES` pages and kept that small, so what a
checkpoint can add to the database file stays well inside the reserve.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fluxedge.common.configschema import ConfigError
from fluxedge.common.logs import event

log = logging.getLogger("station.spool")


class SpoolError(ConfigError):
    """The spool file cannot be used (not a database, unreadable, corrupt): a one-line error naming
    the file, reported like a configuration error (``spool.path`` points at it)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(path, None, problem)


class SpoolFullError(SpoolError):
    """Nothing could make room for a message (disk full, and nothing of lower priority to drop)."""


#: Lower is dropped first when the spool is full.
PRIORITY = {"diag": 0, "met": 1, "status": 1, "flux": 2, "alarm": 2}
#: What a row costs beyond its payload and topic (row header, index entry), for the size bound.
ROW_OVERHEAD_BYTES = 64
#: Rows dropped per transaction while over the bound.
DROP_BATCH = 64
#: Space kept aside beside the database for a full disk (module docstring) [bytes].
RESERVE_BYTES = 2 * 2**20
#: The WAL is checkpointed at this many pages (SQLite's default is 1000) and truncated back to
#: about this size, so that a checkpoint never needs more disk than the reserve holds.
WAL_CHECKPOINT_PAGES = 100
#: An older spool file without incremental auto-vacuum is converted (VACUUM) on open up to this size.
CONVERT_MAX_BYTES = 64 * 2**20
#: While the reserve could not be taken again, retry at most this often [s].
RESERVE_RETRY_S = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    priority INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_priority ON outbox (priority, id);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
_ROW_BYTES = f"length(payload) + length(CAST(topic AS BLOB)) + {ROW_OVERHEAD_BYTES}"
_ADD = "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = value + excluded.value"


def _disk_full(exc: BaseException) -> bool:
    """SQLITE_FULL ("database or disk is full"), or an OS write failing for lack of space."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
    return "full" in str(exc).lower()


@dataclass(frozen=True)
class Message:
    id: int
    kind: str
    topic: str
    payload: bytes
    created: float  # Unix time [s] when spooled


class Spool:
    """Thread-safe: each thread gets its own connection to the same file; :meth:`close` closes
    them all."""

    def __init__(self, path: str | Path, max_bytes: int = 512 * 2**20, reserve_bytes: int = RESERVE_BYTES) -> None:
        self.path = str(path)
        self.max_bytes = max_bytes
        self.reserve_bytes = reserve_bytes
        self.reserve_path = self.path + ".reserve"
        self._local = threading.local()
        self._lock = threading.Lock()  # the connection registry and the reserve
        self._connections: list[sqlite3.Connection] = []
        self._generation = 0
        self._reserve_retry_at = 0.0
        self._reserve_ok = False
        self._reserve_missing_logged = False
        try:
            db = self._db()
            self._ensure_incremental_vacuum(db)
            db.executescript(_SCHEMA)
            with self._transaction(db):
                if db.execute("SELECT 1 FROM counters WHERE name = 'bytes'").fetchone() is None:
                    total = db.execute(f"SELECT coalesce(sum({_ROW_BYTES}), 0) FROM outbox").fetchone()[0]
                    db.execute("INSERT INTO counters (name, value) VALUES ('bytes', ?)", (total,))
        except sqlite3.Error as exc:
            self.close()
            raise SpoolError(self.path, f"cannot open the spool ({exc}); move the file away to start "
                                        "a new one") from None
        self._take_reserve()

    # -- connections and transactions ------------------------------------------------------------------
    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None or getattr(self._local, "generation", -1) != self._generation:
            # check_same_thread=False only so that close() can close it; each thread uses its own
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # takes effect on a new file only
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # a committed row survives power loss
            db.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
            db.execute(f"PRAGMA journal_size_limit={WAL_CHECKPOINT_PAGES * 4096 * 2}")
            with self._lock:
                self._connections.append(db)
                self._local.generation = self._generation
            self._local.db = db
        return db

    @staticmethod
    @contextlib.contextmanager
    def _transaction(db: sqlite3.Connection) -> Iterator[None]:
        """One write transaction (the connections run in autocommit mode: each statement would
        otherwise commit on its own)."""
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _ensure_incremental_vacuum(self, db: sqlite3.Connection) -> None:
        """Spool files made before the full-disk reserve lack incremental auto-vacuum: convert them
        once (VACUUM) while they are small; a failure (e.g. no room for the copy) is not fatal."""
        if db.execute("PRAGMA auto_vacuum").fetchone()[0] != 0:
            return
        if db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
            return  # a new file: the connection's pragma applies when the schema is created
        try:
            if os.path.getsize(self.path) <= CONVERT_MAX_BYTES:
                db.execute("PRAGMA auto_vacuum=INCREMENTAL")
                db.execute("VACUUM")
        except (OSError, sqlite3.Error) as exc:
            event(log, "spool_vacuum_failed", logging.WARNING, path=self.path, error=str(exc))

    # -- the full-disk reserve ----------------------------------------------------------------------------
    @property
    def reserve_held(self) -> bool:
        """The reserve file is in place."""
        return os.path.exists(self.reserve_path)

    def _take_reserve(self) -> bool:
        """Preallocate the reserve file (atomically: a temporary file renamed); False if there is no
        room for it (or it cannot be made)."""
        if self.reserve_bytes <= 0:
            return True
        with self._lock:
            if os.path.exists(self.reserve_path):
                self._reserve_ok = True
                return True
            tmp = f"{self.reserve_path}.tmp"
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    os.posix_fallocate(fd, 0, self.reserve_bytes)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(tmp, self.reserve_path)
            except OSError:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                self._reserve_ok = False
                return False
            self._reserve_ok = True
            return True

    def _release_reserve(self) -> bool:
        """Give the reserve back to the file system; True if it was held."""
        with self._lock:
            self._reserve_ok = False
            try:
                os.unlink(self.reserve_path)
            except OSError:  # not there (already given back, or never taken)
                return False
        event(log, "spool_reserve_released", logging.WARNING, path=self.path, reserve_bytes=self.reserve_bytes)
        return True

    @staticmethod
    def _checkpoint(db: sqlite3.Connection) -> None:
        """Copy the WAL into the database and truncate it (gives the WAL's space back)."""
        with contextlib.suppress(sqlite3.Error):
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def _give_back_free_pages(self, db: sqlite3.Connection) -> None:
        """Return the database's free pages to the file system (incremental auto-vacuum)."""
        with contextlib.suppress(sqlite3.Error):
            self._checkpoint(db)
            db.executescript("PRAGMA incremental_vacuum;")
            self._checkpoint(db)

    def _restore_reserve(self, db: sqlite3.Connection, max_priority: int) -> None:
        """Take the reserve again after a full disk, dropping rows (at most ``max_priority``; -1:
        none) while the space they free is not enough."""
        dropped = 0
        while True:
            self._give_back_free_pages(db)
            if self._take_reserve():
                event(log, "spool_reserve_restored", path=self.path, dropped=dropped)
                self._reserve_missing_logged = False
                return
            try:
                more = self._drop_batch(max_priority=max_priority)
            except sqlite3.Error:
                more = False
            if not more:
                self._reserve_retry_at = time.monotonic() + RESERVE_RETRY_S
                if not self._reserve_missing_logged:
                    self._reserve_missing_logged = True
                    event(log, "spool_reserve_missing", logging.ERROR, path=self.path,
                          reserve_bytes=self.reserve_bytes, error="no room and nothing of lower priority to drop")
                return
            dropped += DROP_BATCH

    def _write(self, what: str, fn, max_priority: int) -> object:
        """Run the write transaction ``fn(db)``; on a full disk give back the reserve, then drop rows
        (at most ``max_priority``; None: drop nothing) until it fits. Raises :class:`SpoolFullError`."""
        db = self._db()
        tried = released = dropped = False
        while True:
            try:
                result = fn(db)
                break
            except sqlite3.OperationalError as exc:
                if not _disk_full(exc):
                    raise SpoolFullError(self.path, f"cannot {what}: {exc}") from None
                if not tried:  # first the reserve and the WAL's own space
                    tried = True
                    released = self._release_reserve()
                    self._checkpoint(db)
                    continue
                try:
                    made_room = max_priority is not None and self._drop_batch(max_priority=max_priority)
                except sqlite3.Error as drop_exc:
                    raise SpoolFullError(self.path, f"cannot {what}: {exc} (dropping: {drop_exc})") from None
                if not made_room:
                    raise SpoolFullError(self.path, f"cannot {what}: {exc}") from None
                dropped = True
                self._checkpoint(db)
        if self.reserve_bytes > 0 and (released or dropped):
            self._restore_reserve(db, -1 if max_priority is None else max_priority)
        elif self.reserve_bytes > 0 and not self._reserve_ok and time.monotonic() >= self._reserve_retry_at:
            self._restore_reserve(db, -1)  # missing since a full disk or since start: from free space only
        return result

    # -- the outbox ---------------------------------------------------------------------------------------
    def put(self, kind: str, topic: str, payload: bytes) -> int:
        """Commit one message; returns its id (ids grow: oldest first is id order).

        On a full disk (or file-size limit) the reserve is given back and rows are dropped by the
        same policy as the size bound, lowest priority first but never of a higher priority than
        the new row, and the insert is retried; :class:`SpoolFullError` if nothing can make room."""
        priority = PRIORITY.get(kind, 0)
        size = len(payload) + len(topic.encode()) + ROW_OVERHEAD_BYTES

        def insert(db: sqlite3.Connection) -> int:
            with self._transaction(db):
                cur = db.execute("INSERT INTO outbox (kind, priority, topic, payload, created) VALUES (?,?,?,?,?)",
                                 (kind, priority, topic, payload, time.time()))
                db.execute(_ADD, ("bytes", size))
            return int(cur.lastrowid)

        row = self._write(f"spool a {kind} message", insert, priority)
        self._enforce_size()
        return row  # type: ignore[return-value]

    def oldest(self, limit: int, exclude: set[int] | frozenset[int] = frozenset(),
               exclude_topics: set[str] | frozenset[str] = frozenset()) -> list[Message]:
        """The oldest messages, in the order they were spooled, skipping ids in ``exclude`` and
        messages to ``exclude_topics``."""
        topics = sorted(exclude_topics)
        where = f"WHERE topic NOT IN ({','.join('?' * len(topics))}) " if topics else ""
        rows = self._db().execute(f"SELECT id, kind, topic, payload, created FROM outbox {where}ORDER BY id LIMIT ?",
                                  (*topics, limit + len(exclude))).fetchall()
        return [Message(*r) for r in rows if r[0] not in exclude][:limit]

    def delete(self, ids: list[int]) -> int:
        """Delete acknowledged rows (one transaction); returns how many were still there (a row the
        size bound dropped meanwhile is not). On a full disk the reserve makes room for it (nothing
        is dropped for a delete)."""
        if not ids:
            return 0

        def remove(db: sqlite3.Connection) -> int:
            with self._transaction(db):
                return len(self._remove(db, ids))

        return self._write("delete acknowledged messages", remove, None)  # type: ignore[return-value]

    @staticmethod
    def _remove(db: sqlite3.Connection, ids: list[int]) -> list[int]:
        """Delete ``ids`` (inside the caller's transaction); returns those that were there."""
        freed = 0
        removed = []
        for i in ids:
            row = db.execute(f"SELECT {_ROW_BYTES} FROM outbox WHERE id = ?", (i,)).fetchone()
            if row is not None:
                freed += row[0]
                db.execute("DELETE FROM outbox WHERE id = ?", (i,))
                removed.append(i)
        db.execute(_ADD, ("bytes", -freed))
        return removed

    def depth(self) -> int:
        """Rows waiting (a count over the index: for diagnostics, not for every put)."""
        return int(self._db().execute("SELECT count(*) FROM outbox").fetchone()[0])

    def oldest_age_s(self) -> float | None:
        """Age [s] of the oldest spooled row (one primary-key lookup)."""
        row = self._db().execute("SELECT created FROM outbox ORDER BY id LIMIT 1").fetchone()
        return None if row is None else time.time() - row[0]

    def dropped(self) -> int:
        """Rows dropped by the size bound since the spool file was created (all kinds)."""
        return sum(self.dropped_by_kind().values())

    def dropped_by_kind(self) -> dict[str, int]:
        rows = self._db().execute("SELECT name, value FROM counters WHERE name LIKE 'dropped:%'").fetchall()
        return {name.split(":", 1)[1]: int(value) for name, value in rows}

    def size_bytes(self) -> int:
        """Bytes the spooled rows account for (what ``max_bytes`` bounds)."""
        return int(self._db().execute("SELECT value FROM counters WHERE name = 'bytes'").fetchone()[0])

    def integrity_ok(self) -> bool:
        """SQLite's own full check of the file (slow on a big spool: for tests and tools)."""
        return self._db().execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    def _enforce_size(self) -> None:
        while self.size_bytes() > self.max_bytes:
            try:
                if not self._drop_batch():
                    return
            except sqlite3.OperationalError:
                return  # a full disk now: the next put makes room through the reserve

    def _drop_batch(self, max_priority: int | None = None) -> bool:
        """Drop the oldest rows of the lowest priority present (at most ``max_priority``), counted
        per kind; False if there was nothing to drop. Selection, deletion and counters are one
        transaction: a row another thread deletes meanwhile (acknowledged) is never counted as
        dropped."""
        db = self._db()
        with self._transaction(db):
            victims = db.execute("SELECT id, kind, priority FROM outbox WHERE priority = "
                                 "(SELECT min(priority) FROM outbox) ORDER BY priority, id LIMIT ?",
                                 (DROP_BATCH,)).fetchall()
            if not victims or (max_priority is not None and victims[0][2] > max_priority):
                return False
            kinds = {i: kind for i, kind, _ in victims}
            counts: dict[str, int] = {}
            for i in self._remove(db, list(kinds)):
                counts[kinds[i]] = counts.get(kinds[i], 0) + 1
            db.executemany(_ADD, [(f"dropped:{k}", n) for k, n in counts.items()])
        return True

    def close(self) -> None:
        """Close every thread's connection (a thread that uses the spool afterwards opens a new one)."""
        with self._lock:
            connections, self._connections = self._connections, []
            self._generation += 1
        for db in connections:
            with contextlib.suppress(sqlite3.Error):
                db.close()
        self._local.db = None

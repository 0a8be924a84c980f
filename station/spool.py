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
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from station.configschema import ConfigError


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


@dataclass(frozen=True)
class Message:
    id: int
    kind: str
    topic: str
    payload: bytes
    created: float  # Unix time [s] when spooled


class Spool:
    """Thread-safe: each thread gets its own connection to the same file."""

    def __init__(self, path: str | Path, max_bytes: int = 512 * 2**20) -> None:
        self.path = str(path)
        self.max_bytes = max_bytes
        self._local = threading.local()
        try:
            db = self._db()
            db.executescript(_SCHEMA)
            with db:
                if db.execute("SELECT 1 FROM counters WHERE name = 'bytes'").fetchone() is None:
                    total = db.execute(f"SELECT coalesce(sum({_ROW_BYTES}), 0) FROM outbox").fetchone()[0]
                    db.execute("INSERT INTO counters (name, value) VALUES ('bytes', ?)", (total,))
        except sqlite3.Error as exc:
            self.close()
            raise SpoolError(self.path, f"cannot open the spool ({exc}); move the file away to start "
                                        "a new one") from None

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # a committed row survives power loss
            self._local.db = db
        return db

    def put(self, kind: str, topic: str, payload: bytes) -> int:
        """Commit one message; returns its id (ids grow: oldest first is id order).

        On a full disk (or file-size limit) rows are dropped by the same policy as the size bound,
        lowest priority first but never of a higher priority than the new row, and the insert is
        retried; :class:`SpoolFullError` if nothing can make room."""
        db = self._db()
        priority = PRIORITY.get(kind, 0)
        while True:
            try:
                with db:
                    cur = db.execute("INSERT INTO outbox (kind, priority, topic, payload, created) VALUES (?,?,?,?,?)",
                                     (kind, priority, topic, payload, time.time()))
                    db.execute(_ADD, ("bytes", len(payload) + len(topic.encode()) + ROW_OVERHEAD_BYTES))
                break
            except sqlite3.OperationalError as exc:
                if "full" not in str(exc).lower() or not self._drop_batch(max_priority=priority):
                    raise SpoolFullError(self.path, f"cannot spool a {kind} message: {exc}") from None
        self._enforce_size()
        return int(cur.lastrowid)

    def oldest(self, limit: int, exclude: set[int] | frozenset[int] = frozenset(),
               exclude_topics: set[str] | frozenset[str] = frozenset()) -> list[Message]:
        """The oldest messages, in the order they were spooled, skipping ids in ``exclude`` and
        messages to ``exclude_topics``."""
        topics = sorted(exclude_topics)
        where = f"WHERE topic NOT IN ({','.join('?' * len(topics))}) " if topics else ""
        rows = self._db().execute(f"SELECT id, kind, topic, payload, created FROM outbox {where}ORDER BY id LIMIT ?",
                                  (*topics, limit + len(exclude))).fetchall()
        return [Message(*r) for r in rows if r[0] not in exclude][:limit]

    def delete(self, ids: list[int]) -> None:
        if ids:
            db = self._db()
            with db:
                self._remove(db, ids)

    @staticmethod
    def _remove(db: sqlite3.Connection, ids: list[int]) -> None:
        freed = 0
        for i in ids:
            row = db.execute(f"SELECT {_ROW_BYTES} FROM outbox WHERE id = ?", (i,)).fetchone()
            if row is not None:
                freed += row[0]
                db.execute("DELETE FROM outbox WHERE id = ?", (i,))
        db.execute(_ADD, ("bytes", -freed))

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
            if not self._drop_batch():
                return

    def _drop_batch(self, max_priority: int | None = None) -> bool:
        """Drop the oldest rows of the lowest priority present (at most ``max_priority``), counted
        per kind; False if there was nothing to drop."""
        db = self._db()
        victims = db.execute("SELECT id, kind, priority FROM outbox WHERE priority = "
                             "(SELECT min(priority) FROM outbox) ORDER BY priority, id LIMIT ?",
                             (DROP_BATCH,)).fetchall()
        if not victims or (max_priority is not None and victims[0][2] > max_priority):
            return False
        counts: dict[str, int] = {}
        for _, kind, _ in victims:
            counts[kind] = counts.get(kind, 0) + 1
        with db:
            self._remove(db, [v[0] for v in victims])
            db.executemany(_ADD, [(f"dropped:{k}", n) for k, n in counts.items()])
        return True

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

"""The durable store: SQLite in WAL mode, one writer (the event loop's thread).

Every acknowledged change is committed here before an RPC returns or a webhook is answered. The
append-only ``events`` table is the Tail log: its AUTOINCREMENT row id is the global sequence, which
is never reused, also after retention pruning.

Durability is split in two so the event loop never waits on the disk: ``commit`` writes the
transaction to the WAL (``synchronous=NORMAL``: it survives a crash of the process), and
``flush`` makes everything committed so far survive a crash of the machine, with one fsync of the
WAL in a worker thread shared by everyone waiting (group commit). Whoever acknowledges something
(an RPC, a webhook reply, a dial) awaits ``flush`` first.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from providers.base import CallMode, Direction, EndReason

from .domain import CallEvent, CallRecord, CallState, EventKind, Speaker, TranscriptEntry, TurnLatency

SCHEMA_VERSION = 1

_MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE calls (
        call_id TEXT PRIMARY KEY,
        provider TEXT NOT NULL,
        provider_call_id TEXT,
        terminal INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        ended_at TEXT,
        record TEXT NOT NULL
    );
    CREATE INDEX calls_provider_call_id ON calls(provider_call_id);
    CREATE INDEX calls_terminal_created ON calls(terminal, created_at);
    CREATE INDEX calls_created ON calls(created_at);
    CREATE TABLE transcript (
        call_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        time TEXT NOT NULL,
        speaker TEXT NOT NULL,
        text TEXT NOT NULL,
        is_final INTEGER NOT NULL,
        PRIMARY KEY (call_id, idx)
    );
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        call_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        time TEXT NOT NULL,
        data TEXT NOT NULL
    );
    CREATE INDEX events_call_seq ON events(call_id, seq);
    CREATE TABLE dedupe (
        key TEXT PRIMARY KEY,
        call_id TEXT,
        created_at REAL NOT NULL
    );
    CREATE TABLE requests (
        request_id TEXT PRIMARY KEY,
        method TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        result TEXT,
        created_at REAL NOT NULL
    );
    """,
}


@dataclass(frozen=True, slots=True)
class StoredRequest:
    request_id: str
    method: str
    fingerprint: str
    result: dict[str, Any] | None
    created_at: float


def _ts(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def record_to_json(rec: CallRecord) -> str:
    return json.dumps(
        {
            "call_id": rec.call_id,
            "provider": rec.provider,
            "direction": rec.direction.value,
            "state": rec.state.value,
            "from_number": rec.from_number,
            "to_number": rec.to_number,
            "mode": rec.mode.value,
            "created_at": _ts(rec.created_at),
            "provider_call_id": rec.provider_call_id,
            "session_key": rec.session_key,
            "answered_at": _ts(rec.answered_at),
            "ended_at": _ts(rec.ended_at),
            "end_reason": rec.end_reason.value if rec.end_reason else None,
            "initial_message": rec.initial_message,
            "stream_token": rec.stream_token,
            "answered_by": rec.answered_by,
            "turn_latencies": [
                {
                    "turn": t.turn,
                    "total_ms": t.total_ms,
                    "listen_wait_ms": t.listen_wait_ms,
                    "stages": t.stages,
                }
                for t in rec.turn_latencies
            ],
            "metadata": rec.metadata,
        },
        separators=(",", ":"),
    )


def record_from_json(text: str, transcript: list[TranscriptEntry]) -> CallRecord:
    d = json.loads(text)
    created = _dt(d["created_at"])
    assert created is not None
    return CallRecord(
        call_id=d["call_id"],
        provider=d["provider"],
        direction=Direction(d["direction"]),
        state=CallState(d["state"]),
        from_number=d["from_number"],
        to_number=d["to_number"],
        mode=CallMode(d["mode"]),
        created_at=created,
        provider_call_id=d.get("provider_call_id"),
        session_key=d.get("session_key", ""),
        answered_at=_dt(d.get("answered_at")),
        ended_at=_dt(d.get("ended_at")),
        end_reason=EndReason(d["end_reason"]) if d.get("end_reason") else None,
        transcript=transcript,
        initial_message=d.get("initial_message", ""),
        stream_token=d.get("stream_token"),
        answered_by=d.get("answered_by", ""),
        turn_latencies=[TurnLatency(**t) for t in d.get("turn_latencies", [])],
        metadata=d.get("metadata", {}),
    )


# Past this much WAL the sync rounds checkpoint (PASSIVE: the event loop keeps committing) until
# a checkpoint catches up and SQLite starts the WAL again from its beginning.
_CHECKPOINT_WAL_BYTES = 4 * 1024 * 1024
# Under writes that never pause, no PASSIVE checkpoint catches up and the WAL would grow without
# bound; past this size one checkpoint waits for the writer, copies the rest and truncates the file.
_TRUNCATE_WAL_BYTES = 64 * 1024 * 1024
# The wal-index header (https://www.sqlite.org/walformat.html, in the -shm file, native byte
# order): mxFrame, the last valid WAL frame, and nBackfill, the frames already checkpointed.
_SHM_MX_FRAME = slice(16, 20)
_SHM_BACKFILLED = slice(96, 100)
_WAL_FRAME_HEADER = 24


class Store:
    """SQLite-backed store. Reads and commits run on the event loop's thread; only the sync rounds
    (fsync, and checkpoints on their own connection) run in a worker thread, one round at a time."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.path = directory / "voicecall.sqlite3"
        self._wal = Path(f"{self.path}-wal")
        self._shm = Path(f"{self.path}-shm")
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL: no fsync per commit (checkpoints still sync); flush() provides the fsync.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=5000")
        # SQLite would checkpoint inside whichever COMMIT crosses 1,000 WAL pages, syncing the
        # database file on the event loop; the sync rounds checkpoint in their thread instead.
        self._db.execute("PRAGMA wal_autocheckpoint=0")
        self._frame_bytes = int(self._db.execute("PRAGMA page_size").fetchone()[0]) + _WAL_FRAME_HEADER
        self._checkpointer: sqlite3.Connection | None = None
        # Checkpoints run by the sync rounds, by mode (read by the metrics at scrape time).
        self.checkpoints: dict[str, int] = {"passive": 0, "truncate": 0}
        # Held by a sync round while it checkpoints, and by close(): a round still running in its
        # thread at shutdown finishes before the connections close, and none starts after.
        self._checkpoint_lock = threading.Lock()
        self._closed = False
        self._commits = 0
        self._synced = 0
        self._syncing: asyncio.Future[None] | None = None
        self._dir_synced = False
        self._migrate()
        self._fsync()
        self._synced = self._commits

    def close(self) -> None:
        if self._commits > self._synced:
            self._fsync()  # shutting down: waiting on the disk here costs nobody anything
            self._synced = self._commits
        with self._checkpoint_lock:
            self._closed = True
            if self._checkpointer is not None:
                self._checkpointer.close()
                self._checkpointer = None
        self._db.close()  # the last connection to close checkpoints the WAL and removes it

    # -- durability -------------------------------------------------------------------------------
    def _fsync(self) -> None:
        """Sync the WAL (where commits land) and, once, the directory holding it."""
        for target in (self._wal, self.path):
            try:
                fd = os.open(target, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        if not self._dir_synced:
            fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            self._dir_synced = True

    def wal_backlog_bytes(self) -> int:
        """Bytes of WAL not yet copied into the database. Not the WAL file's size: SQLite never
        shrinks the file after a checkpoint, it writes it again from the start."""
        frames, backfilled = self._wal_frames()
        return max(0, frames - backfilled) * self._frame_bytes

    def wal_bytes(self) -> int:
        """The WAL in use since SQLite last started it from the beginning (the file may be larger)."""
        return self._wal_frames()[0] * self._frame_bytes

    def _wal_frames(self) -> tuple[int, int]:
        """(mxFrame, nBackfill) from the wal-index header; (0, 0) when there is none to read."""
        try:
            with open(self._shm, "rb") as shm:
                head = shm.read(_SHM_BACKFILLED.stop)
            return (
                int.from_bytes(head[_SHM_MX_FRAME], sys.byteorder),
                int.from_bytes(head[_SHM_BACKFILLED], sys.byteorder),
            )
        except (OSError, ValueError):
            return 0, 0

    def _checkpoint_if_large(self) -> None:
        """Copy the WAL back into the database once it is long (in the sync thread, on its own
        connection: the event loop's connection keeps committing meanwhile)."""
        size = self.wal_bytes()
        if size < _CHECKPOINT_WAL_BYTES:
            return
        mode = "TRUNCATE" if size >= _TRUNCATE_WAL_BYTES else "PASSIVE"
        with self._checkpoint_lock:
            if self._closed:
                return
            if self._checkpointer is None:
                self._checkpointer = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                self._checkpointer.execute("PRAGMA busy_timeout=5000")
            self._checkpointer.execute(f"PRAGMA wal_checkpoint({mode})")
            self.checkpoints[mode.lower()] += 1

    def _sync_and_checkpoint(self) -> None:
        self._fsync()
        self._checkpoint_if_large()

    @property
    def unsynced(self) -> int:
        """Commits not yet known to be on disk."""
        return self._commits - self._synced

    async def flush(self) -> None:
        """Return once every commit made before the call is on disk (one shared fsync per round)."""
        target = self._commits
        while self._synced < target:
            if self._syncing is None:
                self._syncing = asyncio.get_running_loop().create_future()
                asyncio.get_running_loop().create_task(self._sync_round(self._syncing))
            await asyncio.shield(self._syncing)

    async def _sync_round(self, done: asyncio.Future[None]) -> None:
        upto = self._commits
        try:
            await asyncio.to_thread(self._sync_and_checkpoint)
            self._synced = max(self._synced, upto)
            done.set_result(None)
        except BaseException as err:
            done.set_exception(err)
            done.exception()
            raise
        finally:
            self._syncing = None

    # -- schema ---------------------------------------------------------------------------------
    def _migrate(self) -> None:
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"store {self.path} has schema version {version}, newer than this voicecall ({SCHEMA_VERSION});"
                " upgrade voicecall or point `store` at another directory"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            with self._tx():
                for statement in _MIGRATIONS[target].split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version={target}")

    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _tx(self) -> _Transaction:
        return _Transaction(self)

    # -- writes ---------------------------------------------------------------------------------
    def commit(
        self,
        record: CallRecord | None,
        *,
        events: Sequence[CallEvent] = (),
        transcript_added: Sequence[TranscriptEntry] = (),
        dedupe_keys: Iterable[str] = (),
        request: tuple[str, str, str, dict[str, Any] | None] | None = None,
    ) -> list[CallEvent]:
        """Write a call change atomically; return the events with their sequence numbers."""
        stored: list[CallEvent] = []
        now = time.time()
        with self._tx():
            if record is not None:
                self._db.execute(
                    "INSERT INTO calls(call_id, provider, provider_call_id, terminal, created_at, ended_at, record)"
                    " VALUES(?,?,?,?,?,?,?) ON CONFLICT(call_id) DO UPDATE SET"
                    " provider_call_id=excluded.provider_call_id, terminal=excluded.terminal,"
                    " ended_at=excluded.ended_at, record=excluded.record",
                    (
                        record.call_id,
                        record.provider,
                        record.provider_call_id,
                        int(record.terminal),
                        _ts(record.created_at),
                        _ts(record.ended_at),
                        record_to_json(record),
                    ),
                )
                if transcript_added:
                    base = len(record.transcript) - len(transcript_added)
                    self._db.executemany(
                        "INSERT OR REPLACE INTO transcript(call_id, idx, time, speaker, text, is_final)"
                        " VALUES(?,?,?,?,?,?)",
                        [
                            (record.call_id, base + i, _ts(e.time), e.speaker.value, e.text, int(e.is_final))
                            for i, e in enumerate(transcript_added)
                        ],
                    )
            for key in dedupe_keys:
                self._db.execute(
                    "INSERT OR IGNORE INTO dedupe(key, call_id, created_at) VALUES(?,?,?)",
                    (key, record.call_id if record else None, now),
                )
            for ev in events:
                cur = self._db.execute(
                    "INSERT INTO events(call_id, kind, time, data) VALUES(?,?,?,?)",
                    (ev.call_id, ev.kind.value, _ts(ev.time), json.dumps(ev.data, separators=(",", ":"))),
                )
                assert cur.lastrowid is not None
                stored.append(CallEvent(ev.call_id, ev.kind, ev.time, ev.data, cur.lastrowid))
            if request is not None:
                request_id, method, fingerprint, result = request
                self._db.execute(
                    "INSERT INTO requests(request_id, method, fingerprint, result, created_at) VALUES(?,?,?,?,?)"
                    " ON CONFLICT(request_id) DO UPDATE SET result=excluded.result",
                    (
                        request_id,
                        method,
                        fingerprint,
                        json.dumps(result) if result is not None else None,
                        now,
                    ),
                )
        return stored

    def put_request(
        self, request_id: str, method: str, fingerprint: str, result: dict[str, Any] | None
    ) -> None:
        self.commit(None, request=(request_id, method, fingerprint, result))

    # -- reads ----------------------------------------------------------------------------------
    def _transcript(self, call_id: str) -> list[TranscriptEntry]:
        rows = self._db.execute(
            "SELECT time, speaker, text, is_final FROM transcript WHERE call_id=? ORDER BY idx", (call_id,)
        ).fetchall()
        return [TranscriptEntry(datetime.fromisoformat(t), Speaker(s), x, bool(f)) for t, s, x, f in rows]

    def _load(self, row: tuple[str, str] | None) -> CallRecord | None:
        if row is None:
            return None
        call_id, text = row
        return record_from_json(text, self._transcript(call_id))

    def get_call(self, call_id: str) -> CallRecord | None:
        return self._load(
            self._db.execute("SELECT call_id, record FROM calls WHERE call_id=?", (call_id,)).fetchone()
        )

    def find_by_provider_call_id(self, provider_call_id: str) -> CallRecord | None:
        row = self._db.execute(
            "SELECT call_id, record FROM calls WHERE provider_call_id=? ORDER BY created_at DESC LIMIT 1",
            (provider_call_id,),
        ).fetchone()
        return self._load(row)

    def live_calls(self) -> list[CallRecord]:
        rows = self._db.execute(
            "SELECT call_id, record FROM calls WHERE terminal=0 ORDER BY created_at"
        ).fetchall()
        return [r for r in (self._load(row) for row in rows) if r is not None]

    def list_calls(self, *, live_only: bool, limit: int, before: tuple[str, str] | None) -> list[CallRecord]:
        """Newest first; ``before`` = (created_at iso, call_id) of the last call of the previous page."""
        clauses, args = [], []
        if live_only:
            clauses.append("terminal=0")
        if before is not None:
            clauses.append("(created_at < ? OR (created_at = ? AND call_id < ?))")
            args += [before[0], before[0], before[1]]
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._db.execute(
            f"SELECT call_id, record FROM calls {where} ORDER BY created_at DESC, call_id DESC LIMIT ?",  # noqa: S608
            (*args, limit),
        ).fetchall()
        return [r for r in (self._load(row) for row in rows) if r is not None]

    def has_dedupe_key(self, key: str) -> bool:
        return self._db.execute("SELECT 1 FROM dedupe WHERE key=?", (key,)).fetchone() is not None

    def get_request(self, request_id: str) -> StoredRequest | None:
        row = self._db.execute(
            "SELECT request_id, method, fingerprint, result, created_at FROM requests WHERE request_id=?",
            (request_id,),
        ).fetchone()
        if row is None:
            return None
        return StoredRequest(row[0], row[1], row[2], json.loads(row[3]) if row[3] else None, row[4])

    def events_after(self, sequence: int, *, call_id: str = "", limit: int = 500) -> list[CallEvent]:
        if call_id:
            rows = self._db.execute(
                "SELECT seq, call_id, kind, time, data FROM events WHERE call_id=? AND seq>? ORDER BY seq LIMIT ?",
                (call_id, sequence, limit),
            ).fetchall()
        else:
            rows = self._db.execute(
                "SELECT seq, call_id, kind, time, data FROM events WHERE seq>? ORDER BY seq LIMIT ?",
                (sequence, limit),
            ).fetchall()
        return [
            CallEvent(c, EventKind(k), datetime.fromisoformat(t), json.loads(d), s) for s, c, k, t, d in rows
        ]

    def last_sequence(self) -> int:
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name='events'").fetchone()
        return int(row[0]) if row else 0

    def count_calls(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM calls").fetchone()[0])

    # -- retention ------------------------------------------------------------------------------
    def prune(self, *, ended_before: datetime | None, requests_before: float) -> int:
        """Delete ended calls older than ``ended_before`` (with their transcript, events and dedupe
        keys) and idempotency records older than ``requests_before``; return calls deleted."""
        with self._tx():
            self._db.execute("DELETE FROM requests WHERE created_at < ?", (requests_before,))
            if ended_before is None:
                return 0
            ids = [
                r[0]
                for r in self._db.execute(
                    "SELECT call_id FROM calls WHERE terminal=1 AND ended_at < ?", (_ts(ended_before),)
                ).fetchall()
            ]
            for table in ("transcript", "events", "dedupe", "calls"):
                self._db.executemany(f"DELETE FROM {table} WHERE call_id=?", [(i,) for i in ids])  # noqa: S608
        return len(ids)


class _Transaction:
    def __init__(self, store: Store) -> None:
        self._store = store

    def __enter__(self) -> None:
        self._store._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type:
            self._store._db.execute("ROLLBACK")
            return
        self._store._db.execute("COMMIT")
        self._store._commits += 1

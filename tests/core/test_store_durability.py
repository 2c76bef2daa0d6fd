"""Commits never wait on the disk; whoever acknowledges awaits one shared fsync first."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import aiohttp
import pytest

from providers.base import CallMode, Direction
from voicecall_client.v1 import voicecall_service_pb2 as pb
from voicecall_server import store as store_module
from voicecall_server.domain import CallRecord, CallState, utcnow
from voicecall_server.store import Store

from ..e2e.harness import make_config, start


def record(call_id: str) -> CallRecord:
    return CallRecord(
        call_id, "mock", Direction.OUTBOUND, CallState.INITIATED, "+1", "+2", CallMode.NOTIFY, utcnow()
    )


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = os.fsync

    def counting(fd: int) -> None:
        calls.append(threading.current_thread().name)
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    return calls


async def test_commit_does_not_sync_and_flush_does_once_for_all_waiters(
    tmp_path: Path, fsyncs: list[str]
) -> None:
    store = Store(tmp_path / "s")
    try:
        fsyncs.clear()
        for i in range(5):
            store.commit(record(f"c{i}"))
        assert fsyncs == []  # nothing on the event loop's thread waits for the disk
        assert store.unsynced == 5
        await asyncio.gather(*(store.flush() for _ in range(10)))
        assert store.unsynced == 0
        rounds = len(fsyncs)
        assert 0 < rounds <= 3  # one round (WAL, db file, directory at most), shared by ten waiters
        assert all(name != threading.main_thread().name for name in fsyncs)
        await store.flush()  # nothing new: no disk work
        assert len(fsyncs) == rounds
    finally:
        store.close()


async def test_rpc_and_webhook_answers_come_after_the_flush(tmp_path: Path) -> None:
    running = await start(make_config(tmp_path / "s", mock={"answerAfterMs": 60_000}))
    try:
        store = running.sidecar.store
        call = await running.stub.Initiate(
            pb.InitiateRequest(to_number="+15551230001", message="Hi", mode=pb.CALL_MODE_CONVERSATION)
        )
        assert store.unsynced == 0
        event = {"type": "call.dtmf", "callId": call.call_id, "digits": "4", "id": "k1"}
        async with (
            aiohttp.ClientSession() as http,
            http.post(running.webhook_url, json={"events": [event]}) as r,
        ):
            assert r.status == 200
            assert store.unsynced == 0
    finally:
        await running.close()


def size(path: Path | str) -> int:
    return os.stat(path).st_size


def commit_past_the_checkpoint_threshold(store: Store) -> None:
    """~6 MB of WAL in 120 commits: past the sync rounds' 4 MB and SQLite's 1,000-page default."""
    for i in range(120):
        rec = record(f"c{i}")
        rec.metadata = {"blob": f"{i:04d}" * 12_500}
        store.commit(rec)


async def test_the_wal_is_checkpointed_by_the_sync_rounds_not_inside_a_commit(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    try:
        db_size = size(store.path)
        commit_past_the_checkpoint_threshold(store)
        # A checkpoint copies pages into the database file (and syncs it): none ran on this thread.
        assert size(store.path) == db_size
        assert size(f"{store.path}-wal") > 4 * 1024 * 1024
        await store.flush()
        assert size(store.path) > db_size + 4 * 1024 * 1024
        got = store.get_call("c119")
        assert got is not None and got.metadata == {"blob": "0119" * 12_500}
    finally:
        store.close()


async def test_a_small_commit_after_a_checkpoint_does_not_checkpoint_again(tmp_path: Path) -> None:
    # The WAL file keeps its size after a checkpoint (SQLite rewrites it from the start), so its
    # size cannot tell the rounds when to checkpoint: only the frames written since can.
    store = Store(tmp_path / "s")
    try:
        commit_past_the_checkpoint_threshold(store)
        assert store.wal_backlog_bytes() > 4 * 1024 * 1024
        await store.flush()
        assert store.wal_backlog_bytes() == 0
        assert size(f"{store.path}-wal") > 4 * 1024 * 1024
        store.commit(record("small"))
        await store.flush()
        assert 0 < store.wal_backlog_bytes() < 64 * 1024  # synced, and left in the WAL
        assert store.get_call("small") is not None
    finally:
        store.close()


async def test_a_wal_past_the_hard_limit_is_checkpointed_whole_and_truncated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Writes that never pause leave every PASSIVE checkpoint behind, and SQLite only starts the
    # WAL again after one catches up: past the hard limit a checkpoint waits for the writer.
    monkeypatch.setattr(store_module, "_TRUNCATE_WAL_BYTES", 5 * 1024 * 1024)
    store = Store(tmp_path / "s")
    try:
        commit_past_the_checkpoint_threshold(store)
        assert size(f"{store.path}-wal") > 5 * 1024 * 1024
        await store.flush()
        assert size(f"{store.path}-wal") == 0
        assert store.wal_bytes() == 0
        got = store.get_call("c119")
        assert got is not None and got.metadata == {"blob": "0119" * 12_500}
    finally:
        store.close()


async def test_closing_while_a_sync_round_checkpoints_is_safe(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    commit_past_the_checkpoint_threshold(store)  # so the round will checkpoint
    flushing = asyncio.create_task(store.flush())
    await asyncio.sleep(0)  # the round is handed to its thread
    store.close()  # shutdown does not wait for the loop: it must not pull the connection away
    await flushing
    assert store._checkpointer is None  # and the round did not open one after the close (a leak)
    reopened = Store(tmp_path / "s")
    try:
        got = reopened.get_call("c119")
        assert got is not None and got.metadata == {"blob": "0119" * 12_500}
    finally:
        reopened.close()

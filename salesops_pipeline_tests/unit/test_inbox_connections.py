"""The SQLite inbox's connections: each thread keeps one open between uses, and opens it again
when the file was replaced or a use failed; a use nested in another gets a connection of its
own; the threads of one process write one after the other without SQLite's busy waits."""

import sqlite3
import threading

import pytest

from salesops_pipeline.post_call.inbox import Inbox
from salesops_pipeline.post_call.storage import SQLiteStore


def _store(path) -> SQLiteStore:
    def schema(conn):
        conn.execute("CREATE TABLE IF NOT EXISTS counter (n INTEGER NOT NULL)")

    return SQLiteStore(path, schema)


def test_a_thread_keeps_its_connection_and_another_thread_has_its_own(tmp_path):
    store = _store(tmp_path / "inbox.sqlite")
    with store.connect() as first:
        pass
    with store.connect() as again:
        assert again is first
    seen = []
    thread = threading.Thread(target=lambda: seen.append(store.connect().__enter__()))
    thread.start()
    thread.join()
    assert seen and seen[0] is not first


def test_a_file_removed_and_made_anew_is_opened_anew(tmp_path):
    path = tmp_path / "inbox.sqlite"
    inbox = Inbox(path)
    inbox.accept("call-1", '{"callId": "call-1", "contactId": "c1"}')
    assert inbox.get("call-1") is not None
    # A reset: the file removed, and made anew by another handle, as another process would.
    for suffix in ("", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    Inbox(path).accept("call-2", '{"callId": "call-2", "contactId": "c2"}')
    assert inbox.get("call-1") is None
    assert inbox.get("call-2") is not None


def test_a_use_nested_in_a_transaction_reads_only_what_is_committed(tmp_path):
    store = _store(tmp_path / "inbox.sqlite")
    with store.transaction() as conn:
        conn.execute("INSERT INTO counter (n) VALUES (1)")
        with store.connect() as nested:
            assert nested is not conn
            assert nested.execute("SELECT COUNT(*) FROM counter").fetchone()[0] == 0
    with store.connect() as conn:
        assert conn.execute("SELECT COUNT(*) FROM counter").fetchone()[0] == 1


def test_a_connection_whose_use_failed_is_not_used_again(tmp_path):
    store = _store(tmp_path / "inbox.sqlite")
    with store.connect() as first:
        pass
    with pytest.raises(sqlite3.OperationalError), store.connect() as conn:
        conn.execute("SELECT * FROM no_such_table")
    with store.connect() as after:
        assert after is not first
    with pytest.raises(RuntimeError), store.transaction() as conn:
        conn.execute("INSERT INTO counter (n) VALUES (1)")
        raise RuntimeError("the decision failed")
    with store.connect() as conn:
        assert conn.execute("SELECT COUNT(*) FROM counter").fetchone()[0] == 0


def test_threads_of_one_process_write_in_turn_and_lose_nothing(tmp_path):
    store = _store(tmp_path / "inbox.sqlite")
    errors = []

    def write(times: int) -> None:
        try:
            for _ in range(times):
                with store.transaction() as conn:
                    conn.execute("INSERT INTO counter (n) VALUES (1)")
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=write, args=(50,)) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with store.connect() as conn:
        assert conn.execute("SELECT COUNT(*) FROM counter").fetchone()[0] == 300

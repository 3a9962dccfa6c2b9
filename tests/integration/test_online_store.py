"""Every online store, real ones only: SQLite on a temporary file and a real redis-server.

The suite runs once per store (the ``store`` parameter): writes and reads, the batch-id
guard against replayed micro-batches, readers racing a writer, and a writer killed with
SIGKILL in the middle of big batches. Store-specific cases (a read-only SQLite file that
does not exist yet, an unreachable or password-protected Redis) follow.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sparktf.config import OnlineConfig
from sparktf.errors import ConfigError, DataError, EnvironmentCheckError, SchemaError
from sparktf.online.store import OnlineStore, RedisStore, SQLiteStore, UserState, open_store
from tests.redis_support import start_redis

REPO = Path(__file__).resolve().parents[2]


def state(user_id: str, batch_id: int, n_items: int = 3) -> UserState:
    """A state whose every field is derived from (user, batch), so a read can check it is whole."""
    return UserState(
        user_id=user_id,
        items=tuple(f"{batch_id}:{user_id}:{k}" for k in range(n_items)),
        session_id=f"{user_id}:live-{batch_id}",
        session_start=1_700_000_000.25 + batch_id,
        last_event_time=1_700_000_000.5 + batch_id,
        last_ack_time=1_700_000_000.75 + batch_id,
        events=batch_id + 1,
        batch_id=batch_id,
    )


def assert_whole(s: UserState) -> None:
    assert s == state(s.user_id, s.batch_id, len(s.items)), s


@dataclass
class Backend:
    """One store kind: how to open its writer and readers here and in a child process."""

    kind: str
    open_writer: Callable[[], OnlineStore]
    open_reader: Callable[[], OnlineStore]
    child_code: str  # Python that binds `store` to a writer
    opened: list[OnlineStore] = field(default_factory=list)

    def writer(self) -> OnlineStore:
        self.opened.append(self.open_writer())
        return self.opened[-1]

    def reader(self) -> OnlineStore:
        self.opened.append(self.open_reader())
        return self.opened[-1]


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        path = str(tmp_path / "online" / "online.db")
        backend = Backend(
            "sqlite",
            lambda: SQLiteStore(path),
            lambda: SQLiteStore(path, readonly=True),
            f"store = SQLiteStore({path!r})",
        )
    else:
        url = request.getfixturevalue("redis_server")
        prefix = f"t-{uuid.uuid4().hex[:12]}"  # the tests share one server
        backend = Backend(
            "redis",
            lambda: RedisStore(url, prefix),
            lambda: RedisStore(url, prefix),
            f"store = RedisStore({url!r}, {prefix!r})",
        )
    try:
        yield backend
    finally:
        for s in backend.opened:
            s.close()


# --------------------------------------------------------------------------- the contract, per store


def test_empty_store_reads_as_empty(store: Backend) -> None:
    s = store.writer()
    assert s.last_batch_id() == -1
    assert s.get("nobody") is None
    assert s.get_many(["nobody", "none"]) == {}
    assert s.get_many([]) == {}
    assert s.user_count() == 0


def test_apply_then_read(store: Backend) -> None:
    s = store.writer()
    states = [state(f"u{i}", 0) for i in range(5)] + [state("no-items", 0, n_items=0)]
    assert s.apply(0, states) is True
    assert s.last_batch_id() == 0
    assert s.get("u3") == states[3]
    assert s.get("no-items") == states[-1]
    assert s.get("u9") is None
    got = s.get_many(["u1", "u4", "u9", "u1"])
    assert dict(got) == {"u1": states[1], "u4": states[4]}
    assert s.user_count() == 6
    # a second handle (the server's) sees the same
    r = store.reader()
    assert r.get("u3") == states[3] and r.last_batch_id() == 0 and r.user_count() == 6


def test_replayed_or_older_batch_changes_nothing(store: Backend) -> None:
    s = store.writer()
    assert s.apply(5, [state("a", 5), state("b", 5)])
    assert s.apply(5, [state("a", 5, n_items=1), state("c", 5)]) is False  # a replay
    assert s.apply(2, [state("a", 2), state("d", 2)]) is False  # an older batch
    assert s.last_batch_id() == 5
    assert s.get("a") == state("a", 5)
    assert s.get("c") is None and s.get("d") is None
    assert s.user_count() == 2
    assert s.apply(6, []) is True  # an empty batch still advances the batch id
    assert s.last_batch_id() == 6


def test_later_batch_replaces_state(store: Backend) -> None:
    s = store.writer()
    s.apply(0, [state("a", 0, n_items=5), state("b", 0)])
    s.apply(3, [state("a", 3, n_items=2), state("c", 3)])
    assert s.get("a") == state("a", 3, n_items=2)
    assert s.get("b") == state("b", 0)  # untouched by batch 3
    assert s.user_count() == 3
    assert s.last_batch_id() == 3


def test_a_user_twice_in_one_batch_keeps_the_last(store: Backend) -> None:
    s = store.writer()
    s.apply(0, [state("a", 0, n_items=1), state("b", 0), state("a", 0, n_items=4)])
    assert s.get("a") == state("a", 0, n_items=4)
    assert s.user_count() == 2


def test_unicode_user_ids(store: Backend) -> None:
    s = store.writer()
    ids = ["ünïcødé", "用户-42", "emoji-🎧", "space and 'quote\"", "{braces}:colon", "x" * 300]
    s.apply(0, [state(u, 0) for u in ids])
    for u in ids:
        assert s.get(u) == state(u, 0)
    assert set(s.get_many(ids)) == set(ids)
    assert s.user_count() == len(ids)


def test_states_must_carry_the_batch_id(store: Backend) -> None:
    s = store.writer()
    with pytest.raises(DataError, match="batch_id=3") as info:
        s.apply(4, [state("a", 4), state("b", 3)])
    assert "apply()" in str(info.value.hint)
    assert s.last_batch_id() == -1 and s.user_count() == 0


def test_readers_see_whole_states_while_a_writer_applies(store: Backend) -> None:
    users = [f"u{i}" for i in range(300)]
    writer = store.writer()
    reader = store.reader()  # one handle shared by the reader threads, as the server does
    writer.apply(0, [state(u, 0) for u in users])
    done = threading.Event()
    errors: list[BaseException] = []
    reads = [0]

    def read_loop(seed: int) -> None:
        rng = random.Random(seed)
        seen = -1
        try:
            while not done.is_set():
                if rng.random() < 0.5:
                    got = reader.get(rng.choice(users))
                    assert got is not None
                    assert_whole(got)
                    batches = {got.batch_id}
                else:
                    many = reader.get_many(rng.sample(users, 50))
                    assert len(many) == 50
                    for s in many.values():
                        assert_whole(s)
                    batches = {s.batch_id for s in many.values()}
                    assert len(batches) == 1, f"get_many mixed batches {batches}"
                assert min(batches) >= seen, "a read went back in time"
                seen = max(batches)
                assert reader.last_batch_id() >= seen
                reads[0] += 1
        except BaseException as exc:  # noqa: BLE001 - re-raised on the main thread
            errors.append(exc)

    threads = [threading.Thread(target=read_loop, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    try:
        for b in range(1, 41):
            assert writer.apply(b, [state(u, b, n_items=1 + b % 7) for u in users])
    finally:
        done.set()
        for t in threads:
            t.join(timeout=30)
    if errors:
        raise errors[0]
    assert reads[0] > 40
    assert reader.last_batch_id() == 40 and reader.user_count() == len(users)


CHILD = """
import sys, time
from sparktf.online.store import RedisStore, SQLiteStore, UserState
{open_store}
n = {n_users}
b = store.last_batch_id() + 1
while True:
    states = [
        UserState(
            user_id=f"u{{i}}", items=tuple(f"{{b}}:u{{i}}:{{k}}" for k in range(3)),
            session_id=f"u{{i}}:live-{{b}}", session_start=1_700_000_000.25 + b,
            last_event_time=1_700_000_000.5 + b, last_ack_time=1_700_000_000.75 + b,
            events=b + 1, batch_id=b,
        )
        for i in range(n)
    ]
    print("applying", b, flush=True)
    t0 = time.perf_counter()
    store.apply(b, states)
    print("applied", b, time.perf_counter() - t0, flush=True)
    b += 1
"""


def test_writer_killed_mid_batch_leaves_a_consistent_store(store: Backend) -> None:
    """A child process applies big batches in a loop and is SIGKILLed while it applies one.

    Each batch rewrites every user, so a consistent store has every user at ``last_batch_id``.
    """
    n_users = 3000
    code = textwrap.dedent(CHILD.format(open_store=store.child_code, n_users=n_users))
    rng = random.Random(16)
    for _ in range(4):
        child = subprocess.Popen(
            [sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            assert child.stdout is not None
            applied: list[tuple[int, float]] = []
            while True:
                line = child.stdout.readline().split()
                assert line, child.stderr.read() if child.stderr else "the writer exited"
                if line[0] == "applied":
                    applied.append((int(line[1]), float(line[2])))
                elif len(applied) >= 2:  # "applying": the third batch of this run starts now
                    time.sleep(rng.uniform(0, 1.2 * max(t for _, t in applied)))
                    break
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=30)
        assert child.returncode == -signal.SIGKILL

        s = store.reader()
        last = s.last_batch_id()
        assert last >= applied[-1][0]  # what apply() returned for is there
        states = s.get_many(f"u{i}" for i in range(n_users))
        assert len(states) == n_users == s.user_count()
        assert {st.batch_id for st in states.values()} == {last}
        for st in states.values():
            assert_whole(st)
        s.close()
        store.opened.remove(s)


# --------------------------------------------------------------------------- SQLite only


def test_sqlite_reader_waits_for_the_file(tmp_path: Path) -> None:
    path = tmp_path / "later" / "online.db"
    reader = SQLiteStore(str(path), readonly=True)
    try:
        assert reader.get("a") is None
        assert reader.get_many(["a"]) == {}
        assert reader.last_batch_id() == -1
        assert reader.user_count() == 0
        assert not path.parent.exists()  # reading never creates anything
        with pytest.raises(RuntimeError, match="read-only"):
            reader.apply(0, [state("a", 0)])

        path.parent.mkdir()
        path.touch()  # the writer has created the file but not yet its tables
        assert reader.get("a") is None and reader.last_batch_id() == -1

        writer = SQLiteStore(str(path))
        try:
            assert reader.last_batch_id() == -1
            writer.apply(0, [state("a", 0)])
            assert reader.get("a") == state("a", 0)
            assert reader.user_count() == 1
            # a reader thread that opens its connection only now sees the data too
            out: list[UserState | None] = []
            t = threading.Thread(target=lambda: out.append(reader.get("a")))
            t.start()
            t.join()
            assert out == [state("a", 0)]
        finally:
            writer.close()
        assert reader.last_batch_id() == 0  # still readable after the writer is gone
    finally:
        reader.close()


def test_sqlite_pragmas_and_contents(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "online.db"
    s = SQLiteStore(str(path))
    s.apply(7, [state("a", 7)])
    assert s._writer is not None
    assert s._writer.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    s.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"users", "meta"}
    assert conn.execute("SELECT * FROM meta").fetchall() == [(0, 7)]
    conn.close()
    assert "online.db" in repr(SQLiteStore(str(path), readonly=True))


def test_sqlite_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "online.db"
    path.write_bytes(b"this is not sqlite" * 1000)
    with pytest.raises(DataError, match="not a database") as info:
        SQLiteStore(str(path))
    assert str(path) in info.value.message and "online.sqlite_path" in str(info.value.hint)
    reader = SQLiteStore(str(path), readonly=True)
    with pytest.raises(DataError, match="not a database"):
        reader.get("a")
    reader.close()


def test_sqlite_foreign_schema(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaError, match="not a sparktf online store") as info:
        SQLiteStore(str(path))
    assert "online.sqlite_path" in str(info.value.hint)
    reader = SQLiteStore(str(path), readonly=True)
    with pytest.raises(SchemaError):
        reader.user_count()
    reader.close()


def test_sqlite_unwritable_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(EnvironmentCheckError, match="cannot create") as info:
        SQLiteStore(str(blocker / "online" / "online.db"))
    assert "online.sqlite_path" in str(info.value.hint)


# --------------------------------------------------------------------------- Redis only


def test_redis_keys_share_one_hash_tag(redis_server: str) -> None:
    import redis
    from redis.crc import key_slot

    prefix = f"t-{uuid.uuid4().hex[:12]}"
    s = RedisStore(redis_server, prefix)
    s.apply(0, [state("a", 0), state("b:{x}", 0)])
    client = redis.Redis.from_url(redis_server)
    keys = sorted(k.decode() for k in client.scan_iter(match=f"{{{prefix}}}:*"))
    assert keys == [
        f"{{{prefix}}}:last_batch",
        f"{{{prefix}}}:user:a",
        f"{{{prefix}}}:user:b:{{x}}",
        f"{{{prefix}}}:user_count",
    ]
    assert len({key_slot(k.encode()) for k in keys}) == 1  # one Cluster slot: one script may touch them all
    s.close()
    client.close()


def test_redis_foreign_value_under_the_prefix(redis_server: str) -> None:
    import redis

    prefix = f"t-{uuid.uuid4().hex[:12]}"
    client = redis.Redis.from_url(redis_server)
    client.set(f"{{{prefix}}}:last_batch", "not a number")
    with pytest.raises(SchemaError, match="not an integer") as info:
        RedisStore(redis_server, prefix)
    assert "online.key_prefix" in str(info.value.hint)
    client.close()


def test_redis_unreachable_names_host_but_not_password() -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"redis://:hunter2-secret@127.0.0.1:{port}/3"
    with pytest.raises(EnvironmentCheckError) as info:
        RedisStore(url, "sparktf", timeout_s=2)
    err = info.value
    assert f"127.0.0.1:{port}/3" in err.message
    assert "online.redis_url" in str(err.hint)
    for text in (str(err), err.render(), repr(err), repr(err.context), repr(err.__cause__), repr(err.__context__)):
        assert "hunter2" not in text


def test_redis_password_never_shown(tmp_path: Path) -> None:
    try:
        server = start_redis(tmp_path / "auth", "--requirepass", "pa55-w0rd")
    except FileNotFoundError:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    try:
        good = f"redis://:pa55-w0rd@127.0.0.1:{server.port}/0"
        s = RedisStore(good, "sparktf")
        assert s.apply(0, [state("a", 0)])
        assert "pa55" not in repr(s) and f"127.0.0.1:{server.port}" in repr(s)
        s.close()

        with pytest.raises(ConfigError) as info:
            RedisStore(f"redis://:wrong-pa55@127.0.0.1:{server.port}/0", "sparktf")
        assert f"127.0.0.1:{server.port}" in info.value.message
        assert "wrong-pa55" not in info.value.render() and "wrong-pa55" not in repr(info.value)

        # the server goes away under an open store: the error names it, not the password
        s = RedisStore(good, "sparktf", timeout_s=2)
        server.stop()
        with pytest.raises(EnvironmentCheckError) as gone:
            s.get("a")
        assert f"127.0.0.1:{server.port}" in gone.value.message and "pa55" not in gone.value.render()
        s.close()
    finally:
        server.stop()


def test_open_store_picks_sqlite(tmp_path: Path) -> None:
    path = str(tmp_path / "o" / "online.db")
    s = open_store(OnlineConfig(store="sqlite"), path)
    assert isinstance(s, SQLiteStore) and Path(path).exists()
    s.close()
    r = open_store(OnlineConfig(store="sqlite"), str(tmp_path / "missing.db"), readonly=True)
    assert isinstance(r, SQLiteStore) and r.get("a") is None
    assert not (tmp_path / "missing.db").exists()
    r.close()


def test_open_store_picks_redis(tmp_path: Path, redis_server: str) -> None:
    cfg = OnlineConfig(store="redis", redis_url=redis_server, key_prefix=f"t-{uuid.uuid4().hex[:12]}")
    s = open_store(cfg, str(tmp_path / "unused.db"))
    assert isinstance(s, RedisStore) and s.last_batch_id() == -1
    assert not (tmp_path / "unused.db").exists()
    s.close()

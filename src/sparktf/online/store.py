"""The online store: each user's live state, written by the stream, read by the server.

The stream's sink calls :meth:`OnlineStore.apply` once per micro-batch with the states of
the users that batch touched; the server reads them (:meth:`~OnlineStore.get`,
:meth:`~OnlineStore.get_many`). ``apply`` writes the states and the batch id in one
transaction and refuses a batch id it has already passed, so a micro-batch that Spark
replays after a crash is applied exactly once and the store is never half a batch.
:func:`open_store` picks the implementation from ``[online]``: :class:`SQLiteStore`
(embedded, one machine) or :class:`RedisStore` (several server processes).

Why our own code rather than Feast (checked with feast 0.67.0): ``pip install --dry-run feast``
resolves against our pins without a downgrade (numpy 2.2.6, pandas 2.3.3, pyarrow 25.0.1,
protobuf 7 stay) but adds 22 packages (dask, uvloop, watchfiles, typeguard, mmh3, ...) and a
feature repository plus registry to ``feast apply``. Its write path,
``FeatureStore.write_to_online_store`` → ``OnlineStore.online_write_batch(config, table, data,
progress)``, has no batch id: the Redis store reads each entity's event timestamp, then writes
in a ``pipeline(transaction=False)`` (per-entity last-timestamp-wins, not atomic over the
batch); the SQLite store upserts in one transaction without any guard. Neither can refuse a
replayed micro-batch nor record the batch that is done, which is the one thing the stream needs.

Measured on the 2-core development machine (20 items a user): ``apply`` of 5,000 users takes
50 ms on SQLite and 88 ms on Redis 7.0 with ``appendfsync always`` (of which the script holds
the server about 30 ms; 20,000 users: 250 ms / 375 ms, in one EVALSHA). ``get`` p50 is 23 µs
(SQLite) and 111 µs (Redis, loopback); ``get_many`` of 100 users 1.2 ms and 1.5 ms.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

from sparktf.config import REDACTED, OnlineConfig
from sparktf.errors import ConfigError, DataError, EnvironmentCheckError, SchemaError

if TYPE_CHECKING:
    import redis

__all__ = ["OnlineStore", "RedisStore", "SQLiteStore", "UserState", "open_store"]

_T = TypeVar("_T")


@dataclass(frozen=True)
class UserState:
    """One user's live state, as the stream's last micro-batch left it.

    Attributes:
        user_id: the user.
        items: the user's latest ``features.max_history`` items (events of
            ``features.positive_event_types``), oldest first, most recent last, in event-time order.
        session_id: the current session (the events' own, or ``<user_id>:live-<n>`` from time gaps).
        session_start: event time (epoch seconds) of the session's first event.
        last_event_time: the latest event time applied (epoch seconds).
        last_ack_time: when the collector acknowledged the latest applied event (epoch seconds);
            freshness is measured from it.
        events: events applied for this user so far (duplicates and late events excluded).
        batch_id: the stream micro-batch that wrote this state.
    """

    user_id: str
    items: tuple[str, ...]
    session_id: str
    session_start: float
    last_event_time: float
    last_ack_time: float
    events: int
    batch_id: int


class OnlineStore(Protocol):
    """What the stream writes and the server reads. Every implementation passes
    ``tests/integration/test_online_store.py``."""

    def apply(self, batch_id: int, states: Sequence[UserState]) -> bool:
        """Write ``states`` (replacing each user's previous state) and record ``batch_id``
        as the last applied batch, in one transaction; do nothing and return False when
        ``batch_id`` is not above the last applied batch (a replayed micro-batch)."""
        ...

    def last_batch_id(self) -> int:
        """The last applied batch id, -1 when none."""
        ...

    def get(self, user_id: str) -> UserState | None:
        """The user's state, or None."""
        ...

    def get_many(self, user_ids: Iterable[str]) -> Mapping[str, UserState]:
        """The states of those of ``user_ids`` that have one."""
        ...

    def user_count(self) -> int:
        """How many users have a state."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


# --------------------------------------------------------------------------- shared helpers


def _state_dict(state: UserState) -> dict[str, Any]:
    return {
        "user_id": state.user_id,
        "items": list(state.items),
        "session_id": state.session_id,
        "session_start": state.session_start,
        "last_event_time": state.last_event_time,
        "last_ack_time": state.last_ack_time,
        "events": state.events,
        "batch_id": state.batch_id,
    }


def _state_from_dict(d: Mapping[str, Any]) -> UserState:
    return UserState(
        user_id=str(d["user_id"]),
        items=tuple(str(i) for i in d["items"]),
        session_id=str(d["session_id"]),
        session_start=float(d["session_start"]),
        last_event_time=float(d["last_event_time"]),
        last_ack_time=float(d["last_ack_time"]),
        events=int(d["events"]),
        batch_id=int(d["batch_id"]),
    )


def _check_batch(batch_id: int, states: Sequence[UserState], where: str) -> None:
    wrong = next((s for s in states if s.batch_id != batch_id), None)
    if wrong is not None:
        raise DataError(
            f"online store {where}: apply(batch_id={batch_id}) got the state of user {wrong.user_id!r} "
            f"with batch_id={wrong.batch_id}; every state must carry the batch that writes it",
            hint="Build each UserState with batch_id set to the micro-batch id passed to apply().",
        )


# --------------------------------------------------------------------------- SQLite

_SCHEMA_VERSION = 1  # PRAGMA user_version of a store this module made
_USER_COLUMNS = (
    "user_id",
    "items",
    "session_id",
    "session_start",
    "last_event_time",
    "last_ack_time",
    "events",
    "batch_id",
)
_CREATE_SCHEMA = (
    "CREATE TABLE users ("
    " user_id TEXT PRIMARY KEY NOT NULL,"
    " items TEXT NOT NULL,"  # JSON array of item ids, oldest first
    " session_id TEXT NOT NULL,"
    " session_start REAL NOT NULL,"
    " last_event_time REAL NOT NULL,"
    " last_ack_time REAL NOT NULL,"
    " events INTEGER NOT NULL,"
    " batch_id INTEGER NOT NULL"
    ") WITHOUT ROWID",
    "CREATE TABLE meta (id INTEGER PRIMARY KEY CHECK (id = 0), last_batch_id INTEGER NOT NULL)",
    "INSERT INTO meta (id, last_batch_id) VALUES (0, -1)",
    f"PRAGMA user_version = {_SCHEMA_VERSION}",
)
_UPSERT = """
INSERT INTO users (user_id, items, session_id, session_start, last_event_time, last_ack_time, events, batch_id)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (user_id) DO UPDATE SET
  items = excluded.items, session_id = excluded.session_id, session_start = excluded.session_start,
  last_event_time = excluded.last_event_time, last_ack_time = excluded.last_ack_time,
  events = excluded.events, batch_id = excluded.batch_id
"""
_SELECT_ONE = """
SELECT user_id, items, session_id, session_start, last_event_time, last_ack_time, events, batch_id
FROM users WHERE user_id = ?
"""
# json_each: any number of ids in one statement (one snapshot), without a variable limit.
_SELECT_MANY = """
SELECT user_id, items, session_id, session_start, last_event_time, last_ack_time, events, batch_id
FROM users WHERE user_id IN (SELECT value FROM json_each(?))
"""
_BUSY_TIMEOUT_MS = 10_000


def _sqlite_row(state: UserState) -> tuple[Any, ...]:
    items = json.dumps(list(state.items), ensure_ascii=False, separators=(",", ":"))
    return (
        state.user_id,
        items,
        state.session_id,
        state.session_start,
        state.last_event_time,
        state.last_ack_time,
        state.events,
        state.batch_id,
    )


def _state_from_row(row: Sequence[Any]) -> UserState:
    d = dict(zip(_USER_COLUMNS, row, strict=True))
    d["items"] = json.loads(d["items"])
    return _state_from_dict(d)


class SQLiteStore:
    """The online store in one SQLite file (``online.store = "sqlite"``): one machine.

    One writer (the stream's sink) and any number of reader threads (the server). The
    database runs in WAL mode, so readers never block the writer nor each other, and each
    read statement sees one committed snapshot. Readers use one read-only connection per
    thread (sqlite3 connections must not be used by two threads at once); the writer's
    single connection is guarded by a lock.

    ``synchronous=FULL``: in WAL mode the WAL file is then synced at every commit, so a
    committed ``apply`` survives an OS crash or power loss. With ``NORMAL`` the store stays
    consistent but the last commits can roll back after a power loss, leaving
    ``last_batch_id`` behind the batch that Spark's checkpoint already records as done;
    Spark would not replay that batch, and its users' states would be lost until their next
    event. Both settings survive a killed process.

    Args:
        path: the database file. The writer creates it, its parent directory and the schema.
        readonly: open for reading only (the server). The file may not exist yet (the stream
            may start after the server): until it does, the store reads as empty
            (``get`` → None, ``last_batch_id`` → -1) and each call looks again.

    Raises:
        EnvironmentCheckError: the parent directory cannot be created.
        DataError: the file is not an SQLite database.
        SchemaError: the database holds other tables than an online store's.
    """

    def __init__(self, path: str, *, readonly: bool = False) -> None:
        self._path = os.path.abspath(path)
        self._readonly = readonly
        self._uri = Path(self._path).as_uri() + "?mode=ro"
        self._local = threading.local()
        self._lock = threading.Lock()  # guards _conns, _closed and the writer connection
        self._conns: list[sqlite3.Connection] = []
        self._closed = False
        self._schema_ready = False
        self._writer: sqlite3.Connection | None = None
        if not readonly:
            self._writer = self._open_writer()

    def __repr__(self) -> str:
        return f"SQLiteStore({self._path!r}, readonly={self._readonly})"

    # -- connections

    def _open_writer(self) -> sqlite3.Connection:
        parent = os.path.dirname(self._path)
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as exc:
            raise EnvironmentCheckError(
                f"cannot create the online store's directory {parent}: {exc.strerror or exc}",
                hint="Make the directory writable, or set online.sqlite_path to a writable place.",
                path=self._path,
            ) from exc
        conn = self._connect(self._path, uri=False)
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise EnvironmentCheckError(
                    f"the online store {self._path} cannot use WAL mode (journal_mode stays {mode!r})",
                    hint="Put online.sqlite_path on a local file system (WAL needs shared memory; "
                    "network file systems do not provide it).",
                    path=self._path,
                )
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                if self._schema_state(conn) == "empty":
                    for stmt in _CREATE_SCHEMA:
                        conn.execute(stmt)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise self._unreadable(exc) from exc
        except BaseException:
            conn.close()
            raise
        self._schema_ready = True
        return conn

    def _connect(self, target: str, *, uri: bool) -> sqlite3.Connection:
        try:
            # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE in apply).
            # check_same_thread=False: close() may run on another thread; each connection
            # is still used by one thread at a time (thread-local, or under the lock).
            conn = sqlite3.connect(
                target,
                uri=uri,
                timeout=_BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        except sqlite3.DatabaseError as exc:
            raise self._unreadable(exc) from exc
        with self._lock:
            if self._closed:
                conn.close()
                raise RuntimeError(f"{self!r} is closed")
            self._conns.append(conn)
        return conn

    def _reader(self) -> sqlite3.Connection | None:
        """This thread's read connection, or None while the store has no schema yet."""
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if not os.path.exists(self._path):
                return None  # read-only and the stream has not created the store yet
            conn = self._connect(self._uri, uri=True)
            self._local.conn = conn
        if not self._schema_ready:
            try:
                state = self._schema_state(conn)
            except sqlite3.DatabaseError as exc:
                raise self._unreadable(exc) from exc
            if state == "empty":
                return None  # the writer created the file but not its tables yet
            self._schema_ready = True
        return conn

    def _schema_state(self, conn: sqlite3.Connection) -> str:
        """``empty`` (a new file), ``ready`` (our schema) or SchemaError."""
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if version == 0 and not tables:
            return "empty"
        users = tuple(r[1] for r in conn.execute("PRAGMA table_info(users)"))
        meta = {r[1] for r in conn.execute("PRAGMA table_info(meta)")}
        if version == _SCHEMA_VERSION and users == _USER_COLUMNS and "last_batch_id" in meta:
            return "ready"
        raise SchemaError(
            f"{self._path} is an SQLite database but not a sparktf online store of schema version "
            f"{_SCHEMA_VERSION} (user_version {version}, tables {sorted(tables)}, users columns {list(users)})",
            hint="Point online.sqlite_path at another file, or move this one away; the stream then "
            "creates a new store (reset the stream's checkpoint too, so it rewrites every user).",
            path=self._path,
        )

    def _unreadable(self, exc: sqlite3.DatabaseError) -> DataError:
        if isinstance(exc, sqlite3.OperationalError) and "unable to open" in str(exc):
            return DataError(
                f"cannot open the online store {self._path}: {exc}",
                hint="Check that the file and its directory are readable (and writable for the stream).",
                path=self._path,
            )
        return DataError(
            f"cannot read {self._path} as an online store: {exc}",
            hint="The file is not an SQLite database (or is damaged): point online.sqlite_path at "
            "another file, or move this one away and reset the stream's checkpoint.",
            path=self._path,
        )

    # -- the OnlineStore protocol

    def apply(self, batch_id: int, states: Sequence[UserState]) -> bool:
        """See :meth:`OnlineStore.apply`: one ``BEGIN IMMEDIATE`` transaction."""
        if self._readonly or self._writer is None:
            raise RuntimeError(f"{self!r} was opened read-only; only the stream's store writes")
        _check_batch(batch_id, states, self._path)
        rows = [_sqlite_row(s) for s in states]
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self!r} is closed")
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                (last,) = conn.execute("SELECT last_batch_id FROM meta WHERE id = 0").fetchone()
                if batch_id <= last:
                    conn.execute("ROLLBACK")
                    return False
                conn.executemany(_UPSERT, rows)
                conn.execute("UPDATE meta SET last_batch_id = ? WHERE id = 0", (batch_id,))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        return True

    def last_batch_id(self) -> int:
        conn = self._reader()
        if conn is None:
            return -1
        return int(conn.execute("SELECT last_batch_id FROM meta WHERE id = 0").fetchone()[0])

    def get(self, user_id: str) -> UserState | None:
        conn = self._reader()
        if conn is None:
            return None
        row = conn.execute(_SELECT_ONE, (user_id,)).fetchone()
        return None if row is None else _state_from_row(row)

    def get_many(self, user_ids: Iterable[str]) -> Mapping[str, UserState]:
        """See :meth:`OnlineStore.get_many`; one statement, so one committed snapshot."""
        ids = list(dict.fromkeys(user_ids))
        conn = self._reader()
        if conn is None or not ids:
            return {}
        rows = conn.execute(_SELECT_MANY, (json.dumps(ids),)).fetchall()
        states = (_state_from_row(r) for r in rows)
        return {s.user_id: s for s in states}

    def user_count(self) -> int:
        conn = self._reader()
        if conn is None:
            return 0
        return int(conn.execute("SELECT count(*) FROM users").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conns, self._conns = self._conns, []  # the writer's connection is among them
            self._writer = None
        for conn in conns:
            conn.close()


# --------------------------------------------------------------------------- Redis

# KEYS[1] last batch, KEYS[2] user count, KEYS[3..] user keys; ARGV[1] the batch id,
# ARGV[2..] the states' JSON in KEYS order. Everything is checked before the first write:
# Redis does not roll back a script that fails halfway.
_APPLY_LUA = """
local last = redis.call('GET', KEYS[1])
if last then
  last = tonumber(last)
  if not last then return redis.error_reply('sparktf: last_batch key does not hold an integer') end
else
  last = -1
end
local count = redis.call('GET', KEYS[2])
if count then
  count = tonumber(count)
  if not count then return redis.error_reply('sparktf: user_count key does not hold an integer') end
else
  count = 0
end
if tonumber(ARGV[1]) <= last then return 0 end
for i = 3, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then count = count + 1 end
  redis.call('SET', KEYS[i], ARGV[i - 1])
end
redis.call('SET', KEYS[2], string.format('%d', count))
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""


def _decode(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _redis_where(url: str) -> str:
    """``host:port/db`` (or the socket path) of a Redis URL, without user or password."""
    try:
        parts = urlsplit(url)
        if parts.scheme == "unix":
            return f"unix:{parts.path}"
        host = parts.hostname or "localhost"
        port = parts.port or 6379
    except ValueError:
        return "<unparseable redis URL>"
    db = parts.path.strip("/") or "0"
    return f"{host}:{port}/{db}"


class RedisStore:
    """The online store in Redis (``online.store = "redis"``): several server processes or
    machines read one store.

    Keys share the hash tag ``{<key_prefix>}``, so in a Redis Cluster they live in one slot
    and one script can touch them all: ``{p}:user:<user_id>`` (the state as JSON),
    ``{p}:last_batch`` and ``{p}:user_count``. ``apply`` is one Lua script (compare the
    batch id, write every state, the count and the batch id), which Redis runs atomically;
    ``get_many`` is one MGET, so it too sees one moment. Durability is the server's: run it
    with ``appendonly yes`` and ``appendfsync always`` for the guarantee ``SQLiteStore``
    gives with ``synchronous=FULL``.

    The URL may carry a password: it is kept only inside the client, and ``repr`` and error
    messages show ``host:port/db``.

    Args:
        url: ``redis://[:password@]host:port/db`` (or ``rediss://``, ``unix://``).
        key_prefix: the hash tag's text, so several workdirs can share a server.
        timeout_s: socket timeout of each command (a 5,000-user apply takes well under 1 s).

    Raises:
        EnvironmentCheckError: Redis is unreachable.
        ConfigError: the URL is malformed or the password is refused.
        SchemaError: the keys hold something this store did not write.
    """

    def __init__(self, url: str, key_prefix: str, *, timeout_s: float = 30.0) -> None:
        import redis  # here: the SQLite store's users need not pay its import (0.25 s)

        self._where = _redis_where(url)
        self._secrets = self._url_secrets(url)
        tag = "{" + key_prefix + "}"
        self._prefix = key_prefix
        self._user_key = f"{tag}:user:"
        self._last_key = f"{tag}:last_batch"
        self._count_key = f"{tag}:user_count"
        try:
            self._client: redis.Redis = redis.Redis.from_url(
                url, socket_connect_timeout=min(timeout_s, 5.0), socket_timeout=timeout_s, health_check_interval=30
            )
        except ValueError as exc:
            raise ConfigError(
                f"online.redis_url is not a valid Redis URL ({self._where}): {self._scrub(str(exc))}",
                hint="Use redis://[:password@]host:port/db, rediss://... or unix:///path/to/socket.",
            ) from None
        self._apply_script = self._client.register_script(_APPLY_LUA)
        try:
            self._call(self._client.ping)
            last, count = self._call(self._client.mget, [self._last_key, self._count_key])
        except BaseException:
            self._client.close()
            raise
        for key, value in ((self._last_key, last), (self._count_key, count)):
            if value is not None and not _decode(value).lstrip("-").isdigit():
                self._client.close()
                raise SchemaError(
                    f"Redis {self._where}: key {key} holds {value[:40]!r}, not an integer; "
                    f"something other than a sparktf online store uses the prefix {key_prefix!r}",
                    hint="Set online.key_prefix to a prefix no one else uses.",
                )

    def __repr__(self) -> str:
        return f"RedisStore({self._where!r}, key_prefix={self._prefix!r})"

    @staticmethod
    def _url_secrets(url: str) -> list[str]:
        try:
            parts = urlsplit(url)
            secrets = [parts.password or "", unquote(parts.password or "")]
            secrets += parse_qs(parts.query).get("password", [])
        except ValueError:
            secrets = [url]  # cannot tell where the password is: hide the whole URL
        return sorted({s for s in secrets if s}, key=len, reverse=True)

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def _call(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """Run one Redis command, turning Redis errors into sparktf errors without secrets."""
        import redis

        try:
            return fn(*args, **kwargs)
        except redis.AuthenticationError as exc:
            raise ConfigError(
                f"Redis {self._where} refused the credentials in online.redis_url: {self._scrub(str(exc))}",
                hint="Fix the password in online.redis_url (redis://:PASSWORD@host:port/db).",
            ) from None
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise EnvironmentCheckError(
                f"cannot reach the Redis online store at {self._where}: {self._scrub(str(exc))}",
                hint="Start Redis there, or point online.redis_url at a running one "
                "(or use online.store = 'sqlite' on a single machine).",
            ) from None
        except redis.ResponseError as exc:
            message = self._scrub(str(exc))
            if "sparktf:" in message:
                raise SchemaError(
                    f"Redis {self._where}, prefix {self._prefix!r}: {message}",
                    hint="Set online.key_prefix to a prefix no one else uses.",
                ) from None
            raise DataError(f"Redis {self._where} answered with an error: {message}") from None

    # -- the OnlineStore protocol

    def apply(self, batch_id: int, states: Sequence[UserState]) -> bool:
        """See :meth:`OnlineStore.apply`: one Lua script, however many states."""
        _check_batch(batch_id, states, self._where)
        keys = [self._last_key, self._count_key, *(self._user_key + s.user_id for s in states)]
        args: list[str | int] = [batch_id]
        args += [json.dumps(_state_dict(s), ensure_ascii=False, separators=(",", ":")) for s in states]
        applied = self._call(self._apply_script, keys=keys, args=args)
        return bool(applied)

    def last_batch_id(self) -> int:
        value = self._call(self._client.get, self._last_key)
        return -1 if value is None else int(value)

    def get(self, user_id: str) -> UserState | None:
        value = self._call(self._client.get, self._user_key + user_id)
        return None if value is None else _state_from_dict(json.loads(value))

    def get_many(self, user_ids: Iterable[str]) -> Mapping[str, UserState]:
        """See :meth:`OnlineStore.get_many`; one MGET, so one moment of the store."""
        ids = list(dict.fromkeys(user_ids))
        if not ids:
            return {}
        values = self._call(self._client.mget, [self._user_key + u for u in ids])
        states = (_state_from_dict(json.loads(v)) for v in values if v is not None)
        return {s.user_id: s for s in states}

    def user_count(self) -> int:
        value = self._call(self._client.get, self._count_key)
        return 0 if value is None else int(value)

    def close(self) -> None:
        self._client.close()


def open_store(cfg: OnlineConfig, sqlite_path: str, *, readonly: bool = False) -> OnlineStore:
    """The online store that ``cfg.store`` names.

    Args:
        cfg: the ``[online]`` section.
        sqlite_path: the resolved SQLite file (``cfg.sqlite_path`` or the workdir's default);
            used when ``cfg.store`` is ``sqlite``.
        readonly: for the server. SQLite opens read-only and tolerates a missing file;
            Redis gives each command 1 s instead of 30 s (a request must not wait long).

    Raises:
        ConfigError, EnvironmentCheckError, DataError, SchemaError: see the store classes.
    """
    if cfg.store == "sqlite":
        return SQLiteStore(sqlite_path, readonly=readonly)
    if cfg.store == "redis":
        # A server's read waits at most a second, then :recommend falls back to the
        # features table and says why; the stream's writes may take longer.
        return RedisStore(cfg.redis_url, cfg.key_prefix, timeout_s=1.0 if readonly else 30.0)
    raise ConfigError(f"online.store is {cfg.store!r}; expected 'sqlite' or 'redis'")

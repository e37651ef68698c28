"""The PostgreSQL backend: one row per task in rabbitq's own table, waiters woken by NOTIFY.

URLs: ``postgresql://user:pass@host:5432/db`` (libpq's), ``postgres://`` and Celery's
``db+postgresql://``. The driver is psycopg 3 with psycopg-pool (``rabbitq[postgres]``).

The table, created on first use::

    rabbitq_taskmeta(task_id PRIMARY KEY, status, content_type, document, date_done, expires_at)

``document`` holds the same bytes the Redis backend stores under ``celery-task-meta-<id>``:
Celery's result document in the task's serializer (JSON or msgpack, named by
``content_type``). Never pickle: that is why this is not Celery's ``celery_taskmeta``, whose
``result`` column is a PickleType. ``status`` repeats the document's state for SQL readers.

A result is an upsert and ``pg_notify('rabbitq_results', task_id)`` in one transaction, so
the notification goes out when the row is visible. A waiting caller uses a connection of its
own (autocommit, outside the pool: LISTEN belongs to a session, and a pooled connection would
carry the subscription to its next borrower; one per thread, or per ``aget()``), LISTENs,
then reads the rows: a result committed
in between is seen by one or the other, and the caller sleeps on the socket instead of polling.

Expired rows (``result_expires``) are invisible at once and deleted by ``cleanup()``, which
the built-in ``celery.backend_cleanup`` task runs (schedule it in beat, daily at 4 as Celery
does, and the beat leader sends it).

Connecting is bounded by ``connect_timeout`` (5 s unless the URL says otherwise) and each
statement by ``statement_timeout`` (10 s). A PostgreSQL that is down or refuses raises
``ResultBackendError`` with the URL minus its password.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
import weakref
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from rabbitq.errors import MessageDecodeError, ResultBackendError
from rabbitq.extras import require
from rabbitq.redaction import without_password
from rabbitq.results.backend import ResultBackend
from rabbitq.results.meta import PENDING, ResultMeta, decode_meta, encode_meta
from rabbitq.serializers import Serializer, serializer_named

if TYPE_CHECKING:
    import psycopg
    import psycopg_pool

    from rabbitq.amqp.contract import AsyncPublisher

# Here, not where psycopg is first imported (in the methods below): App(result_backend=
# "postgresql://...") imports this module on first use, so a missing extra is named there.
require("postgres", feature="the PostgreSQL result backend")

TABLE = "rabbitq_taskmeta"
CHANNEL = "rabbitq_results"
CONNECT_TIMEOUT = 5
STATEMENT_TIMEOUT_MS = 10_000
POOL_SIZE = 4
# Serialises the first CREATE TABLE of concurrent processes: IF NOT EXISTS alone can still
# fail with a unique violation on the catalog when two create at the same instant.
CREATE_LOCK = 0x7261_6271  # "rabq"

CREATE_STATEMENTS = (
    f"""CREATE TABLE IF NOT EXISTS {TABLE} (
        task_id text PRIMARY KEY,
        status text NOT NULL,
        content_type text NOT NULL,
        document bytea NOT NULL,
        date_done timestamptz NOT NULL DEFAULT now(),
        expires_at timestamptz
    )""",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_expires_at ON {TABLE} (expires_at)"
    " WHERE expires_at IS NOT NULL",
)
# One statement, so one round trip: the row and its notification commit together.
UPSERT_AND_NOTIFY = f"""WITH stored AS (
    INSERT INTO {TABLE} (task_id, status, content_type, document, date_done, expires_at)
    VALUES (%s, %s, %s, %s, now(), now() + %s * interval '1 second')
    ON CONFLICT (task_id) DO UPDATE SET status = EXCLUDED.status,
        content_type = EXCLUDED.content_type, document = EXCLUDED.document,
        date_done = EXCLUDED.date_done, expires_at = EXCLUDED.expires_at
    RETURNING task_id)
    SELECT pg_notify('{CHANNEL}', task_id) FROM stored"""
SELECT_LIVE = f"""SELECT task_id, content_type, document FROM {TABLE}
    WHERE task_id = ANY(%s) AND (expires_at IS NULL OR expires_at > now())"""
DELETE_ONE = f"DELETE FROM {TABLE} WHERE task_id = %s"
DELETE_EXPIRED = f"DELETE FROM {TABLE} WHERE expires_at <= now()"

Row = tuple[str, str, bytes]


def connection_params(url: str) -> dict[str, Any]:
    """libpq parameters for ``url``: Celery's ``db+`` prefix dropped, our timeouts as
    defaults the URL may override (``?connect_timeout=2&options=-c statement_timeout=5000``)."""
    from psycopg.conninfo import conninfo_to_dict

    if url.lower().startswith("db+"):
        url = url[3:]
    params: dict[str, Any] = conninfo_to_dict(url)
    params.setdefault("connect_timeout", CONNECT_TIMEOUT)
    params.setdefault("options", f"-c statement_timeout={STATEMENT_TIMEOUT_MS}")
    params.setdefault("application_name", "rabbitq")
    return params


def pool_timeout(params: dict[str, Any]) -> float:
    """How long to wait for a pooled connection: one connection attempt's bound, plus slack."""
    return float(params["connect_timeout"]) + 1.0


class PostgresBackend(ResultBackend):
    def __init__(self, url: str, serializer: Serializer, expires: float | None) -> None:
        super().__init__(url, serializer, expires)
        self.params = connection_params(url)
        self._sync: psycopg_pool.ConnectionPool[psycopg.Connection[Any]] | None = None
        self._sync_pid = 0
        self._waiters = threading.local()
        self._async: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, psycopg_pool.AsyncConnectionPool[Any]
        ] = weakref.WeakKeyDictionary()

    # -- connections ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _answering(self) -> Iterator[None]:
        """PostgreSQL not answering (refused, unreachable, timed out) as ``ResultBackendError``."""
        import psycopg
        import psycopg_pool

        try:
            yield
        except (psycopg.OperationalError, psycopg.InterfaceError, psycopg_pool.PoolTimeout) as exc:
            raise ResultBackendError(
                f"the PostgreSQL result backend at {without_password(self.url)} did not "
                f"answer: {exc}"
            ) from exc

    def _pool(self) -> psycopg_pool.ConnectionPool[psycopg.Connection[Any]]:
        # A pool's connections and threads do not survive fork: a child makes its own.
        if self._sync is None or self._sync_pid != os.getpid():
            import psycopg
            from psycopg_pool import ConnectionPool

            # The first connection is made here rather than by the pool: a refusal then says
            # why at once, where the pool would retry in the background until its timeout.
            with psycopg.connect(**self.params) as conn:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (CREATE_LOCK,))
                for statement in CREATE_STATEMENTS:
                    conn.execute(statement)
            self._sync = ConnectionPool(
                kwargs={**self.params, "autocommit": True},  # single statements: no BEGIN/COMMIT
                min_size=1,
                max_size=POOL_SIZE,
                timeout=pool_timeout(self.params),
                check=ConnectionPool.check_connection,  # one stale after a server restart
                open=True,
            )
            self._sync_pid = os.getpid()
        return self._sync

    async def _async_pool(self) -> psycopg_pool.AsyncConnectionPool[Any]:
        loop = asyncio.get_running_loop()
        pool = self._async.get(loop)
        if pool is None:
            import psycopg
            from psycopg_pool import AsyncConnectionPool

            async with await psycopg.AsyncConnection.connect(**self.params) as conn:
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (CREATE_LOCK,))
                for statement in CREATE_STATEMENTS:
                    await conn.execute(statement)
            pool = AsyncConnectionPool(
                kwargs={**self.params, "autocommit": True},  # single statements: no BEGIN/COMMIT
                min_size=1,
                max_size=POOL_SIZE,
                timeout=pool_timeout(self.params),
                check=AsyncConnectionPool.check_connection,
                open=False,
            )
            await pool.open()
            self._async[loop] = pool
        return pool

    @contextlib.contextmanager
    def _listening(self) -> Iterator[psycopg.Connection[Any]]:
        """This thread's waiting connection, LISTENing for the duration of one ``wait()``.

        Kept between waits (connecting costs more than the rest of a ``get()``), but
        UNLISTENed in between: a session that listens and does not read holds back
        PostgreSQL's notification queue for everyone.
        """
        import psycopg

        conn: psycopg.Connection[Any] | None = getattr(self._waiters, "conn", None)
        if conn is not None and (conn.closed or self._waiters.pid != os.getpid()):
            conn = None
        if conn is not None:
            try:
                conn.execute(f"LISTEN {CHANNEL}")
            except psycopg.OperationalError:  # kept across a server restart: connect again
                conn.close()
                conn = None
        if conn is None:
            conn = psycopg.connect(**self.params, autocommit=True)
            self._waiters.conn, self._waiters.pid = conn, os.getpid()
            conn.execute(f"LISTEN {CHANNEL}")
        try:
            yield conn
            conn.execute("UNLISTEN *")
            for _ in conn.notifies(timeout=0.0):  # drop what came before the UNLISTEN
                pass
        except BaseException:
            self._waiters.conn = None  # in an unknown state (interrupted, broken): start anew
            conn.close()
            raise

    @contextlib.asynccontextmanager
    async def _alistening(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        import psycopg

        conn = await psycopg.AsyncConnection.connect(**self.params, autocommit=True)
        try:
            await conn.execute(f"LISTEN {CHANNEL}")
            yield conn
        finally:
            await conn.close()

    # -- worker side ------------------------------------------------------------------------

    async def store(
        self,
        meta: ResultMeta,
        reply_to: str | None,
        publisher: AsyncPublisher,
        serializer: Serializer | None = None,
    ) -> None:
        serializer = serializer or self.serializer
        document = encode_meta(meta, serializer)
        # encode_meta may have turned an unencodable SUCCESS into a FAILURE: the column says
        # what the document says.
        status = decode_meta(serializer.loads(document), meta.task_id).status
        row = (meta.task_id, status, serializer.name, document, self.expires)
        with self._answering():
            pool = await self._async_pool()
            async with pool.connection() as conn:
                await conn.execute(UPSERT_AND_NOTIFY, row)

    def cleanup(self) -> int:
        """Delete the rows past ``result_expires``; returns how many went."""
        with self._answering(), self._pool().connection() as conn:
            return conn.execute(DELETE_EXPIRED).rowcount

    # -- caller side ------------------------------------------------------------------------

    def _decode_rows(self, rows: Iterable[Row]) -> dict[str, ResultMeta]:
        found = {}
        for task_id, content_type, document in rows:
            try:
                value = serializer_named(content_type).loads(bytes(document))
            except Exception as exc:
                raise MessageDecodeError(f"unreadable result in PostgreSQL: {exc}") from exc
            found[task_id] = decode_meta(value, task_id)
        return found

    def state(self, task_id: str) -> ResultMeta:
        with self._answering(), self._pool().connection() as conn:
            rows = conn.execute(SELECT_LIVE, ([task_id],)).fetchall()
        return self._decode_rows(rows).get(task_id) or ResultMeta(task_id, PENDING)

    def wait(self, task_ids: list[str], timeout: float | None) -> dict[str, ResultMeta]:
        with self._answering():
            self._pool()  # the table exists before the first read
            with self._listening() as conn:
                return self._wait(conn, set(task_ids), timeout)

    def _wait(
        self, conn: psycopg.Connection[Any], pending: set[str], timeout: float | None
    ) -> dict[str, ResultMeta]:
        deadline = None if timeout is None else time.monotonic() + timeout
        ready: dict[str, ResultMeta] = {}
        to_read = set(pending)
        while True:
            if to_read:
                rows = conn.execute(SELECT_LIVE, (list(to_read),)).fetchall()
                for task_id, meta in self._decode_rows(rows).items():
                    if meta.ready:
                        ready[task_id] = meta
                        pending.discard(task_id)
            if not pending:
                return ready
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return ready
            # Notifications that came while reading wait in psycopg's backlog: none is lost.
            woken = {n.payload for n in conn.notifies(timeout=remaining, stop_after=1)}
            woken |= {n.payload for n in conn.notifies(timeout=0.0)}  # the rest that came
            to_read = woken & pending

    async def await_ready(self, task_id: str, timeout: float | None) -> ResultMeta | None:
        with self._answering():
            await self._async_pool()
            async with self._alistening() as conn:
                try:
                    return await asyncio.wait_for(self._await_ready(conn, task_id), timeout)
                except TimeoutError:
                    return None

    async def _await_ready(self, conn: psycopg.AsyncConnection[Any], task_id: str) -> ResultMeta:
        while True:
            rows = await (await conn.execute(SELECT_LIVE, ([task_id],))).fetchall()
            meta = self._decode_rows(rows).get(task_id)
            if meta is not None and meta.ready:
                return meta
            async for notify in conn.notifies():
                if notify.payload == task_id:
                    break

    def forget(self, task_id: str) -> None:
        with self._answering(), self._pool().connection() as conn:
            conn.execute(DELETE_ONE, (task_id,))

    async def aclose(self) -> None:
        pool = self._async.pop(asyncio.get_running_loop(), None)
        if pool is not None:
            await pool.close()

    def close(self) -> None:
        """Close this process's pool and this thread's waiting connection; the next call
        opens them again. An app that lives as long as its process need not call it."""
        conn: psycopg.Connection[Any] | None = getattr(self._waiters, "conn", None)
        self._waiters.conn = None
        if conn is not None:
            conn.close()
        pool, self._sync = self._sync, None
        if pool is not None and self._sync_pid == os.getpid():
            pool.close()

"""Storing a frame import's contacts: bulk writes inside the import's own transaction.

:class:`ContactWriter` takes the checked chunks of :class:`minping.frame_file.FrameReader`
and stores them on the session's connection, so the contacts and the import record
commit or roll back together (the caller commits):

* PostgreSQL: one ``COPY frame_contact (...) FROM STDIN`` (text format) for the whole
  file.  A thread sends each chunk while the next one is read and checked, so the
  server stores one chunk while Python checks the next (at most two chunks wait).
* SQLite: ``executemany`` per chunk, with a 64 MiB page cache (enough for the unique
  (frame, phone) index of a million contacts) during the import, set back afterwards.

A *large* file (its first chunk is at least half of :data:`minping.frames.BATCH`
rows) is stored with ``frame_contact``'s secondary structures set aside and built
again at the end, once, sorted, inside the same transaction:

* PostgreSQL: the foreign keys (added back and validated in one pass each), and,
  when the table holds few rows compared with the file, its indexes and its unique
  (frame, phone) constraint too (built again; the constraint checks every row once
  more, the duplicate check's last line).  This takes an ACCESS EXCLUSIVE lock on
  ``frame_contact`` until the import commits or rolls back.
* SQLite: its secondary indexes (the unique constraint's index cannot be dropped
  and stays).

Whatever happens they are back when the writer closes: on PostgreSQL an error
aborts the transaction (it cannot commit), on SQLite they are built again even on
error.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import queue
import threading

import numpy as np
from sqlalchemy.orm import Session

from minping.frame_file import FrameChunk
from minping.models import FrameContact

__all__ = ["ContactWriter", "insert_chunk"]

COLUMNS = ("frame_id", "import_id", "phone", "group_id", "town_id", "source_row", "attributes")
#: Rows of a file per row already in the table above which PostgreSQL's indexes are
#: dropped and built again (file rows estimated from its size at ``_BYTES_PER_ROW``).
_REBUILD_RATIO = 0.5
_BYTES_PER_ROW = 32
#: SQLite page cache during an import (KiB): the unique index stays in memory.
_SQLITE_CACHE_KIB = 65536
#: PostgreSQL memory for building the indexes again (per index build).
_BUILD_MEMORY = "256MB"

#: JSON string literal of a str (C-accelerated when available), as json.dumps writes it
#: with ensure_ascii=False.
_encode_string = getattr(json.encoder, "c_encode_basestring", None) or json.encoder.encode_basestring


def _attributes_json(chunk: FrameChunk, n: int, copy_text: bool) -> list[str] | itertools.repeat:
    """Each row's attributes as a compact JSON object (the text of ``json.dumps``).

    With ``copy_text`` the backslashes (JSON's escapes) are doubled for COPY's text
    format; JSON leaves no raw tab or newline in the text.
    """
    names = list(chunk.attributes)
    if not names:
        return itertools.repeat("{}", n)
    cols = []
    for name in names:
        values = list(map(_encode_string, chunk.attributes[name]))
        if copy_text:
            blob = "\n".join(values)  # no raw newline in a JSON string: a safe separator
            if "\\" in blob:
                values = blob.replace("\\", "\\\\").split("\n")
        cols.append(values)
    keys = [_encode_string(k) for k in names]
    if copy_text:
        keys = [k.replace("\\", "\\\\") for k in keys]
    fmt = "{{" + ",".join(k.replace("{", "{{").replace("}", "}}") + ":{}" for k in keys) + "}}"
    return list(map(fmt.format, *cols))


class _Pump:
    """Send COPY data from a thread, so the caller reads the next chunk meanwhile."""

    def __init__(self, copy):
        self.copy = copy
        self.queue: queue.Queue = queue.Queue(maxsize=1)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="frame-copy", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            data = self.queue.get()
            if data is None:
                return
            if self.error is None:
                try:
                    self.copy.write(data)
                except BaseException as exc:  # noqa: BLE001 - handed to the caller
                    self.error = exc

    def write(self, data: bytes) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(data)

    def close(self, *, raise_error: bool = True) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None and raise_error:
            raise self.error


class ContactWriter:
    """Store an import's chunks (a context manager; see the module docstring)."""

    def __init__(self, session: Session, frame_id: int, import_id: int | None, *,
                 group_ids: list[int], town_ids: list[int], large: bool = False,
                 file_bytes: int = 0):
        self.conn = session.connection()
        self.dialect = self.conn.dialect.name
        self.table = FrameContact.__table__.name
        self.frame_id = frame_id
        self.import_id = import_id
        self.group_ids = group_ids
        self.town_ids = town_ids
        self.large = large
        self.file_bytes = file_bytes
        self.restore: list[str] = []  # SQL putting back what was set aside, in order
        self._stack = contextlib.ExitStack()
        self._pump: _Pump | None = None
        self._sqlite_cache: int | None = None

    # -- opening and closing
    def __enter__(self) -> ContactWriter:
        try:
            if self.dialect == "postgresql":
                self._open_postgresql()
            elif self.dialect == "sqlite":
                self._open_sqlite()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if self._pump is not None:  # the data sent (an error of its own only if none here)
                self._pump.close(raise_error=exc_type is None)
        finally:
            self._stack.__exit__(exc_type, exc, tb)  # ends the COPY (aborted on error)
        # PostgreSQL after an error: the transaction is aborted and cannot commit
        if exc_type is None or self.dialect != "postgresql":
            if self.dialect == "postgresql" and self.restore:
                self.conn.exec_driver_sql(f"SET LOCAL maintenance_work_mem = '{_BUILD_MEMORY}'")
            for sql in self.restore:
                self.conn.exec_driver_sql(sql)
            if self._sqlite_cache is not None:
                self.conn.exec_driver_sql(f"PRAGMA cache_size = {self._sqlite_cache}")

    def _open_postgresql(self) -> None:
        conn, table = self.conn, self.table
        if self.large:
            keys = conn.exec_driver_sql(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                f"WHERE conrelid = '{table}'::regclass AND contype = 'f' ORDER BY conname").all()
            drops = [f'ALTER TABLE {table} DROP CONSTRAINT "{n}"' for n, _ in keys]
            adds = [f'ALTER TABLE {table} ADD CONSTRAINT "{n}" {d}' for n, d in keys]
            if self._few_rows_in_table():
                uniques = conn.exec_driver_sql(
                    "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                    f"WHERE conrelid = '{table}'::regclass AND contype = 'u' "
                    "ORDER BY conname").all()
                indexes = conn.exec_driver_sql(
                    "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i "
                    "JOIN pg_class c ON c.oid = i.indexrelid "
                    f"WHERE i.indrelid = '{table}'::regclass AND NOT i.indisprimary "
                    "AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid) "
                    "ORDER BY c.relname").all()
                drops += [f'ALTER TABLE {table} DROP CONSTRAINT "{n}"' for n, _ in uniques]
                drops += [f'DROP INDEX "{n}"' for n, _ in indexes]
                # indexes first (the unique one refuses a duplicate), then the keys
                adds = ([f'ALTER TABLE {table} ADD CONSTRAINT "{n}" {d}' for n, d in uniques]
                        + [str(d) for _, d in indexes] + adds)
            for sql in drops:
                conn.exec_driver_sql(sql)
            self.restore = adds
        raw = conn.connection.driver_connection
        cur = self._stack.enter_context(raw.cursor())
        copy = self._stack.enter_context(
            cur.copy(f"COPY {table} ({', '.join(COLUMNS)}) FROM STDIN"))
        self._pump = _Pump(copy)

    def _few_rows_in_table(self) -> bool:
        """Whether the table holds few rows compared with the file (then rebuild its indexes)."""
        limit = int(self.file_bytes / _BYTES_PER_ROW / _REBUILD_RATIO) + 1
        n = self.conn.exec_driver_sql(
            f"SELECT count(*) FROM (SELECT 1 FROM {self.table} LIMIT {limit}) t").scalar()
        return int(n or 0) < limit

    def _open_sqlite(self) -> None:
        conn, table = self.conn, self.table
        self._sqlite_cache = int(conn.exec_driver_sql("PRAGMA cache_size").scalar())
        if self._sqlite_cache > -_SQLITE_CACHE_KIB:
            conn.exec_driver_sql(f"PRAGMA cache_size = -{_SQLITE_CACHE_KIB}")
        else:
            self._sqlite_cache = None
        if self.large:
            # a million numbers in file order into an index on the phone is a random B-tree
            # insert per row; building it at the end sorts once
            indexes = conn.exec_driver_sql(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
                "AND sql IS NOT NULL ORDER BY name", (table,)).all()
            for name, _ in indexes:
                conn.exec_driver_sql(f'DROP INDEX "{name}"')
            self.restore = [str(sql) for _, sql in indexes]

    # -- writing
    def write(self, chunk: FrameChunk) -> int:
        """Store one chunk (rows in file order); returns how many."""
        n = len(chunk)
        if n == 0:
            return 0
        keys = chunk.keys.tolist()
        rows = chunk.source_rows.tolist()
        if self._pump is not None:
            # one "group id<TAB>town id" cell pair per (group, town) code pair; town -1 -> \N
            towns = [str(t) for t in self.town_ids] + ["\\N"]
            pairs = [f"{g}\t{t}" for g in self.group_ids for t in towns]
            tcodes = np.where(chunk.towns < 0, len(self.town_ids), chunk.towns)
            pair = map(pairs.__getitem__, (chunk.groups * len(towns) + tcodes).tolist())
            imp = "\\N" if self.import_id is None else str(self.import_id)
            head = f"{self.frame_id}\t{imp}\t+"  # each line: head, the number's digits, ...
            text = head + f"\n{head}".join(map("\t".join, zip(
                map(str, keys), pair, map(str, rows), _attributes_json(chunk, n, True),
                strict=True))) + "\n"
            self._pump.write(text.encode())
            return n
        placeholders = ", ".join("?" for _ in COLUMNS)
        sql = f"INSERT INTO {self.table} ({', '.join(COLUMNS)}) VALUES ({placeholders})"
        towns = [*self.town_ids, None]
        params = zip(itertools.repeat(self.frame_id), itertools.repeat(self.import_id),
                     map("+{}".format, keys), map(self.group_ids.__getitem__, chunk.groups.tolist()),
                     map(towns.__getitem__, chunk.towns.tolist()), rows,
                     _attributes_json(chunk, n, False))
        cursor = self.conn.connection.driver_connection.cursor()
        try:
            cursor.executemany(sql, params)
        finally:
            cursor.close()
        return n


def insert_chunk(session: Session, frame_id: int, import_id: int | None, chunk: FrameChunk, *,
                 group_ids: list[int], town_ids: list[int]) -> int:
    """Bulk-insert one chunk of contacts on the session's connection; returns how many.

    ``group_ids``/``town_ids`` are the database ids of the reader's group and town
    codes.  Nothing is committed.
    """
    with ContactWriter(session, frame_id, import_id, group_ids=group_ids,
                       town_ids=town_ids) as writer:
        return writer.write(chunk)

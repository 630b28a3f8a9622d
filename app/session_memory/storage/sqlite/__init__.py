"""The SQLite backend, split by layer.

- ``schema``: the migrations and the SQL fragments statements share;
- ``connection``: connections, each owned by one thread, and the threaded readers;
- ``writer``: the group-commit writer, sole owner of the write connection;
- ``writes``: the writes, plain functions of the writer's connection;
- ``forks``: the fork, copied in steps (writes too), and ``restore``: a backed-up
  session put back;
- ``reads``: the reads, plain functions of a read connection;
- ``store``: ``SQLiteStore``, which ties them together.

Each imports only the ones above it (and the shared ``storage`` modules).
"""

from __future__ import annotations

from .connection import sqlite_path_from_url
from .schema import MIGRATIONS, migrate, split_script
from .store import SQLiteStore

__all__ = ["MIGRATIONS", "SQLiteStore", "migrate", "split_script", "sqlite_path_from_url"]

"""The SQL sandbox: an in-memory SQLite database per episode, seeded from a fixture script.

Same rules as the Rust runtime: no file can be reached (ATTACH refused), read-only nodes
refuse every write, statements run under an instruction budget, results are row-limited,
and `random()` is a seeded xorshift64* so every face of a gym draws the same numbers.
"""

import ctypes
import math
import sqlite3

from .jsontext import dumps, rust_trim

# SQLite authorizer action codes (sqlite3.h).
PRAGMA, READ, SELECT, TRANSACTION, ATTACH, DETACH, FUNCTION, SAVEPOINT, RECURSIVE = 19, 20, 21, 22, 24, 25, 31, 32, 33
SAFE_PRAGMAS = {"table_info", "table_list", "index_list", "index_info", "foreign_key_list", "table_xinfo"}
SQLITE_OK, SQLITE_DENY = 0, 1
MASK64 = (1 << 64) - 1


def _error_offset_fn():
    """`sqlite3_error_offset`, read through ctypes from the library Python's sqlite3 uses.

    The Rust runtime (rusqlite) reports a statement that fails to compile as
    `<message> in <sql> at offset <n>`; Python's sqlite3 does not expose the offset.
    """
    try:
        import _sqlite3

        lib = ctypes.CDLL(_sqlite3.__file__)
        fn = lib.sqlite3_error_offset
        fn.argtypes = [ctypes.c_void_p]
        fn.restype = ctypes.c_int
        return fn
    except (ImportError, OSError, AttributeError):
        return None


_ERROR_OFFSET = _error_offset_fn()


def _error_offset(conn):
    if _ERROR_OFFSET is None:
        return -1
    # `pysqlite_Connection` starts with PyObject_HEAD followed by the `sqlite3 *db` handle.
    handle = ctypes.c_void_p.from_address(id(conn) + object.__basicsize__).value
    return _ERROR_OFFSET(handle) if handle else -1


def _open_memory():
    conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    if hasattr(conn, "setlimit"):
        conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 1_000_000)
        conn.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, 100_000)
    return conn


def build_seed(script):
    """Run the fixture script in a fresh database and keep its bytes."""
    conn = _open_memory()
    try:
        conn.executescript(script)
    except sqlite3.Error as e:
        raise ValueError(f"fixture SQL failed: {e}") from e
    image = conn.serialize()
    conn.close()
    return image


class SqlFailure(Exception):
    pass


def _is_blank_sql(s):
    """Whether `s` holds only whitespace, comments and empty statements (`;`)."""
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c in " \t\n\f\r;":
            i += 1
        elif s.startswith("--", i):
            j = s.find("\n", i)
            i = n if j < 0 else j + 1
        elif s.startswith("/*", i):
            j = s.find("*/", i + 2)
            i = n if j < 0 else j + 2
        else:
            return False
    return True


def _split_first(sql):
    """Split off the first statement (up to and including its `;`) as SQLite's parser would."""
    start = 0
    while True:
        i = sql.find(";", start)
        if i < 0:
            return sql, ""
        if sqlite3.complete_statement(sql[: i + 1]):
            return sql[: i + 1], sql[i + 1 :]
        start = i + 1


class Sandbox:
    """A sandbox database for one episode."""

    def __init__(self, image, rng_seed):
        self.conn = _open_memory()
        self.conn.deserialize(image)
        self.conn.text_factory = lambda b: b.decode("utf-8", "replace")
        self.rng = (rng_seed | 1) & MASK64
        self.write_attempt = False
        self.allow_write = False
        self.dirty = False
        self.conn.create_function("random", 0, self._random)
        self.conn.set_authorizer(self._authorize)

    def reseed(self, rng_seed):
        self.rng = (rng_seed | 1) & MASK64

    def _random(self):
        # xorshift64*: tiny, deterministic, good enough for SQL random().
        x = self.rng
        x ^= x >> 12
        x ^= (x << 25) & MASK64
        x ^= x >> 27
        self.rng = x
        r = (x * 0x2545F4914F6CDD1D) & MASK64
        return r - (1 << 64) if r >= 1 << 63 else r

    def _authorize(self, action, arg1, arg2, db_name, trigger):
        if action in (ATTACH, DETACH):
            return SQLITE_DENY
        if action == PRAGMA:
            return SQLITE_OK if (arg1 or "").lower() in SAFE_PRAGMAS else SQLITE_DENY
        if action in (READ, SELECT, FUNCTION, RECURSIVE):
            return SQLITE_OK
        if action in (TRANSACTION, SAVEPOINT):
            return SQLITE_DENY
        if self.allow_write:
            return SQLITE_OK
        self.write_attempt = True
        return SQLITE_DENY

    def run(self, sql, params, read_only, max_rows, max_instructions):
        """Run one statement. Never fails: errors come back in the result object."""
        self.write_attempt = False
        self.allow_write = not read_only
        self.dirty = self.dirty or not read_only
        budget = max(max_instructions // 1000, 1)
        ticks = [0]
        try:
            result = self._run_inner(sql, params, max_rows, budget, ticks)
        except SqlFailure as e:
            result = str(e)
        finally:
            self.conn.set_progress_handler(None, 1000)
        if not isinstance(result, str):
            columns, rows, truncated = result
            return {
                "ok": True, "columns": columns, "rows": rows, "row_count": len(rows),
                "truncated": truncated, "error": None, "refused_write": False,
            }
        if self.write_attempt:
            error = "refused: this database is read-only"
        elif ticks[0] > budget:
            error = "statement stopped: it exceeded the instruction budget"
        else:
            error = result
        return {
            "ok": False, "columns": [], "rows": [], "row_count": 0, "truncated": False,
            "error": error, "refused_write": self.write_attempt,
        }

    def _compile_error(self, e, sql, shift=0):
        """The message rusqlite gives for a statement that does not compile."""
        msg = str(e)
        code = getattr(e, "sqlite_errorcode", 1)
        offset = _error_offset(self.conn)
        if code is not None and code & 0xFF == 1 and offset >= 0:
            return SqlFailure(f"{msg} in {sql} at offset {offset - shift}")
        return SqlFailure(msg)

    def _check_compiles(self, stmt, sql):
        """Compile `stmt` without running it (EXPLAIN), reporting errors against `sql`."""
        head = stmt.lstrip()
        explained = head[:7].upper() == "EXPLAIN"
        text = stmt if explained else "EXPLAIN " + stmt
        try:
            self.conn.execute(text).close()
        except sqlite3.ProgrammingError as e:
            if "bindings" in str(e):
                return
            raise SqlFailure(str(e))
        except sqlite3.Error as e:
            raise self._compile_error(e, sql, 0 if explained else 8)

    def _run_inner(self, sql, params, max_rows, budget, ticks):
        sql = rust_trim(sql)
        if not sql:
            raise SqlFailure("empty SQL statement")
        head, tail = _split_first(sql)
        if not _is_blank_sql(tail):
            # rusqlite compiles every statement after the first and refuses the input when
            # one of them is not empty ("Multiple statements provided").
            if not _is_blank_sql(head):
                self._check_compiles(head, sql)
            rest, more = tail, False
            while not _is_blank_sql(rest):
                stmt, after = _split_first(rest)
                if not _is_blank_sql(stmt):
                    self._check_compiles(stmt, rest)
                    more = True
                rest = after
            if more:
                raise SqlFailure("Multiple statements provided")
        if _is_blank_sql(head):
            return [], [], False
        to_run = head

        def progress():
            ticks[0] += 1
            return 1 if ticks[0] > budget else 0

        self.conn.set_progress_handler(progress, 1000)
        bound = [_to_sql(p) for p in params]
        try:
            cur = self.conn.execute(to_run, bound)
        except sqlite3.ProgrammingError as e:
            raise SqlFailure(_binding_message(str(e), len(bound))) from None
        except sqlite3.Error as e:
            raise self._compile_error(e, sql) from None
        columns = [d[0] for d in cur.description] if cur.description else []
        rows, truncated = [], False
        try:
            while True:
                row = cur.fetchone()
                if row is None:
                    break
                if len(rows) == max_rows:
                    truncated = True
                    break
                rows.append([_from_sql(v) for v in row])
        except sqlite3.Error as e:
            raise SqlFailure(str(e)) from None
        finally:
            cur.close()
        return columns, rows, truncated


def _binding_message(msg, given):
    """rusqlite's wording for a parameter count mismatch."""
    import re

    m = re.search(r"uses (\d+), and there are (\d+) supplied", msg)
    if not m:
        return msg
    needed = int(m.group(1))
    got = needed + 1 if given > needed else given
    return f"Wrong number of parameters passed to query. Got {got}, needed {needed}"


def _to_sql(v):
    if v is None:
        return None
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v if -(2**63) <= v < 2**63 else float(v)
    if isinstance(v, (float, str)):
        return v
    return dumps(v)


def _from_sql(v):
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, bytes):
        return f"<blob {len(v)} bytes>"
    return v


def result_text(result):
    """Render a result as a readable table for the agent."""
    if result.get("ok") is not True:
        error = result.get("error")
        return f"error: {error if isinstance(error, str) else 'unknown'}"
    cols = [c for c in result.get("columns") or [] if isinstance(c, str)]
    rows = result.get("rows") or []
    if not cols:
        return "ok"
    out = " | ".join(cols) + "\n"
    for r in rows:
        cells = []
        for v in r if isinstance(r, list) else []:
            if isinstance(v, str):
                cells.append(v)
            elif v is None:
                cells.append("NULL")
            else:
                cells.append(dumps(v))
        out += " | ".join(cells) + "\n"
    n = len(rows)
    if result.get("truncated") is True:
        out += f"({n} rows shown; more were cut)"
    else:
        out += f"({n} row{'' if n == 1 else 's'})"
    return out

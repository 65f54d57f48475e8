"""The Store: one SQLite database plus a content-addressed blob folder beside it.

Artifacts are immutable and versioned per (kind, name). Row data live in real tables keyed by artifact id
(see migrations/*.sql); large files live in the blob folder, named by their sha256. A stage writes into a
*pending* artifact, which gets its version and content hash only when `finalize` seals it; `stage()` (the
stage protocol, stage.py) is how every stage does that. Every SQL statement of lettingo is in this package.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import os
import re
import shutil
import sqlite3
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import resources
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path

from lettingo_cli.store.artifact import KINDS, PRIMARY_TABLE, ROW_TABLES, Artifact, check_name
from lettingo_cli.store.digest import HASH_CHUNK_BYTES, canonical_json
from lettingo_cli.store.errors import ArtifactNotFound, IntegrityError, LettingoError
from lettingo_cli.store.upkeep import Upkeep

# The packages whose versions every artifact records (what made it).
KEY_PACKAGES = ("torch", "transformers", "trl", "peft", "llama-cpp-python", "sqlite-utils", "typer")
# How long a writer waits for another process's write transaction before giving up.
BUSY_TIMEOUT_MS = 30_000
INSERT_BATCH_ROWS = 10_000  # rows per INSERT statement batch: bounded memory for multi-million-row datasets


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@functools.cache
def lettingo_version() -> str:
    """The installed lettingo's version (pyproject.toml is its one source), recorded with every artifact."""
    try:
        return package_version("lettingo")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "0+unknown"


def package_versions() -> dict[str, str]:
    found = {}
    for name in KEY_PACKAGES:
        try:
            found[name] = package_version(name)
        except PackageNotFoundError:
            continue
    return found


def _import_sqlite_utils():
    """sqlite-utils imports pandas and numpy when installed, only to map their scalar types to column types.
    lettingo's schema is SQL, so hide them during that import: it saves ~0.3 s on every store command."""
    hidden = [name for name in ("pandas", "numpy") if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # makes `import name` raise ImportError
    try:
        import sqlite_utils
    finally:
        for name in hidden:
            del sys.modules[name]
    return sqlite_utils


REBUILDS_TABLES = "-- lettingo: rebuilds tables"  # first line of a migration that must run with foreign keys off


def _migrations():
    """Register every migrations/NNNN_*.sql file, in order, as one sqlite-utils migration."""
    _import_sqlite_utils()
    from sqlite_utils.migrations import Migrations

    migrations = Migrations("lettingo")
    names = []
    folder = resources.files("lettingo_cli.store") / "migrations"
    sql_files = sorted((entry for entry in folder.iterdir() if entry.name.endswith(".sql")), key=lambda e: e.name)
    for entry in sql_files:
        sql = entry.read_text(encoding="utf-8")
        name = entry.name.removesuffix(".sql")

        if sql.startswith(REBUILDS_TABLES):
            migrations(name=name, transactional=False)(_apply_rebuild(sql))
        else:
            migrations(name=name)(lambda db, sql=sql: db.executescript(sql))
        names.append(name)
    return migrations, names


def _apply_rebuild(sql: str):
    """A migration that rebuilds a table (https://www.sqlite.org/lang_altertable.html#otheralter): foreign keys
    must be off, or dropping the old table would cascade to every table that refers to it, and they can only be
    switched outside a transaction. So: keys off, the script in one transaction, the keys checked before it
    commits (any problem rolls it all back), keys on again. Rerunning it after a crash between the commit and
    sqlite-utils' record of it rebuilds the same table again."""

    def apply(db):
        conn = db.conn
        if conn.in_transaction:
            conn.commit()
        conn.execute("PRAGMA foreign_keys = OFF")
        try:
            conn.executescript("BEGIN IMMEDIATE;\n" + sql)
            problems = conn.execute("PRAGMA foreign_key_check").fetchall()
            if problems:
                conn.rollback()
                raise IntegrityError(f"the store's schema upgrade would break {len(problems)} references; not applied")
            conn.commit()
        except BaseException:
            if conn.in_transaction:
                conn.rollback()
            raise
        finally:
            conn.execute("PRAGMA foreign_keys = ON")

    return apply


def _check_size(path: Path, conn) -> None:
    """Refuse a store cut short: SQLite's page count (from the file's header) times the page size is more than
    the file holds. Checked only while the WAL is empty (pages still in a WAL legitimately lie beyond the file).
    SQLite's connection reads the header: opening and closing the file here would drop the POSIX locks other
    connections of this process hold on it."""
    wal = Path(f"{path}-wal")
    if not path.exists() or (wal.exists() and wal.stat().st_size > 0):
        return
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    if path.stat().st_size < pages * page_size:
        raise IntegrityError(
            f"{path} is damaged: it has {path.stat().st_size:,} bytes, its header says {pages * page_size:,} "
            "(truncated copy?); restore it from a backup"
        )


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection. A WAL store needs its -shm file to be read that way; where it is missing and cannot
    be made (a read-only folder or medium), the file is read as immutable: nobody can be writing it then."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError:
        conn.close()
        return sqlite3.connect(f"{path.resolve().as_uri()}?immutable=1", uri=True)


def broken_store(path: Path | None, error: Exception) -> IntegrityError | None:
    """The error to report when SQLite's `error` means the file itself is not a usable store (not a database,
    or damaged pages) rather than busy, locked or read-only; None otherwise."""
    text, where = str(error), path or "the store"
    if not isinstance(error, sqlite3.DatabaseError):
        return None
    if "file is not a database" in text:
        return IntegrityError(
            f"{where} is not a lettingo store (not an SQLite database); pass --store with another file"
        )
    if "malformed" in text:
        return IntegrityError(f"the store {where} is damaged ({error}); `lettingo store verify` checks it; restore it "
                              "from a backup")  # fmt: skip
    return None


SQLITE_ROOM = 16 * 1024 * 1024  # what to free at least when SQLite's write ran out of room: its WAL and new pages


def _megabytes(size: int) -> str:
    return f"{size / 1e6:,.1f} MB"


def disk_full(path: Path | None, error: Exception, needed: int | None = None) -> LettingoError | None:
    """The one-line error for a write that found the disk full (SQLite's "database or disk is full", or ENOSPC
    from a file copy); None for any other error. `needed`: the bytes the failed write needed, where known."""
    full = isinstance(error, sqlite3.OperationalError) and "disk is full" in str(error)
    full = full or (isinstance(error, OSError) and error.errno == errno.ENOSPC)
    if not full:
        return None
    where = Path(path) if path else Path("lettingo.db")
    free = shutil.disk_usage(where.resolve().parent).free
    if needed is None:
        wal = Path(f"{where}-wal")
        needed = max(SQLITE_ROOM, wal.stat().st_size if wal.exists() else 0)
    return LettingoError(
        f"the disk of the store {where} is full ({_megabytes(free)} free): free at least {_megabytes(needed)} more "
        "and rerun the same command; finished work is kept and nothing half-written was recorded"
    )


class Store(Upkeep):
    """A lettingo store at `path` (the SQLite file) with its blobs in `<path without .db>.blobs/`."""

    last_path: Path | None = None  # the store this process opened last: named by the CLI when SQLite finds damage

    def __init__(self, path: Path | str, create: bool = True):
        sqlite_utils = _import_sqlite_utils()
        self.path = Path(path)
        if not self.path.exists() and not create:
            raise ArtifactNotFound(f"no lettingo store at {self.path} (ingest a dataset first, or pass --store)")
        if self.path.parent and not self.path.parent.exists():
            raise LettingoError(f"cannot create a store at {self.path}: folder {self.path.parent} does not exist")
        Store.last_path = self.path
        self.blob_dir = self.path.with_name(self.path.stem + ".blobs")
        # WAL needs to write the file and create -wal/-shm files beside it: without both, open it read-only
        self.read_only = self.path.exists() and not (
            os.access(self.path, os.W_OK) and os.access(self.path.parent or Path("."), os.W_OK)
        )
        try:
            if self.read_only:
                conn = _connect_read_only(self.path)
            else:
                conn = sqlite3.connect(self.path)
            self.db = sqlite_utils.Database(conn, execute_plugins=False)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA foreign_keys = ON")
            self._check_is_lettingo_store()
            _check_size(self.path, conn)
            if not self.read_only:
                self.db.enable_wal()
                conn.execute("PRAGMA synchronous = NORMAL")
            self._migrate()
        except sqlite3.DatabaseError as error:
            if (broken := broken_store(self.path, error)) is not None:
                raise broken from None
            raise

    def _check_is_lettingo_store(self) -> None:
        """Refuse another program's SQLite database before writing anything to it."""
        tables = {row[0] for row in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables and "artifacts" not in tables:
            shown = ", ".join(sorted(tables)[:5])
            raise IntegrityError(f"{self.path} is not a lettingo store: it is an SQLite database of other tables "
                                 f"({shown}); pass --store with another file")  # fmt: skip

    def stage(self, stage: str, kind: str, name: str, params: dict, inputs: dict, **options):
        """The stage protocol (cache hit, resume, finalize, discard) for one run of a stage: see stage.py."""
        from lettingo_cli.store.stage import StageRun

        return StageRun(self, stage, kind, name, params, inputs, **options)

    @contextmanager
    def transaction(self):
        """One write transaction: all of it lands, or none of it. Nested calls join the outer one (a savepoint).

        It takes the write lock at its start (BEGIN IMMEDIATE): in WAL mode a deferred transaction that reads
        and then writes cannot wait for another process's writer and fails at once with "database is locked";
        an immediate one waits its turn (up to BUSY_TIMEOUT_MS), so any number of lettingo processes can
        write one store."""
        conn = self.db.conn
        if self.read_only:
            raise LettingoError(
                f"{self.path} is read-only (file or folder not writable): reading works, writing "
                "does not; copy the store (and its .blobs folder) somewhere writable, or pass --store"
            )
        if conn.in_transaction:
            with self.db.atomic():
                yield
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if conn.in_transaction:
                conn.rollback()
            raise
        conn.execute("COMMIT")

    # --- schema ---------------------------------------------------------------------------------------

    def _migrate(self) -> None:
        migrations, known = _migrations()
        store_schema = self.db.execute("PRAGMA user_version").fetchone()[0]
        if store_schema > len(known):
            raise LettingoError(
                f"{self.path} was written by a newer lettingo (store schema {store_schema}, this lettingo "
                f"knows {len(known)}); upgrade lettingo to use it"
            )
        if migrations.pending(self.db):
            if self.read_only:
                raise LettingoError(f"{self.path} is read-only and was written by an older lettingo: copy it to a "
                                    "writable place once so it can be upgraded")  # fmt: skip
            migrations.apply(self.db)
            self.db.execute(f"PRAGMA user_version = {len(known)}")

    @property
    def schema_version(self) -> int:
        return self.db.execute("PRAGMA user_version").fetchone()[0]

    def close(self) -> None:
        self.db.close()

    # --- reading artifacts ----------------------------------------------------------------------------

    def get(self, artifact_id: int) -> Artifact:
        rows = list(self.db.query("SELECT * FROM artifacts WHERE id = ?", [artifact_id]))
        if not rows:
            raise ArtifactNotFound(f"no artifact with id {artifact_id}")
        return Artifact.from_row(rows[0])

    def list(self, kind: str | None = None, name: str | None = None) -> list[Artifact]:
        where, args = ["status = 'complete'"], []
        if kind:
            where.append("kind = ?")
            args.append(kind)
        if name:
            where.append("name = ?")
            args.append(name)
        sql = f"SELECT * FROM artifacts WHERE {' AND '.join(where)} ORDER BY id"
        return [Artifact.from_row(row) for row in self.db.query(sql, args)]

    def latest(self, kind: str) -> Artifact | None:
        sql = "SELECT * FROM artifacts WHERE kind = ? AND status = 'complete' ORDER BY id DESC LIMIT 1"
        rows = list(self.db.query(sql, [kind]))
        return Artifact.from_row(rows[0]) if rows else None

    def resolve(self, ref: str, kind: str | None = None) -> Artifact:
        """Find the artifact a reference names: `12`, `name@v3`, `name:latest`, `name`, or `kind:` + any."""
        ref = ref.strip()
        wanted = f" of kind {kind}" if kind else ""
        if ref.isdigit():
            artifact = self.get(int(ref))
            if artifact.status != "complete":
                raise ArtifactNotFound(f"artifact {ref} is still being written (rerun its stage to finish it)")
            if kind and artifact.kind != kind:
                raise ArtifactNotFound(f"artifact {ref} is {artifact.ref}, not a {kind}")
            return artifact
        body, version = ref, None
        if body.endswith(":latest"):
            body = body.removesuffix(":latest")
        elif (match := re.search(r"@v(\d+)$", body)) is not None:
            version = int(match.group(1))
            body = body[: match.start()]
        ref_kind = None
        if ":" in body:
            ref_kind, body = body.split(":", 1)
            if ref_kind not in KINDS:
                raise ArtifactNotFound(f"bad reference {ref!r}: {ref_kind!r} is not a kind ({', '.join(KINDS)})")
            if kind and ref_kind != kind:
                raise ArtifactNotFound(f"{ref} is a {ref_kind}, but a {kind} is needed here")
        kind = ref_kind or kind
        candidates = self.list(kind=kind, name=body)
        if version is not None:
            candidates = [a for a in candidates if a.version == version]
        else:  # latest version of each kind that has this name
            newest: dict[str, Artifact] = {}
            for artifact in candidates:
                newest[artifact.kind] = artifact
            candidates = list(newest.values())
        if not candidates:
            raise ArtifactNotFound(f"no artifact {ref!r}{wanted} in {self.path}")
        if len(candidates) > 1:
            options = ", ".join(a.ref for a in candidates)
            raise ArtifactNotFound(f"{ref!r} is ambiguous ({options}); prefix the kind, e.g. {candidates[0].ref}")
        return candidates[0]

    def rows(self, artifact: Artifact, table: str, where: str = "", args: Iterable = (), **equal) -> Iterator[dict]:
        """An artifact's rows of one table in canonical order, without the artifact_id column; `column=value`
        keeps the rows with that value (a list or tuple: any of its values). `where` takes raw SQL (for tests and
        inspection; lettingo's own code uses the keywords)."""
        key = ROW_TABLES[artifact.kind][table]
        conditions, values = [where] if where else [], list(args)
        for column, value in equal.items():
            if not re.fullmatch(r"[a-z_]+", column):
                raise ValueError(f"not a column name: {column!r}")
            chosen = list(value) if isinstance(value, list | tuple) else [value]
            conditions.append(f"{column} IN ({', '.join('?' for _ in chosen)})")
            values.extend(chosen)
        condition = "".join(f" AND {c}" for c in conditions)
        sql = f"SELECT * FROM {table} WHERE artifact_id = ?{condition} ORDER BY {', '.join(key)}"
        for row in self.db.query(sql, [artifact.id, *values]):
            row.pop("artifact_id")
            yield row

    def distinct(self, artifact: Artifact, table: str, columns: tuple[str, ...]) -> set[tuple]:
        """The distinct values of some columns of an artifact's rows (e.g. the users a pending run has done)."""
        if table not in ROW_TABLES.get(artifact.kind, {}):
            raise ValueError(f"a {artifact.kind} artifact has no {table} rows")
        sql = f"SELECT DISTINCT {', '.join(columns)} FROM {table} WHERE artifact_id = ?"
        return {tuple(row) for row in self.db.execute(sql, [artifact.id]).fetchall()}

    def split_interactions(self, split: Artifact, roles: tuple[str, ...]) -> Iterator[dict]:
        """A split's interactions of some roles (history, recent, target) with their item's text, in order."""
        dataset_id = split.params["dataset"]
        marks = ", ".join("?" for _ in roles)
        sql = f"""SELECT s.user_id, s.role, s.position, s.item_id, s.rating, s.sentiment, i.text
                  FROM split_interactions s JOIN items i ON i.artifact_id = ? AND i.item_id = s.item_id
                  WHERE s.artifact_id = ? AND s.role IN ({marks}) ORDER BY s.user_id, s.role, s.position"""
        yield from self.db.query(sql, [dataset_id, split.id, *roles])

    # --- runs and the run cache -----------------------------------------------------------------------

    @staticmethod
    def run_key(stage: str, inputs: dict[str, Iterable[int] | int], params: dict) -> str:
        normalized = {role: sorted(ids) if not isinstance(ids, int) else [ids] for role, ids in inputs.items()}
        return hashlib.sha256(canonical_json([stage, normalized, params]).encode()).hexdigest()

    def cached(self, run_key: str) -> Artifact | None:
        """The artifact a finished run with this key produced, if it is still in the store."""
        rows = list(
            self.db.query(
                """SELECT a.* FROM runs r JOIN artifacts a ON a.id = r.output_artifact_id
                   WHERE r.run_key = ? AND r.status = 'complete' AND a.status = 'complete'
                   ORDER BY r.id DESC LIMIT 1""",
                [run_key],
            )
        )
        return Artifact.from_row(rows[0]) if rows else None

    def pending(self, run_key: str) -> Artifact | None:
        """A pending artifact left by an interrupted run with this key: resume it instead of starting over."""
        rows = list(
            self.db.query(
                """SELECT a.* FROM artifacts a JOIN runs r ON a.run_id = r.id
                   WHERE r.run_key = ? AND a.status = 'pending' ORDER BY a.id DESC LIMIT 1""",
                [run_key],
            )
        )
        return Artifact.from_row(rows[0]) if rows else None

    def start_run(self, stage: str, run_key: str, params: dict, inputs: dict[str, Iterable[int] | int]) -> int:
        with self.transaction():
            run = {
                "stage": stage,
                "run_key": run_key,
                "params": canonical_json(params),
                "status": "running",
                "started_at": utc_now(),
            }
            run_id = self.db["runs"].insert(run).last_pk
            for role, ids in inputs.items():
                for artifact_id in [ids] if isinstance(ids, int) else ids:
                    link = {"run_id": run_id, "role": role, "artifact_id": artifact_id}
                    self.db["run_inputs"].insert(link, ignore=True)
        return run_id

    def run(self, run_id: int) -> dict:
        row = self.db["runs"].get(run_id)
        return {**row, "params": json.loads(row["params"]), "stats": json.loads(row["stats"])}

    def run_inputs(self, run_id: int) -> list[tuple[str, Artifact]]:
        sql = "SELECT role, artifact_id FROM run_inputs WHERE run_id = ? ORDER BY role, artifact_id"
        return [(row["role"], self.get(row["artifact_id"])) for row in self.db.query(sql, [run_id])]

    def consumers(self, artifact: Artifact, kind: str | None = None) -> list[Artifact]:
        """The complete artifacts (of `kind`, if given) whose run read `artifact`: lineage read forwards."""
        sql = """SELECT DISTINCT a.* FROM run_inputs i JOIN artifacts a ON a.run_id = i.run_id
                 WHERE i.artifact_id = ? AND a.status = 'complete'""" + (" AND a.kind = ?" if kind else "")
        rows = self.db.query(sql + " ORDER BY a.id", [artifact.id, *([kind] if kind else [])])
        return [Artifact.from_row(row) for row in rows]

    # --- the training log (every stage that trains) -------------------------------------------------------

    def record_training_step(self, run_id: int, step: int, epoch, loss, metrics: dict, logged: dict) -> None:
        """One logged step of a training run (replacing a step logged before a resume): its epoch and loss, the
        figures the trainer names (`metrics`) and everything it logged."""
        row = {"run_id": run_id, "step": step, "epoch": epoch, "loss": loss}
        with self.transaction():
            self.db["training_steps"].insert(
                {**row, "metrics": canonical_json(metrics), "logged": canonical_json(logged)}, replace=True
            )

    def training_steps(self, run_id: int) -> list[dict]:
        """The logged steps of a training run, in order: step, epoch, loss, each named metric, and `logged`."""
        rows = self.db.query("SELECT * FROM training_steps WHERE run_id = ? ORDER BY step", [run_id])
        return [{**{k: v for k, v in row.items() if k != "metrics"}, **json.loads(row["metrics"])} for row in rows]

    # --- writing artifacts ----------------------------------------------------------------------------

    def begin(self, kind: str, name: str, params: dict, run_id: int | None) -> Artifact:
        """Create a pending artifact that rows and files can be added to until `finalize`."""
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}")
        check_name(name)
        with self.transaction():
            record = {
                "kind": kind,
                "name": name,
                "version": None,
                "status": "pending",
                "params": canonical_json(params),
                "lettingo_version": lettingo_version(),
                "package_versions": canonical_json(package_versions()),
                "run_id": run_id,
                "created_at": utc_now(),
            }
            artifact_id = self.db["artifacts"].insert(record).last_pk
        return self.get(artifact_id)

    def insert_rows(self, artifact: Artifact, table: str, rows: Iterable[dict]) -> None:
        """Add rows to a pending artifact. Call inside `transaction()` to make a batch all-or-nothing."""
        if artifact.status != "pending":
            raise ValueError(f"{artifact.ref} is complete and immutable")
        if table not in ROW_TABLES.get(artifact.kind, {}):
            raise ValueError(f"a {artifact.kind} artifact has no {table} rows")
        rows = ({**row, "artifact_id": artifact.id} for row in rows)
        self.db[table].insert_all(rows, batch_size=INSERT_BATCH_ROWS, alter=False)

    def finalize(
        self, artifact: Artifact, counts: dict | None = None, report: dict | None = None, stats: dict | None = None
    ) -> Artifact:
        """Seal a pending artifact: hash it, and either give it the next version or, when an artifact of the
        same kind and name has identical content, drop it and return that one."""
        with self.transaction():
            content_hash = self.content_hash(artifact, report or {})
            table_counts = self._table_counts(artifact)
            all_counts = {**table_counts, **(counts or {})}
            primary = PRIMARY_TABLE.get(artifact.kind)
            all_counts.setdefault("rows", table_counts.get(primary, len(self.files(artifact))))
            existing = list(
                self.db.query(
                    """SELECT * FROM artifacts WHERE kind = ? AND name = ? AND content_hash = ?
                       AND status = 'complete' ORDER BY version LIMIT 1""",
                    [artifact.kind, artifact.name, content_hash],
                )
            )
            if existing:
                result = Artifact.from_row(existing[0])
                self.db.execute("DELETE FROM artifacts WHERE id = ?", [artifact.id])
            else:
                next_version = self.db.execute(
                    "SELECT COALESCE(MAX(version), 0) + 1 FROM artifacts WHERE kind = ? AND name = ?",
                    [artifact.kind, artifact.name],
                ).fetchone()[0]
                sealed = {
                    "version": next_version,
                    "status": "complete",
                    "content_hash": content_hash,
                    "counts": canonical_json(all_counts),
                    "report": canonical_json(report or {}),
                    "created_at": utc_now(),
                }
                self.db["artifacts"].update(artifact.id, sealed)
                result = self.get(artifact.id)
            if artifact.run_id is not None:
                self.finish_run(artifact.run_id, result.id, stats)
        return result

    def finish_run(self, run_id: int, output_artifact_id: int, stats: dict | None = None) -> None:
        finished = {
            "status": "complete",
            "output_artifact_id": output_artifact_id,
            "stats": canonical_json(stats or {}),
            "finished_at": utc_now(),
        }
        self.db["runs"].update(run_id, finished)

    def discard(self, artifact: Artifact) -> None:
        """Delete a pending artifact and its rows (its blobs stay until `gc`)."""
        if artifact.status != "pending":
            raise ValueError(f"{artifact.ref} is complete and immutable")
        with self.transaction():
            self.db.execute("DELETE FROM artifacts WHERE id = ?", [artifact.id])

    def _table_counts(self, artifact: Artifact) -> dict[str, int]:
        sql = "SELECT COUNT(*) FROM {} WHERE artifact_id = ?"
        tables = ROW_TABLES.get(artifact.kind, {})
        return {table: self.db.execute(sql.format(table), [artifact.id]).fetchone()[0] for table in tables}

    # --- content hashes -------------------------------------------------------------------------------

    def content_hash(self, artifact: Artifact, report: dict | None = None) -> str:
        """sha256 of the artifact's canonical JSON rows; the file's sha256 for a single file; a sorted
        manifest hash for several files; rows, files and report combined when an artifact has more than one."""
        parts = []
        report = artifact.report if report is None else report  # before the one-file shortcut: a report counts
        tables = ROW_TABLES.get(artifact.kind, {})
        if tables:
            digest = hashlib.sha256()
            for table in sorted(tables):
                digest.update(f"table {table}\n".encode())
                for row in self.rows(artifact, table):
                    digest.update(canonical_json(row).encode())
                    digest.update(b"\n")
            parts.append(("rows", digest.hexdigest()))
        files = self.files(artifact)
        if files:
            if len(files) == 1 and not tables and not report:
                return files[0]["blob_hash"]
            manifest = "".join(f"{f['path']}\t{f['blob_hash']}\n" for f in files)
            parts.append(("files", hashlib.sha256(manifest.encode()).hexdigest()))
        if report:
            parts.append(("report", hashlib.sha256(canonical_json(report).encode()).hexdigest()))
        if len(parts) == 1:
            return parts[0][1]
        return hashlib.sha256("".join(f"{label} {value}\n" for label, value in parts).encode()).hexdigest()

    # --- blobs ----------------------------------------------------------------------------------------

    def blob_path(self, blob_hash: str) -> Path:
        return self.blob_dir / blob_hash[:2] / blob_hash

    def put_blob(self, source: Path) -> tuple[str, int]:
        """Copy a file into the blob folder under its sha256 (temp file, then rename); returns (hash, size)."""
        tmp_dir = self.blob_dir / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        try:
            with open(source, "rb") as reader, tempfile.NamedTemporaryFile(dir=tmp_dir, delete=False) as writer:
                try:
                    while chunk := reader.read(HASH_CHUNK_BYTES):
                        digest.update(chunk)
                        writer.write(chunk)
                        size += len(chunk)
                    writer.flush()
                    os.fsync(writer.fileno())
                except BaseException:
                    os.unlink(writer.name)
                    raise
        except OSError as error:  # the copy is gone; say what it needed
            if (full := disk_full(self.path, error, Path(source).stat().st_size)) is not None:
                raise full from None
            raise
        blob_hash = digest.hexdigest()
        final = self.blob_path(blob_hash)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            os.unlink(writer.name)
        else:
            os.replace(writer.name, final)
        self.db["blobs"].insert({"hash": blob_hash, "size": size, "created_at": utc_now()}, ignore=True)
        return blob_hash, size

    def add_file(self, artifact: Artifact, source: Path, path_in_artifact: str | None = None) -> str:
        if artifact.status != "pending":
            raise ValueError(f"{artifact.ref} is complete and immutable")
        blob_hash, _ = self.put_blob(Path(source))
        entry = {"artifact_id": artifact.id, "path": path_in_artifact or Path(source).name, "blob_hash": blob_hash}
        self.db["artifact_files"].insert(entry, replace=True)
        return blob_hash

    def add_dir(self, artifact: Artifact, directory: Path, prefix: str = "") -> None:
        """Add every file under `directory`, at its relative path (after `prefix`) inside the artifact."""
        directory = Path(directory)
        for file in sorted(p for p in directory.rglob("*") if p.is_file()):
            self.add_file(artifact, file, prefix + file.relative_to(directory).as_posix())

    def remove_files(self, artifact: Artifact, prefix: str) -> None:
        """Drop a pending artifact's files under `prefix` (e.g. an older checkpoint); blobs stay until `gc`."""
        if artifact.status != "pending":
            raise ValueError(f"{artifact.ref} is complete and immutable")
        sql = "DELETE FROM artifact_files WHERE artifact_id = ? AND substr(path, 1, ?) = ?"
        self.db.execute(sql, [artifact.id, len(prefix), prefix])

    def files(self, artifact: Artifact) -> list[dict]:
        return list(
            self.db.query(
                """SELECT f.path, f.blob_hash, b.size FROM artifact_files f JOIN blobs b ON b.hash = f.blob_hash
                   WHERE f.artifact_id = ? ORDER BY f.path""",
                [artifact.id],
            )
        )

    def materialize(self, artifact: Artifact, destination: Path, prefix: str = "") -> Path:
        """Copy an artifact's files out of the blob folder into `destination` (a directory); with `prefix`,
        only the files under it, the prefix removed from their paths."""
        destination = Path(destination)
        for entry in self.files(artifact):
            if not entry["path"].startswith(prefix):
                continue
            source = self.blob_path(entry["blob_hash"])
            if not source.exists():
                missing = (
                    f"the blob folder {self.blob_dir} is missing" if not self.blob_dir.exists() else "it is missing"
                )
                raise IntegrityError(f"{artifact.ref}: cannot read its file {entry['path']}: {missing} "
                                     "(`lettingo store verify` lists what is lost)")  # fmt: skip
            target = destination / entry["path"].removeprefix(prefix)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        return destination

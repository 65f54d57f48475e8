"""The artifact store: one SQLite database plus a content-addressed blob folder beside it.

Artifacts are immutable and versioned per (kind, name). Row data live in real tables keyed by artifact id
(see store/*.sql); large files live in the blob folder, named by their sha256. A resumable stage writes
into a *pending* artifact, which gets its version and content hash only when `finalize` seals it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from importlib.metadata import PackageNotFoundError, version as package_version
from pathlib import Path
from typing import Iterable, Iterator

from lettingo_cli import __version__
from lettingo_cli.errors import ArtifactNotFound, LettingoError


def _import_sqlite_utils():
    """sqlite-utils imports pandas and numpy when installed, only to map their scalar types to column types.
    lettingo's schema is SQL, so hide them during that import: it saves ~0.3 s on every store command."""
    hidden = [name for name in ("pandas", "numpy") if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # makes `import name` raise ImportError
    try:
        import sqlite_utils
        from sqlite_utils.migrations import Migrations
    finally:
        for name in hidden:
            del sys.modules[name]
    return sqlite_utils, Migrations


sqlite_utils, Migrations = _import_sqlite_utils()

KINDS = ("dataset", "split", "profiles", "scores", "pairs", "adapter", "export", "eval")

# The row tables of each kind, each with the columns that order its rows canonically (its primary key).
ROW_TABLES: dict[str, dict[str, tuple[str, ...]]] = {
    "dataset": {"interactions": ("user_id", "seq"), "items": ("item_id",), "users": ("user_id",)},
    "split": {"split_interactions": ("user_id", "role", "position"), "split_users": ("user_id",)},
    "profiles": {"profiles": ("user_id", "generator", "sample_index")},
    "scores": {"scores": ("user_id", "generator", "sample_index", "target_position")},
    "pairs": {"pairs": ("user_id", "pair_index")},
}
# The table whose row count is an artifact's `count`.
PRIMARY_TABLE = {
    "dataset": "interactions",
    "split": "split_users",
    "profiles": "profiles",
    "scores": "scores",
    "pairs": "pairs",
}
KEY_PACKAGES = ("torch", "transformers", "trl", "peft", "llama-cpp-python", "sqlite-utils", "typer")
BUSY_TIMEOUT_MS = 30_000
_HASH_CHUNK = 1 << 20
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def canonical_json(value) -> str:
    """The one JSON spelling hashes are computed over: sorted keys, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def package_versions() -> dict[str, str]:
    found = {}
    for name in KEY_PACKAGES:
        try:
            found[name] = package_version(name)
        except PackageNotFoundError:
            continue
    return found


def check_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise LettingoError(
            f"invalid artifact name {name!r}: use letters, digits, '.', '_' and '-', starting with a letter or digit"
        )
    return name


def safe_name(text: str) -> str:
    """Turn a file or folder name into a valid artifact name (`All Beauty 5` -> `All-Beauty-5`)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._")
    return cleaned or "dataset"


@dataclass(frozen=True)
class Artifact:
    id: int
    kind: str
    name: str
    version: int | None
    status: str
    content_hash: str | None
    params: dict
    counts: dict
    report: dict
    lettingo_version: str
    package_versions: dict
    run_id: int | None
    created_at: str

    @property
    def ref(self) -> str:
        return f"{self.kind}:{self.name}@v{self.version}"

    @property
    def count(self) -> int:
        return int(self.counts.get("rows", 0))

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "ref": self.ref,
            "kind": self.kind,
            "name": self.name,
            "version": self.version,
            "count": self.count,
            "counts": self.counts,
            "content_hash": self.content_hash,
            "params": self.params,
            "report": self.report,
            "created_at": self.created_at,
            "run_id": self.run_id,
            "lettingo_version": self.lettingo_version,
            "package_versions": self.package_versions,
        }

    @classmethod
    def from_row(cls, row: dict) -> "Artifact":
        return cls(
            id=row["id"],
            kind=row["kind"],
            name=row["name"],
            version=row["version"],
            status=row["status"],
            content_hash=row["content_hash"],
            params=json.loads(row["params"]),
            counts=json.loads(row["counts"]),
            report=json.loads(row["report"]),
            lettingo_version=row["lettingo_version"],
            package_versions=json.loads(row["package_versions"]),
            run_id=row["run_id"],
            created_at=row["created_at"],
        )


def _migrations() -> tuple[Migrations, list[str]]:
    """Register every store/NNNN_*.sql file, in order, as one sqlite-utils migration."""
    migrations = Migrations("lettingo")
    names = []
    sql_files = sorted(
        (entry for entry in resources.files("lettingo_cli.migrations").iterdir() if entry.name.endswith(".sql")),
        key=lambda entry: entry.name,
    )
    for entry in sql_files:
        sql = entry.read_text(encoding="utf-8")
        name = entry.name.removesuffix(".sql")

        def apply(db, sql=sql):
            db.executescript(sql)

        migrations(name=name)(apply)
        names.append(name)
    return migrations, names


class Store:
    """A lettingo store at `path` (the SQLite file) with its blobs in `<path without .db>.blobs/`."""

    def __init__(self, path: Path | str, create: bool = True):
        self.path = Path(path)
        if not self.path.exists() and not create:
            raise ArtifactNotFound(f"no lettingo store at {self.path} (ingest a dataset first, or pass --store)")
        if self.path.parent and not self.path.parent.exists():
            raise LettingoError(f"cannot create a store at {self.path}: folder {self.path.parent} does not exist")
        self.blob_dir = self.path.with_name(self.path.stem + ".blobs")
        self.db = sqlite_utils.Database(self.path, execute_plugins=False)
        conn = self.db.conn
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        self.db.enable_wal()
        conn.execute("PRAGMA synchronous = NORMAL")
        self._migrate()

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
        rows = list(
            self.db.query(
                "SELECT * FROM artifacts WHERE kind = ? AND status = 'complete' ORDER BY id DESC LIMIT 1", [kind]
            )
        )
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
        candidates = [a for a in self.list(kind=kind, name=body)]
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

    def rows(self, artifact: Artifact, table: str, where: str = "", args: Iterable = ()) -> Iterator[dict]:
        """An artifact's rows of one table in canonical order, without the artifact_id column."""
        key = ROW_TABLES[artifact.kind][table]
        sql = f"SELECT * FROM {table} WHERE artifact_id = ? {('AND ' + where) if where else ''} ORDER BY {', '.join(key)}"
        for row in self.db.query(sql, [artifact.id, *args]):
            row.pop("artifact_id")
            yield row

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
        with self.db.atomic():
            run_id = self.db["runs"].insert(
                {
                    "stage": stage,
                    "run_key": run_key,
                    "params": canonical_json(params),
                    "status": "running",
                    "started_at": utc_now(),
                }
            ).last_pk
            for role, ids in inputs.items():
                for artifact_id in [ids] if isinstance(ids, int) else ids:
                    self.db["run_inputs"].insert(
                        {"run_id": run_id, "role": role, "artifact_id": artifact_id}, ignore=True
                    )
        return run_id

    def begin_or_resume(
        self, stage: str, kind: str, name: str, params: dict, inputs: dict, run_key: str, force: bool = False
    ) -> tuple[Artifact, bool]:
        """The pending artifact an interrupted run with this key left (resumed=True), or a new run's one."""
        artifact = None if force else self.pending(run_key)
        if artifact is not None:
            return artifact, True
        run_id = self.start_run(stage, run_key, params, inputs)
        return self.begin(kind, name, params, run_id), False

    def run(self, run_id: int) -> dict:
        row = self.db["runs"].get(run_id)
        return {**row, "params": json.loads(row["params"]), "stats": json.loads(row["stats"])}

    def run_inputs(self, run_id: int) -> list[tuple[str, Artifact]]:
        rows = self.db.query("SELECT role, artifact_id FROM run_inputs WHERE run_id = ? ORDER BY role, artifact_id", [run_id])
        return [(row["role"], self.get(row["artifact_id"])) for row in rows]

    # --- writing artifacts ----------------------------------------------------------------------------

    def begin(self, kind: str, name: str, params: dict, run_id: int | None) -> Artifact:
        """Create a pending artifact that rows and files can be added to until `finalize`."""
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}")
        check_name(name)
        with self.db.atomic():
            artifact_id = self.db["artifacts"].insert(
                {
                    "kind": kind,
                    "name": name,
                    "version": None,
                    "status": "pending",
                    "params": canonical_json(params),
                    "lettingo_version": __version__,
                    "package_versions": canonical_json(package_versions()),
                    "run_id": run_id,
                    "created_at": utc_now(),
                }
            ).last_pk
        return self.get(artifact_id)

    def insert_rows(self, artifact: Artifact, table: str, rows: Iterable[dict], batch_size: int = 10_000) -> None:
        """Add rows to a pending artifact. Call inside `db.atomic()` to make a batch all-or-nothing."""
        if artifact.status != "pending":
            raise ValueError(f"{artifact.ref} is complete and immutable")
        if table not in ROW_TABLES.get(artifact.kind, {}):
            raise ValueError(f"a {artifact.kind} artifact has no {table} rows")
        self.db[table].insert_all(
            ({**row, "artifact_id": artifact.id} for row in rows), batch_size=batch_size, alter=False
        )

    def finalize(
        self, artifact: Artifact, counts: dict | None = None, report: dict | None = None, stats: dict | None = None
    ) -> Artifact:
        """Seal a pending artifact: hash it, and either give it the next version or, when an artifact of the
        same kind and name has identical content, drop it and return that one."""
        with self.db.atomic():
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
                self.db["artifacts"].update(
                    artifact.id,
                    {
                        "version": next_version,
                        "status": "complete",
                        "content_hash": content_hash,
                        "counts": canonical_json(all_counts),
                        "report": canonical_json(report or {}),
                        "created_at": utc_now(),
                    },
                )
                result = self.get(artifact.id)
            if artifact.run_id is not None:
                self.finish_run(artifact.run_id, result.id, stats)
        return result

    def finish_run(self, run_id: int, output_artifact_id: int, stats: dict | None = None) -> None:
        self.db["runs"].update(
            run_id,
            {
                "status": "complete",
                "output_artifact_id": output_artifact_id,
                "stats": canonical_json(stats or {}),
                "finished_at": utc_now(),
            },
        )

    def discard(self, artifact: Artifact) -> None:
        """Delete a pending artifact and its rows (its blobs stay until `gc`)."""
        if artifact.status != "pending":
            raise ValueError(f"{artifact.ref} is complete and immutable")
        with self.db.atomic():
            self.db.execute("DELETE FROM artifacts WHERE id = ?", [artifact.id])

    def _table_counts(self, artifact: Artifact) -> dict[str, int]:
        return {
            table: self.db.execute(f"SELECT COUNT(*) FROM {table} WHERE artifact_id = ?", [artifact.id]).fetchone()[0]
            for table in ROW_TABLES.get(artifact.kind, {})
        }

    # --- content hashes -------------------------------------------------------------------------------

    def content_hash(self, artifact: Artifact, report: dict | None = None) -> str:
        """sha256 of the artifact's canonical JSON rows; the file's sha256 for a single file; a sorted
        manifest hash for several files; rows, files and report combined when an artifact has more than one."""
        parts = []
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
        report = artifact.report if report is None else report
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
        with open(source, "rb") as reader, tempfile.NamedTemporaryFile(dir=tmp_dir, delete=False) as writer:
            try:
                while chunk := reader.read(_HASH_CHUNK):
                    digest.update(chunk)
                    writer.write(chunk)
                    size += len(chunk)
                writer.flush()
                os.fsync(writer.fileno())
            except BaseException:
                os.unlink(writer.name)
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
        self.db["artifact_files"].insert(
            {"artifact_id": artifact.id, "path": path_in_artifact or Path(source).name, "blob_hash": blob_hash},
            replace=True,
        )
        return blob_hash

    def add_dir(self, artifact: Artifact, directory: Path) -> None:
        directory = Path(directory)
        for file in sorted(p for p in directory.rglob("*") if p.is_file()):
            self.add_file(artifact, file, file.relative_to(directory).as_posix())

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
            target = destination / entry["path"].removeprefix(prefix)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.blob_path(entry["blob_hash"]), target)
        return destination

    # --- lineage, verify, gc --------------------------------------------------------------------------

    def lineage(self, artifact: Artifact) -> list[dict]:
        """The chain of runs and inputs back to the dataset(s), depth-first, each artifact once."""
        chain, seen = [], set()

        def visit(current: Artifact, depth: int, role: str | None) -> None:
            run = self.run(current.run_id) if current.run_id else None
            chain.append({"depth": depth, "role": role, "artifact": current, "run": run})
            if current.id in seen or run is None:
                return
            seen.add(current.id)
            for input_role, parent in self.run_inputs(run["id"]):
                visit(parent, depth + 1, input_role)

        visit(artifact, 0, None)
        return chain

    def verify(self) -> dict:
        """Rehash every blob and every complete artifact; report what does not match."""
        problems = []
        integrity = self.db.execute("PRAGMA integrity_check").fetchone()[0]
        if integrity != "ok":
            problems.append(f"sqlite integrity_check: {integrity}")
        for row in self.db.execute("PRAGMA foreign_key_check").fetchall():
            problems.append(f"foreign key violation: {row}")
        blobs = list(self.db.query("SELECT hash, size FROM blobs ORDER BY hash"))
        referenced = {row["blob_hash"] for row in self.db.query("SELECT DISTINCT blob_hash FROM artifact_files")}
        for blob in blobs:
            path = self.blob_path(blob["hash"])
            if not path.exists():
                if blob["hash"] in referenced:
                    problems.append(f"blob {blob['hash'][:12]} is missing ({path})")
                continue
            actual = sha256_file(path)
            if actual != blob["hash"]:
                problems.append(f"blob {blob['hash'][:12]} is corrupt: its content hashes to {actual[:12]}")
        artifacts = self.list()
        for artifact in artifacts:
            actual = self.content_hash(artifact)
            if actual != artifact.content_hash:
                problems.append(
                    f"{artifact.ref} (id {artifact.id}) changed: hash {actual[:12]}, recorded {artifact.content_hash[:12]}"
                )
        pending = self.db.execute("SELECT COUNT(*) FROM artifacts WHERE status = 'pending'").fetchone()[0]
        return {
            "ok": not problems,
            "artifacts": len(artifacts),
            "blobs": len(blobs),
            "pending": pending,
            "problems": problems,
        }

    def gc(self, dry_run: bool = False) -> dict:
        """Remove blob files and records no artifact refers to, and temp files of interrupted writes."""
        referenced = {row["blob_hash"] for row in self.db.query("SELECT DISTINCT blob_hash FROM artifact_files")}
        removed_files, freed = [], 0
        if self.blob_dir.exists():
            for path in sorted(self.blob_dir.glob("*/*")):
                if path.is_file() and (path.parent.name == "tmp" or path.name not in referenced):
                    freed += path.stat().st_size
                    removed_files.append(path)
        unreferenced_rows = [
            row["hash"] for row in self.db.query("SELECT hash FROM blobs") if row["hash"] not in referenced
        ]
        if not dry_run:
            with self.db.atomic():
                for blob_hash in unreferenced_rows:
                    self.db.execute("DELETE FROM blobs WHERE hash = ?", [blob_hash])
            for path in removed_files:
                path.unlink(missing_ok=True)
        return {"removed": [str(p) for p in removed_files], "bytes": freed, "dry_run": dry_run}


def log(message: str) -> None:
    """A line for the user on stderr (stdout carries only results)."""
    print(message, file=sys.stderr)

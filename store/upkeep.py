"""Looking after a store: the lineage of an artifact, verification of every hash, and garbage collection.

A mixin of Store (it uses the store's database and blob folder), kept apart from reading and writing."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lettingo_cli.store.digest import sha256_file

if TYPE_CHECKING:
    from lettingo_cli.store.artifact import Artifact


class Upkeep:
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
        referenced = self._referenced_blobs()
        if referenced and not self.blob_dir.exists():  # one line for the folder, not one per file
            problems.append(f"the blob folder {self.blob_dir} is missing: {len(referenced)} file(s) of artifacts "
                            "were in it (moved or deleted? restore it beside the store)")  # fmt: skip
            blobs_to_check = []
        else:
            blobs_to_check = blobs
        for blob in blobs_to_check:
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
                    f"{artifact.ref} (id {artifact.id}) changed: hash {actual[:12]}, "
                    f"recorded {artifact.content_hash[:12]}"
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
        referenced = self._referenced_blobs()
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
            with self.transaction():
                for blob_hash in unreferenced_rows:
                    self.db.execute("DELETE FROM blobs WHERE hash = ?", [blob_hash])
            for path in removed_files:
                path.unlink(missing_ok=True)
        return {"removed": [str(p) for p in removed_files], "bytes": freed, "dry_run": dry_run}

    def _referenced_blobs(self) -> set[str]:
        return {row["blob_hash"] for row in self.db.query("SELECT DISTINCT blob_hash FROM artifact_files")}

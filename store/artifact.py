"""What an artifact is: its kinds, the row tables of each kind, its name rules and its record."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from lettingo_cli.store.errors import LettingoError

KINDS = ("dataset", "split", "profiles", "scores", "pairs", "adapter", "export", "eval", "predictor")

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
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def check_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise LettingoError(
            f"invalid artifact name {name!r}: use letters, digits, '.', '_' and '-', starting with a letter or digit"
        )
    return name


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
    def from_row(cls, row: dict) -> Artifact:
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

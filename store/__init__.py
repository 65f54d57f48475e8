"""The versioned artifact store that every stage reads and writes (installed as `lettingo_cli.store`).
It imports nothing of the package above it: the stages build on it, never the other way round.

artifact.py   what an artifact is: kinds, row tables, names, the Artifact record
store.py      the Store: SQLite + blob folder; reading, writing, sealing, hashing; every SQL statement
stage.py      the stage protocol: run cache, resume, finalize, discard
upkeep.py     lineage, verify, gc
errors.py     the errors a store raises, with their exit codes (the root of lettingo's errors)
digest.py     the one JSON spelling content hashes are computed over, and file hashes
migrations/   the schema, as numbered .sql files
"""

from lettingo_cli.store.artifact import KINDS, Artifact, check_name
from lettingo_cli.store.stage import StageRun, Verbs
from lettingo_cli.store.store import Store, broken_store, disk_full

__all__ = ["KINDS", "Artifact", "StageRun", "Store", "Verbs", "broken_store", "check_name", "disk_full"]

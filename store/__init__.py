"""The versioned artifact store that every stage reads and writes (installed as `lettingo_cli.store`).

artifact.py   what an artifact is: kinds, row tables, names, the Artifact record
store.py      the Store: SQLite + blob folder; reading, writing, sealing, hashing; every SQL statement
stage.py      the stage protocol: run cache, resume, finalize, discard
upkeep.py     lineage, verify, gc
migrations/   the schema, as numbered .sql files
"""

from lettingo_cli.store.artifact import KINDS, Artifact, check_name
from lettingo_cli.store.stage import StageRun
from lettingo_cli.store.store import Store, broken_store, disk_full

__all__ = ["KINDS", "Artifact", "StageRun", "Store", "broken_store", "check_name", "disk_full"]

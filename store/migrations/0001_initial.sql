-- lettingo store, schema 1.
-- Artifacts are immutable once complete; every row table hangs off artifacts(id) and is deleted with it.
-- Everything here is plain SQLite: inspect it with sqlite3 or datasette.

-- A run is one execution of a stage. run_key hashes the stage, its input artifacts and its parameters:
-- a stage asked to redo the same work on the same inputs finds the finished run and returns its artifact.
CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    stage TEXT NOT NULL,
    run_key TEXT NOT NULL,
    params TEXT NOT NULL DEFAULT '{}',          -- JSON
    status TEXT NOT NULL CHECK (status IN ('running', 'complete', 'failed')),
    output_artifact_id INTEGER,                 -- the artifact the run produced (or found identical)
    stats TEXT NOT NULL DEFAULT '{}',           -- JSON: timings and throughput; not part of any content hash
    started_at TEXT NOT NULL,
    finished_at TEXT
);
CREATE INDEX runs_by_key ON runs (run_key);

-- version is NULL while an artifact is pending (being written by a resumable stage); pending artifacts are
-- never returned by reference resolution.
CREATE TABLE artifacts (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('dataset', 'split', 'profiles', 'scores', 'pairs', 'adapter',
                                       'export', 'eval')),
    name TEXT NOT NULL,
    version INTEGER,
    status TEXT NOT NULL CHECK (status IN ('pending', 'complete')),
    content_hash TEXT,
    params TEXT NOT NULL DEFAULT '{}',          -- JSON: the parameters that produced it
    counts TEXT NOT NULL DEFAULT '{}',          -- JSON: users, items, interactions, rows, ...
    report TEXT NOT NULL DEFAULT '{}',          -- JSON: stage reports (class balance, diversity, ...)
    lettingo_version TEXT NOT NULL,
    package_versions TEXT NOT NULL DEFAULT '{}', -- JSON: key package versions at creation
    run_id INTEGER REFERENCES runs (id),
    created_at TEXT NOT NULL,
    UNIQUE (kind, name, version)
);
CREATE INDEX artifacts_by_hash ON artifacts (kind, name, content_hash);
CREATE INDEX artifacts_by_run ON artifacts (run_id);

-- Lineage: which artifacts a run read, and in which role.
CREATE TABLE run_inputs (
    run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    artifact_id INTEGER NOT NULL REFERENCES artifacts (id),
    PRIMARY KEY (run_id, role, artifact_id)
);

-- Content-addressed files in the blob folder beside the database (<blobs>/ab/abcdef...).
CREATE TABLE blobs (
    hash TEXT PRIMARY KEY,                      -- streaming sha256 of the file
    size INTEGER NOT NULL,
    created_at TEXT NOT NULL
);

-- The files of an artifact: one row for a single file, one per file for a directory (path relative to it).
CREATE TABLE artifact_files (
    artifact_id INTEGER NOT NULL REFERENCES artifacts (id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    blob_hash TEXT NOT NULL REFERENCES blobs (hash),
    PRIMARY KEY (artifact_id, path)
);
CREATE INDEX artifact_files_by_blob ON artifact_files (blob_hash);

-- dataset rows
CREATE TABLE users (
    artifact_id INTEGER NOT NULL REFERENCES artifacts (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    attributes TEXT NOT NULL DEFAULT '{}',      -- JSON: age, gender, ... where the source has them
    PRIMARY KEY (artifact_id, user_id)
);
CREATE TABLE items (
    artifact_id INTEGER NOT NULL REFERENCES artifacts (id) ON DELETE CASCADE,
    item_id TEXT NOT NULL,
    title TEXT NOT NULL,
    text TEXT NOT NULL,                         -- what prompts show: title + year + genres, or a description
    attributes TEXT NOT NULL DEFAULT '{}',      -- JSON: year, genres, brand, categories, ...
    PRIMARY KEY (artifact_id, item_id)
);
-- seq orders a user's interactions by (ts, item_id, source order): stable and deterministic.
CREATE TABLE interactions (
    artifact_id INTEGER NOT NULL REFERENCES artifacts (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    item_id TEXT NOT NULL,
    rating REAL NOT NULL,
    ts INTEGER NOT NULL,                        -- unix seconds
    PRIMARY KEY (artifact_id, user_id, seq)
);

-- split rows: the protocol of docs/method.md, self-contained for the later stages.
CREATE TABLE split_users (
    artifact_id INTEGER NOT NULL REFERENCES artifacts (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    partition TEXT NOT NULL CHECK (partition IN ('train', 'test')),
    PRIMARY KEY (artifact_id, user_id)
);
CREATE INDEX split_users_by_partition ON split_users (artifact_id, partition);
CREATE TABLE split_interactions (
    artifact_id INTEGER NOT NULL REFERENCES artifacts (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('history', 'recent', 'target')),
    position INTEGER NOT NULL,                  -- oldest first within its role
    item_id TEXT NOT NULL,
    rating REAL NOT NULL,
    ts INTEGER NOT NULL,
    sentiment TEXT NOT NULL CHECK (sentiment IN ('like', 'neutral', 'dislike')),
    PRIMARY KEY (artifact_id, user_id, role, position)
);

-- profiles rows: one free-form profile of one user by one generator.
CREATE TABLE profiles (
    artifact_id INTEGER NOT NULL REFERENCES artifacts (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    generator TEXT NOT NULL,
    sample_index INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    prompt_hash TEXT NOT NULL,
    text TEXT NOT NULL,
    n_tokens INTEGER,
    flags TEXT NOT NULL DEFAULT '[]',           -- JSON list: "empty", "degenerate", ...
    PRIMARY KEY (artifact_id, user_id, generator, sample_index)
);

-- scores rows: the predictor's verdict on one profile for one held-out target.
CREATE TABLE scores (
    artifact_id INTEGER NOT NULL REFERENCES artifacts (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    generator TEXT NOT NULL,
    sample_index INTEGER NOT NULL,
    target_position INTEGER NOT NULL,
    predicted TEXT NOT NULL,
    truth TEXT NOT NULL,
    correct INTEGER NOT NULL,
    p_true REAL,
    PRIMARY KEY (artifact_id, user_id, generator, sample_index, target_position)
);

-- pairs rows: one DPO preference pair.
CREATE TABLE pairs (
    artifact_id INTEGER NOT NULL REFERENCES artifacts (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    pair_index INTEGER NOT NULL,
    prompt TEXT NOT NULL,
    chosen TEXT NOT NULL,
    rejected TEXT NOT NULL,
    chosen_score REAL,
    rejected_score REAL,
    PRIMARY KEY (artifact_id, user_id, pair_index)
);

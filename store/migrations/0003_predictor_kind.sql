-- lettingo: rebuilds tables (store.py applies this with foreign keys off, in one transaction, checked)
-- lettingo store, schema 3: a new artifact kind, `predictor` (a trained predictor, fitted once and frozen: its
-- weights are its files). SQLite cannot change a CHECK constraint in place, so the artifacts table is rebuilt
-- the documented way (https://www.sqlite.org/lang_altertable.html#otheralter): a new table, the rows copied,
-- the old table dropped, the new one renamed; the tables that refer to artifacts(id) then refer to the new one.
CREATE TABLE artifacts_new (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('dataset', 'split', 'profiles', 'scores', 'pairs', 'adapter',
                                       'export', 'eval', 'predictor')),
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
INSERT INTO artifacts_new SELECT * FROM artifacts;
DROP TABLE artifacts;
ALTER TABLE artifacts_new RENAME TO artifacts;
CREATE INDEX artifacts_by_hash ON artifacts (kind, name, content_hash);
CREATE INDEX artifacts_by_run ON artifacts (run_id);

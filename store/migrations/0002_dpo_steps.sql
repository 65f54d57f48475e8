-- lettingo store, schema 2: the training log of dpo runs, one row per logged step (queryable per run).
CREATE TABLE dpo_steps (
    run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step INTEGER NOT NULL,
    epoch REAL,
    loss REAL,
    rewards_chosen REAL,
    rewards_rejected REAL,
    rewards_margins REAL,
    rewards_accuracies REAL,
    logged TEXT NOT NULL DEFAULT '{}',          -- JSON: everything the trainer logged at this step
    PRIMARY KEY (run_id, step)
);

-- lettingo store, schema 4: the training log of grpo runs, one row per logged step (queryable per run).
CREATE TABLE grpo_steps (
    run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step INTEGER NOT NULL,
    epoch REAL,
    loss REAL,
    reward REAL,                                -- mean reward of the step's sampled profiles
    reward_std REAL,                            -- their spread
    kl REAL,                                    -- KL to the base model (logged when beta > 0)
    completion_length REAL,                     -- mean tokens of the sampled profiles
    logged TEXT NOT NULL DEFAULT '{}',          -- JSON: everything the trainer logged at this step
    PRIMARY KEY (run_id, step)
);

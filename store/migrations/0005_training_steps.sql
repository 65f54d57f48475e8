-- lettingo store, schema 5: one training log for every trainer (dpo, grpo, and any stage that trains), one row
-- per logged step: the columns every trainer has, and the metrics each trainer names as one JSON object. The
-- rows of the per-stage logs of schemas 2 and 4 move into it unchanged, and those tables go.
CREATE TABLE training_steps (
    run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step INTEGER NOT NULL,
    epoch REAL,
    loss REAL,
    metrics TEXT NOT NULL DEFAULT '{}',         -- JSON: the figures the trainer names (reward, rewards_margins, ...)
    logged TEXT NOT NULL DEFAULT '{}',          -- JSON: everything the trainer logged at this step
    PRIMARY KEY (run_id, step)
);
INSERT INTO training_steps (run_id, step, epoch, loss, metrics, logged)
SELECT run_id, step, epoch, loss,
       json_object('rewards_chosen', rewards_chosen, 'rewards_rejected', rewards_rejected,
                   'rewards_margins', rewards_margins, 'rewards_accuracies', rewards_accuracies),
       logged
FROM dpo_steps;
INSERT INTO training_steps (run_id, step, epoch, loss, metrics, logged)
SELECT run_id, step, epoch, loss,
       json_object('reward', reward, 'reward_std', reward_std, 'kl', kl, 'completion_length', completion_length),
       logged
FROM grpo_steps;
DROP TABLE dpo_steps;
DROP TABLE grpo_steps;

"""bench/paper.sh end to end on a small MovieLens-format fixture with the tiny model: the chain never breaks."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.conftest import write_ml100k

ROOT = Path(__file__).resolve().parents[1]


def test_paper_script_runs_the_whole_chain_and_writes_its_results(tmp_path, tiny_model):
    data = write_ml100k(tmp_path / "ml", n_users=14, n_items=60, per_user=45)
    results = tmp_path / "results"
    env = {
        **os.environ,
        "DATA": str(data),
        "STORE": str(tmp_path / "store" / "lettingo.db"),
        "NAME": "paper-ci",
        "RESULTS": str(results),
        "USERS": "8",
        "TEST_USERS": "4",
        "N": "3",
        "N_TEST": "1",
        "MAX_TOKENS": "12",
        "GENERATOR": f"gguf:{tiny_model.gguf}",
        "BASE": str(tiny_model.hf_dir),
        "PREDICTOR": "emb:minilm",  # the tiny LLM saturates its label probabilities: no score differences, no pairs
        "RULE": "best-worst",
        "DPO_ARGS": "--max-steps 2 --lora-r 4 --lr 5e-3 --max-length 4096",
    }
    done = subprocess.run(
        ["bash", str(ROOT / "bench" / "paper.sh")], capture_output=True, text=True, env=env, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    payload = json.loads((results / "paper-ci.json").read_text())
    difference = payload["aligned_minus_base"]
    assert set(difference) >= {"accuracy", "ci_low", "ci_high"}
    assert -1 <= difference["ci_low"] <= difference["accuracy"] <= difference["ci_high"] <= 1
    for name in ("10h", "base", "aligned"):
        assert payload[name]["users"] == 4 and 0 <= payload[name]["accuracy"] <= 1
    assert payload["pairs_used"] > 0 and payload["dpo"]["steps"] == 2
    assert set(payload["stage_seconds"]) == {
        "ingest",
        "split",
        "gen_train",
        "score",
        "pair",
        "dpo",
        "export",
        "gen_test_base",
        "gen_test_aligned",
        "eval_10h",
        "eval_base",
        "eval_aligned",
    }
    assert payload["artifacts"]["export"]["ref"] == "export:paper-ci@v1"
    assert payload["settings"]["dpo_args"] == "--max-steps 2 --lora-r 4 --lr 5e-3 --max-length 4096"
    assert "aligned - base: accuracy" in (results / "paper-ci.md").read_text()
    # the script's own stdout is the comparison (A = aligned, B = base)
    assert "A - B accuracy" in done.stdout

    # rerun: every stage is cached, nothing is trained again
    again = subprocess.run(
        ["bash", str(ROOT / "bench" / "paper.sh")], capture_output=True, text=True, env=env, timeout=600
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already trained" in again.stderr and "already exported" in again.stderr

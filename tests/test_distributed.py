"""The distributed path, on the CPU: dpo and grpo under `accelerate launch --num_processes 2` (gloo) on the tiny
model. Rank 0 alone writes the artifact and the training log, a worker prints nothing, and a kill -9 of the whole
launch resumes to the same step count."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lettingo_cli.store import Store
from tests.conftest import free_port, kill_at_first_checkpoint
from tests.test_dpo import write_pairs

pytestmark = pytest.mark.slow


def launch(*args: str) -> list[str]:
    """`accelerate launch` of a lettingo command in 2 processes on this machine's CPU (torch.distributed, gloo)."""
    return [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(free_port()), "-m", "lettingo_cli", *args,
    ]  # fmt: skip


def run(command: list[str], store_path) -> subprocess.CompletedProcess:
    env = {**os.environ, "LETTINGO_STORE": str(store_path), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)


def test_dpo_in_two_processes_rank_zero_writes_and_a_killed_launch_resumes(store_path, tiny_model):
    write_pairs(store_path, "obvious", 16)
    dpo = launch("dpo", "pairs:obvious", "--base", tiny_model.hf_dir, "--max-steps", "6", "--save-steps", "2",
                 "--batch-size", "1", "--lora-r", "4", "--precision", "fp32", "--lr", "5e-3")  # fmt: skip
    done = run(dpo, store_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout == "adapter:obvious@v1\n"  # one line: rank 1 printed nothing
    assert "2 process(es), DistributedType.MULTI_CPU" in done.stderr
    store = Store(store_path)
    adapter = store.resolve("adapter:obvious")
    assert [s["step"] for s in store.training_steps(adapter.run_id)] == list(range(1, 7))
    assert adapter.counts["steps"] == 6 and len(store.list(kind="adapter")) == 1
    store.close()

    again = [*dpo, "--name", "killed"]
    env_command = ["env", f"LETTINGO_STORE={store_path}", "OMP_NUM_THREADS=1", "CUDA_VISIBLE_DEVICES=", *again]
    kill_at_first_checkpoint(env_command, store_path, wait_s=300)  # the launcher and both workers, at once
    store = Store(store_path)
    assert [a.ref for a in store.list(kind="adapter")] == ["adapter:obvious@v1"]  # nothing half-written
    store.close()
    resumed = run([*again, "--resume"], store_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from checkpoint-" in resumed.stderr and resumed.stdout == "adapter:killed@v1\n"
    store = Store(store_path)
    killed = store.resolve("adapter:killed")
    assert killed.counts["steps"] == 6
    assert [s["step"] for s in store.training_steps(killed.run_id)] == list(range(1, 7))
    assert not any(f["path"].startswith("checkpoints/") for f in store.files(killed))


def test_grpo_in_two_processes(po_store, store_path, tiny_model):
    assert po_store("fit", "split:po", "--predictor", "reader:bow").exit_code == 0  # the judge, fitted once before
    grpo = launch("grpo", "split:po", "--base", tiny_model.hf_dir, "--users", "train:4", "--generations", "2",
                  "--targets", "2",
                  "--max-steps", "2", "--max-tokens", "8", "--predictor", "reader:bow", "--lora-r", "4",
                  "--precision", "fp32")  # fmt: skip
    done = run(grpo, store_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout == "adapter:po-grpo@v1\n"
    store = Store(store_path)
    adapter = store.resolve("adapter:po-grpo")
    assert [s["step"] for s in store.training_steps(adapter.run_id)] == [1, 2]
    assert len(store.list(kind="adapter")) == 1 and adapter.report["method"].startswith("GRPO")

"""The CLI contract: stdout carries results only, references chain through stdin, exit codes, fast start."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from lettingo_cli.cli_tools import completion_script
from tests.conftest import write_ml100k

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def populated(lettingo, tmp_path):
    folder = write_ml100k(tmp_path / "movielens-tiny", n_users=15)
    assert lettingo("ingest", "movielens", folder).exit_code == 0
    assert lettingo("split", "--test-users", "5").exit_code == 0
    return lettingo


def test_store_ls_and_json_objects(populated):
    listing = populated("store", "ls")
    assert listing.stdout == "dataset:movielens-tiny@v1\nsplit:movielens-tiny@v1\n"
    assert populated("store", "ls", "--kind", "split").stdout == "split:movielens-tiny@v1\n"
    lines = populated("store", "ls", "--json").stdout.splitlines()
    objects = [json.loads(line) for line in lines]  # NDJSON
    for obj in objects:
        assert {"id", "kind", "name", "version", "count"} <= obj.keys()
    assert objects[0]["counts"]["users"] == 15 and objects[0]["count"] == objects[0]["counts"]["interactions"]


def test_show_json_has_counts_and_accepts_every_reference_form(populated):
    by_ref = json.loads(populated("store", "show", "dataset:movielens-tiny@v1", "--json").stdout)
    assert by_ref["counts"] == {"users": 15, "items": 40, "interactions": 375, "rows": 375}
    for ref in (str(by_ref["id"]), "dataset:movielens-tiny", "dataset:movielens-tiny:latest"):
        assert json.loads(populated("store", "show", ref, "--json").stdout)["id"] == by_ref["id"]
    from_stdin = populated("store", "show", "-", "--json", input="dataset:movielens-tiny@v1\n")
    assert json.loads(from_stdin.stdout)["id"] == by_ref["id"]
    # the --json output of one command is valid stdin for the next
    piped = populated(
        "store", "show", "-", "--json", input=populated("store", "ls", "--kind", "split", "--json").stdout
    )
    assert json.loads(piped.stdout)["kind"] == "split"


def test_split_reads_its_dataset_reference_from_stdin(lettingo, tmp_path):
    folder = write_ml100k(tmp_path / "ml")
    ref = lettingo("ingest", "movielens", folder).stdout
    result = lettingo("split", "-", "--name", "from-stdin", input=ref)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "split:from-stdin@v1\n"


def test_missing_and_ambiguous_references_exit_3(populated):
    ambiguous = populated("store", "show", "movielens-tiny@v1")
    assert ambiguous.exit_code == 3 and "ambiguous" in ambiguous.stderr and ambiguous.stdout == ""
    missing = populated("store", "show", "nothing@v1")
    assert missing.exit_code == 3 and missing.stderr.count("\n") == 1
    assert populated("split", "dataset:nothing").exit_code == 3


def test_lineage_goes_back_to_the_dataset(populated):
    text = populated("store", "lineage", "split:movielens-tiny").stdout.splitlines()
    assert text[0].startswith("split:movielens-tiny@v1  <- split (run 2")
    assert text[1].startswith("  dataset: dataset:movielens-tiny@v1  <- ingest (run 1")
    nodes = [
        json.loads(line) for line in populated("store", "lineage", "split:movielens-tiny", "--json").stdout.splitlines()
    ]
    assert [(n["kind"], n["depth"], n["run"]["stage"]) for n in nodes] == [
        ("split", 0, "split"),
        ("dataset", 1, "ingest"),
    ]


def test_verify_exits_4_on_tampering(populated, store_path):
    ok = populated("store", "verify")
    assert ok.exit_code == 0 and ok.stdout.startswith("ok: 2 artifacts")
    conn = sqlite3.connect(store_path)
    conn.execute("UPDATE interactions SET rating = 1 WHERE seq = 0")
    conn.commit()
    conn.close()
    broken = populated("store", "verify")
    assert broken.exit_code == 4
    assert "dataset:movielens-tiny@v1" in broken.stderr and broken.stderr.strip().endswith("0 pending")


def test_gc_on_a_clean_store_removes_nothing(populated):
    result = populated("store", "gc", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["removed"] == []


def test_store_commands_do_not_create_a_store(lettingo, store_path):
    result = lettingo("store", "ls")
    assert result.exit_code == 3 and "no lettingo store" in result.stderr
    assert not store_path.exists()


def test_usage_errors_exit_2(lettingo):
    assert lettingo("split", "--targets", "0").exit_code == 2
    assert lettingo("store", "ls", "--kind", "bogus").exit_code == 2


def test_help_lists_the_pipeline_in_order(lettingo):
    section = lettingo("--help").stdout.split("Commands:")[1]
    commands = [line.split()[0] for line in section.splitlines() if line.startswith("  ") and line[2] != " "]
    pipeline = ["ingest", "split", "gen", "score", "fit", "pair", "eval", "sft", "dpo", "grpo", "export", "profile"]
    assert commands == [*pipeline, "store", "doctor", "completion"]


def test_help_starts_without_heavy_imports():
    code = (
        "import sys; from lettingo_cli.cli import main; sys.argv = ['lettingo', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'transformers', 'trl', 'peft', 'llama_cpp', 'sqlite_utils', 'numpy')"
        " if m in sys.modules]\n"
        "print('HEAVY', heavy, file=sys.stderr)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "Usage: lettingo" in result.stdout
    assert "HEAVY []" in result.stderr


def test_console_script_reports_errors_in_one_line(tmp_path):
    env = {**os.environ, "LETTINGO_STORE": str(tmp_path / "x.db")}
    result = subprocess.run(["lettingo", "store", "show", "nothing"], capture_output=True, text=True, env=env)
    assert result.returncode == 3
    assert result.stderr.strip().splitlines() == [
        f"lettingo: error: no lettingo store at {tmp_path / 'x.db'} (ingest a dataset first, or pass --store)"
    ]


@pytest.mark.parametrize(
    "shell, filename", [("bash", "lettingo.bash"), ("zsh", "_lettingo"), ("fish", "lettingo.fish")]
)
def test_completion_scripts_are_current(shell, filename, lettingo):
    """completions/ must equal what the CLI generates (regenerate: lettingo completion SHELL > completions/FILE)."""
    committed = (REPO / "completions" / filename).read_text()
    assert committed == completion_script(shell)
    assert lettingo("completion", shell).stdout == committed


def test_completion_answers_for_real(tmp_path):
    env = {**os.environ, "_LETTINGO_COMPLETE": "complete_bash", "COMP_WORDS": "lettingo sto", "COMP_CWORD": "1"}
    result = subprocess.run(["lettingo"], capture_output=True, text=True, env=env)
    assert result.stdout.split() == ["store"]


def test_version(lettingo):
    from lettingo_cli import __version__

    assert lettingo("--version").stdout == f"lettingo {__version__}\n"


def test_every_subpackage_is_listed_for_installation():
    """A non-editable install ships only the packages pyproject.toml lists (a missing one broke a GPU run)."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(root).parts) for p in (root / "lettingo_cli").rglob("__init__.py")}
    found |= {
        "lettingo_cli.store." + ".".join(p.parent.relative_to(root / "store").parts)
        for p in (root / "store").rglob("__init__.py")
        if p.parent != root / "store"
    }
    assert "lettingo_cli.store" in listed  # the top-level store/ folder installs as lettingo_cli.store
    assert found <= listed, f"missing from [tool.setuptools] packages: {sorted(found - listed)}"

"""The results files and the README's figures: every figure the README renders is the one its file records,
every file under bench/results names what wrote it, and a stage's seconds are counted once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench._common import last_steps, stage_seconds
from bench.readme_figures import README, misplaced, render, render_figure, unmarked

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def test_the_readme_figures_are_the_results_files_figures():
    text = README.read_text(encoding="utf-8")
    rendered, changed = render(text)
    assert not changed, (
        "README figures differ from their results files (python3 -m bench.readme_figures):\n" + "\n".join(changed)
    )
    assert rendered == text
    assert not unmarked(text), "\n".join(unmarked(text))
    assert not misplaced(text), "\n".join(misplaced(text))
    assert text.count("<!--=") > 200  # the profile-only sections are rendered, not a token few


def test_the_check_fails_on_a_figure_that_drifted(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(
        README.read_text(encoding="utf-8").replace("-->+0.048 [+0.013, +0.081]<", "-->+0.047 [+0.013, +0.081]<", 1)
    )
    command = [sys.executable, "-m", "bench.readme_figures", "--readme", str(readme)]
    checked = subprocess.run([*command, "--check"], capture_output=True, text=True, cwd=ROOT)
    assert checked.returncode == 1 and "'+0.047 [+0.013, +0.081]' -> '+0.048 [+0.013, +0.081]'" in checked.stderr
    assert subprocess.run(command, capture_output=True, text=True, cwd=ROOT).returncode == 0  # rewrites it
    assert readme.read_text(encoding="utf-8") == README.read_text(encoding="utf-8")


def _results(tmp_path, payload: dict) -> Path:
    (tmp_path / "run.json").write_text(json.dumps(payload))
    return tmp_path


def test_formats_on_known_values(tmp_path):
    folder = _results(
        tmp_path,
        {
            "differences": {"a - b": {"accuracy": {"value": 0.0201, "ci_low": -0.0174, "ci_high": 0.0612}}},
            "arms": {"base": {"accuracy": 0.5437, "accuracy_ci": [0.49, 0.5962]}},
            "share": 0.355,
            "curve": [{"loss": x} for x in (9.0, 1.0, 2.0, 3.0)],
            "seconds": 3010,
            "users": 100,
            "same": 32,
            "bar": {"gain": False, "ratio": True},
            "best": "sft_dpo",
        },
    )

    def figure(path, form):
        return render_figure("run", path, form, folder)

    assert figure("differences/a - b/accuracy", "ci") == "+0.020 [-0.017, +0.061]"
    assert figure("differences/a - b/accuracy", "+3") == "+0.020"
    assert figure("arms/base", "arm") == "0.544 [0.490, 0.596]"
    assert figure("share", "%1") == "35.5%" and figure("share", "%") == "36%"
    assert figure("curve/-3:/loss", "1") == "2.0"  # the mean of the last 3 steps
    assert figure("seconds", "min") == "50"
    assert figure("users - same", "0") == "68"
    assert figure("bar/gain", "met") == "**not met**" and figure("bar/ratio", "met") == "met"
    assert figure("best", "name") == "sft_dpo"
    with pytest.raises(KeyError, match="arms/aligned"):
        figure("arms/aligned/accuracy", "3")
    with pytest.raises(KeyError, match="unknown format"):
        figure("share", "pct")


def test_render_rewrites_a_stale_figure_and_says_where(tmp_path):
    folder = _results(tmp_path, {"x": 0.5115})
    text = "a\nthe stats template's macro F1 <!--=run|x|3-->0.512<!--=--> (printed 0.511)\n"
    rendered, changed = render(text, folder)
    assert rendered == "a\nthe stats template's macro F1 <!--=run|x|3-->0.511<!--=--> (printed 0.511)\n"
    assert changed == ["README.md:2: run|x|3: '0.512' -> '0.511'"]
    assert unmarked(f"<!--figures-->\n{rendered}<!--/figures-->") == [
        "README.md:~3: 0.511 is not rendered from a results file"
    ]


def test_every_results_file_names_its_generator():
    try:  # the tracked files (a checkout also holds ignored experiment stores under bench/results)
        listed = subprocess.run(["git", "ls-files", "bench/results"], capture_output=True, text=True, cwd=ROOT)
        tracked = listed.stdout.split() if listed.returncode == 0 else []
    except FileNotFoundError:  # no git: every plain file in the folder
        tracked = []
    files = [ROOT / name for name in tracked] or [p for p in RESULTS.iterdir() if p.is_file()]
    assert files
    for path in files:
        source = path if path.suffix == ".json" else path.with_suffix(".json")  # .md/.png/.refs/.times: its run's
        assert source.is_file(), f"{path.name}: no results JSON of its run names what wrote it"
        generated = json.loads(source.read_text())["generated_by"]
        script = generated["script"].split(" ")[0]
        assert (ROOT / script).is_file(), f"{source.name}: {script} does not exist"
        assert generated["command"]


def test_a_stage_is_counted_once_however_often_its_script_ran(tmp_path):
    times = tmp_path / "run.times"
    times.write_text("gen 0 100\ndpo 100 700.5\ngen 1000 1002\ndpo 1002 1003\neval 1003 1004\n")
    assert stage_seconds(times) == {"gen": 100.0, "dpo": 600.5, "eval": 1.0}


def test_one_summary_of_a_training_curve():
    steps = [{"loss": float(i), "margin": None if i % 2 else 1.0} for i in range(1, 15)]
    assert last_steps(steps, ("loss", "margin", "absent")) == {
        "steps_averaged": 10,
        "loss": 9.5,  # steps 5..14
        "margin": 1.0,  # the steps that logged it
        "absent": None,
    }

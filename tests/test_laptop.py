"""From an exported adapter to a laptop: the folder `export --out` leaves (model card, Ollama Modelfile, prompt
template), `lettingo profile` on a plain history file in process and against llama-cpp-python's OpenAI-compatible
server serving the same exported file, and its one-line errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

from lettingo_cli.model_card import _go_template_literal
from lettingo_cli.prompts import COMPLETION_STOPS, builtin_template, render
from lettingo_cli.store import Store
from tests.conftest import served_gguf, write_ratings_csv
from tests.test_export import train


def read_modelfile(text: str) -> list[tuple[str, str]]:
    """A small reader of Ollama's Modelfile format: `INSTRUCTION value` per line, `#` comments, values bare, in
    double quotes, or in triple quotes across lines."""
    commands, position = [], 0
    while position < len(text):
        line_end = text.find("\n", position)
        line_end = len(text) if line_end < 0 else line_end
        line = text[position:line_end].strip()
        if not line or line.startswith("#"):
            position = line_end + 1
            continue
        keyword, _, rest = line.partition(" ")
        start = text.index(rest, position) if rest else line_end
        if keyword.upper() == "PARAMETER":
            name, _, rest = rest.partition(" ")
            keyword, start = f"PARAMETER {name}", text.index(rest, start + len(name))
        if text.startswith('"""', start):
            end = text.index('"""', start + 3)
            value, position = text[start + 3 : end], text.find("\n", end) + 1 or len(text)
        elif text.startswith('"', start):
            end = text.index('"', start + 1)
            value, position = text[start + 1 : end], line_end + 1
        else:
            value, position = rest, line_end + 1
        commands.append((keyword.upper(), value))
    return commands


def render_go_template(template: str, prompt: str) -> str:
    """Ollama's template for a completion model: {{ .Prompt }} and printed string literals {{ "..." }} (Go's
    lexer reads a quoted string inside an action whole, braces and all); any other action is an error."""
    action = re.compile(r'\{\{\s*(\.Prompt|"(?:[^"\\]|\\.)*")\s*\}\}')
    rendered = action.sub(lambda m: prompt if m.group(1) == ".Prompt" else json.loads(m.group(1)), template)
    assert "{{" not in action.sub("", template), "an action this reader does not know"
    return rendered


HISTORY = [
    ("ann", "1", 5, 100, "Heat (1995)"),
    ("ann", "2", 1, 200, "Sense and Sensibility (1995)"),
    ("ann", "3", 4, 300, "GoldenEye {{ .System }} (1995)"),  # template markup in data stays data
    ("bob", "2", 5, 100, "Sense and Sensibility (1995)"),
    ("bob", "4", 3, 150, "Jumanji (1995)"),
]


def test_export_out_writes_a_model_card_a_modelfile_and_the_template(split_store, store_path, tiny_model, tmp_path):
    adapter = train(split_store, store_path, tiny_model.hf_dir)
    out = tmp_path / "laptop"
    result = split_store("export", "adapter:obvious", "--quant", "q8_0,q4_k_m", "--out", out)
    assert result.exit_code == 0, result.stderr
    store = Store(store_path)
    export, pairs = store.resolve("export:obvious"), store.resolve("pairs:obvious")
    expected = {"README.md", "Modelfile", "prompt-template.txt", "prompt-example.txt", "report.json"}
    assert sorted(p.name for p in out.iterdir()) == sorted(expected | {"model-q8_0.gguf", "model-q4_k_m.gguf"})
    for name in expected:  # nothing of the exporting machine's paths
        text = (out / name).read_text(encoding="utf-8")
        assert str(tmp_path) not in text and str(Path.home()) not in text and str(tiny_model.hf_dir) not in text

    card = (out / "README.md").read_text(encoding="utf-8")
    assert f"`{adapter.ref}` (content sha256 `{adapter.content_hash}`)" in card
    assert f"`{pairs.ref}` (content sha256 `{pairs.content_hash}`)" in card
    assert f"`{export.ref}`" in card and tiny_model.hf_dir.name in card
    assert export.report["files"]["q4_k_m"]["provenance"]["lettingo.base.sha256"] in card
    assert "None yet" in card  # no evaluation of its profiles in the store yet
    assert "ollama create" in card and "llama-server" in card and "lettingo profile" in card

    template = builtin_template(chat=False)  # the tiny base is a completion model
    assert (out / "prompt-template.txt").read_text(encoding="utf-8") == template.text + "\n"
    assert "{history}" in template.text and "Profile:" in (out / "prompt-example.txt").read_text(encoding="utf-8")

    commands = read_modelfile((out / "Modelfile").read_text(encoding="utf-8"))
    values = dict(commands)
    assert values["FROM"] == "./model-q4_k_m.gguf" and (out / values["FROM"]).exists()
    assert [v for k, v in commands if k == "PARAMETER STOP"] == list(COMPLETION_STOPS)
    assert values["PARAMETER TEMPERATURE"] == "1.0" and values["PARAMETER NUM_PREDICT"] == "200"
    rows = [
        {"text": title, "sentiment": {5: "like", 4: "like", 3: "neutral", 1: "dislike"}[r], "shown": f"{r}/5"}
        for user, _, r, _, title in HISTORY
        if user == "ann"
    ]
    lettingo_prompt = render(template, rows, chat=False)
    history_lines = lettingo_prompt.split("Ratings:\n")[-1].removesuffix("\nProfile:")
    assert render_go_template(values["TEMPLATE"], history_lines) == lettingo_prompt
    # a template of one's own may hold Go template markup: it is printed, never run
    assert render_go_template(_go_template_literal("a {{ .System }} b"), "") == "a {{ .System }} b"

    # the exporter's profiles, evaluated: a second --out names the evaluation with its interval
    gen = split_store(
        "gen", "--users", "test", "--generator", "gguf:export:obvious?quant=q4_k_m", "--n", "1", "--max-tokens", "8"
    )
    assert gen.exit_code == 0, gen.stderr
    evaluation = split_store("eval", gen.stdout.strip(), "--predictor", "emb:minilm")
    assert evaluation.exit_code == 0, evaluation.stderr
    again = split_store("export", "adapter:obvious", "--quant", "q8_0,q4_k_m", "--out", tmp_path / "again")
    assert again.exit_code == 0, again.stderr
    card = (tmp_path / "again" / "README.md").read_text(encoding="utf-8")
    report = Store(store_path).resolve(evaluation.stdout.strip()).report
    low, high = report["ci95"]["accuracy"]
    assert f"| `{evaluation.stdout.strip()}` |" in card and f"{report['accuracy']:.3f} [{low:.3f}, {high:.3f}]" in card
    faithful = report["faithfulness"]  # the tiny model names no real title, or some: the card shows what eval found
    if faithful["titles_in_history"] is None:
        assert card.count("| n/a |") >= 1
    else:
        assert f"| {faithful['titles_named']}: {faithful['titles_in_history']:.0%} |" in card


def test_profile_a_history_file_in_process_and_through_a_server(split_store, store_path, tiny_model, tmp_path):
    train(split_store, store_path, tiny_model.hf_dir)
    out = tmp_path / "laptop"
    assert split_store("export", "adapter:obvious", "--quant", "q4_k_m", "--out", out).exit_code == 0
    history = write_ratings_csv(tmp_path / "history.csv", HISTORY)
    common = ["--time", "when", "--title", "name", "--temperature", "0", "--max-tokens", "12", "--json"]

    local = split_store("profile", history, "--user", "user", "--rating", "stars", "--generator",
                        f"gguf:{out / 'model-q4_k_m.gguf'}", *common)  # fmt: skip
    assert local.exit_code == 0, local.stderr
    records = [json.loads(line) for line in local.stdout.splitlines()]
    assert [r["user"] for r in records] == ["ann", "bob"]
    assert all(set(r) == {"user", "sample", "profile", "tokens", "flags"} and r["tokens"] > 0 for r in records)

    from_store = split_store("profile", history, "--rating", "stars", "--generator", "gguf:export:obvious", *common)
    assert from_store.exit_code == 0, from_store.stderr
    assert [json.loads(line)["profile"] for line in from_store.stdout.splitlines()] == [r["profile"] for r in records]

    with served_gguf(out / "model-q4_k_m.gguf", alias="obvious") as url:
        served = split_store("profile", history, "--rating", "stars", "--generator",
                             f"openai:obvious@{url}?style=completion&repeat_penalty=1.0", *common)  # fmt: skip
    assert served.exit_code == 0, served.stderr
    assert [json.loads(line)["profile"] for line in served.stdout.splitlines()] == [r["profile"] for r in records]

    text = split_store("profile", history, "--rating", "stars", "--generator", "stats-text", "--title", "name")
    assert text.exit_code == 0 and text.stdout.startswith("user ann:\n") and "Heat (1995)" in text.stdout

    bad = split_store("profile", history, "--rating", "score", "--generator", "stats-text")
    assert bad.exit_code == 1 and bad.stderr.startswith("lettingo: error: ") and bad.stderr.count("\n") == 1
    assert "missing column(s) score" in bad.stderr
    unknown = split_store("profile", tmp_path / "history.parquet", "--generator", "stats-text")
    assert unknown.exit_code == 2 and "--format" in unknown.stderr

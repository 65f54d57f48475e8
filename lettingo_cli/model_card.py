"""What `export --out DIR` writes beside the GGUFs, so a downloaded folder says what the model is and how to prompt it.

    README.md            a model card: what the model does, base model and licence, adapter / pairs / split /
                         dataset references with their hashes, DPO settings, the export's verification figures,
                         the evaluations of this generator's profiles in the store, and how to run it (llama.cpp's
                         CLI and server, llama-cpp-python, Ollama, lettingo)
    Modelfile            for `ollama create NAME -f Modelfile`: the GGUF, lettingo's prompt template around
                         Ollama's {{ .Prompt }}, gen's stop sequences and sampling
    prompt-template.txt  the template itself, {history} where the rating lines go
    prompt-example.txt   the template rendered for a worked example history

Every figure comes from the store; no file names a path of the exporting machine (the rule the GGUFs' own
provenance keys follow).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from lettingo_cli.console import log
from lettingo_cli.errors import LettingoError
from lettingo_cli.export_layout import LORA, LORA_BASE, gguf_name, provenance
from lettingo_cli.prompts import (
    BUILTIN,
    COMPLETION_STOPS,
    HISTORY_LINES,
    PROFILE_TOKENS,
    SENTIMENT_WORDS,
    TEMPERATURE,
    Template,
    builtin_template,
    render,
)
from lettingo_cli.store import Artifact, Store
from lettingo_cli.training.common import trained_prompts

# Ollama runs one prompt at a time: MovieLens prompts are ~900 tokens, plus gen's 200 new ones
OLLAMA_CONTEXT = 2048
# llama-server splits its context (-c) among its slots (-np); lettingo's openai backend sends 4 requests at a time
SERVER_SLOTS = 4
PREFERRED_QUANTS = ("q4_k_m", "q8_0", "f16")  # the Modelfile's FROM: the smallest verified file
LICENCES = {
    "gemma-3-270m": "Gemma Terms of Use (https://ai.google.dev/gemma/terms) and the Gemma Prohibited Use Policy: "
    "a model derived from Gemma is distributed under the same terms, with a copy of them and this notice",
    "qwen2.5-1.5b": "Apache License 2.0 (Qwen2.5-Coder-1.5B-Instruct)",
}
# A made-up history in the prompts' own line format, for the worked example (no data set's rows ship).
EXAMPLE_HISTORY = [
    {"text": "Toy Story (1995) | Animation, Children's, Comedy", "sentiment": "like", "shown": "5/5"},
    {"text": "Waterworld (1995) | Action, Adventure, Sci-Fi", "sentiment": "dislike", "shown": "2/5"},
    {"text": "Se7en (1995) | Crime, Thriller", "sentiment": "like", "shown": "4/5"},
    {"text": "Clueless (1995) | Comedy, Romance", "sentiment": "neutral", "shown": "3/5"},
]


def write_bundle(store: Store, export: Artifact, out: Path, ggufs: list[str]) -> list[Path]:
    """README.md, Modelfile and the prompt files for an export whose GGUFs `ggufs` (names) are in `out`."""
    facts = _facts(store, export)
    template, chat = facts["template"], facts["chat"]
    written = {
        "prompt-template.txt": template.text if template.text.endswith("\n") else template.text + "\n",
        "prompt-example.txt": _example(template, chat),
        "README.md": model_card(facts, ggufs),
    }
    modelfile = ollama_modelfile(template, chat, ggufs, facts)
    if modelfile is not None:
        written["Modelfile"] = modelfile
    paths = []
    for name, text in written.items():
        (out / name).write_text(text, encoding="utf-8")
        log(f"wrote {out / name}")
        paths.append(out / name)
    return paths


def _example(template: Template, chat: bool) -> str:
    prompt = render(template, EXAMPLE_HISTORY, chat)
    return (prompt if isinstance(prompt, str) else prompt[0]["content"]) + "\n"


# --- what the store knows about an export -------------------------------------------------------------------


def _facts(store: Store, export: Artifact) -> dict:
    adapter = store.get(export.params["adapter"])
    training = store.run(adapter.run_id)
    lineage = {}  # kind -> the first artifact of that kind found walking back from the adapter
    for step in store.lineage(adapter):
        lineage.setdefault(step["artifact"].kind, step["artifact"])
    template, chat = _trained_template(store, adapter, lineage)
    shipped = provenance(export)
    return {
        "export": export,
        "adapter": adapter,
        "training": training["params"],
        "stage": training["stage"],
        "lineage": lineage,
        "base": shipped.get("lettingo.base.name", "unknown"),
        "base_sha256": shipped.get("lettingo.base.sha256", ""),
        "template": template,
        "chat": chat,
        "evaluations": evaluations(store, export),
    }


def _trained_template(store: Store, adapter: Artifact, lineage: dict) -> tuple[Template, bool]:
    """The prompt template the adapter was trained on (a built-in one, or one its profiles were written with),
    read off its first training prompt; and whether it is a chat prompt."""
    try:
        prompts = trained_prompts(store, adapter, 1)
    except LettingoError:  # an adapter from before the prompts file, not trained on pairs
        prompts = []
    chat = bool(prompts and prompts[0].startswith("[{"))
    if not prompts:
        return builtin_template(chat), chat
    prompt = json.loads(prompts[0])[-1]["content"] if chat else prompts[0]
    stored = lineage["profiles"].params.get("templates", {}).values() if "profiles" in lineage else []
    known = [Template(name, text) for name, text in BUILTIN.items()] + [Template(s["name"], s["text"]) for s in stored]
    for template in known:
        head, _, tail = template.text.partition("{history}")
        if prompt.startswith(head) and prompt.endswith(tail):
            return template, chat
    return builtin_template(chat), chat


def evaluations(store: Store, export: Artifact) -> list[dict]:
    """The eval artifacts of profiles this export wrote alone (gen --generator gguf:export:NAME), newest last."""
    found = []
    for profiles in store.list(kind="profiles"):
        generators = profiles.params.get("generators", [])
        if not generators or any(g.get("artifact") != export.id for g in generators):
            continue
        for scores in store.consumers(profiles, kind="scores"):
            for evaluation in store.consumers(scores, kind="eval"):
                report = evaluation.report
                found.append(
                    {
                        "eval": evaluation.ref,
                        "profiles": profiles.ref,
                        "generator": generators[0].get("label", ""),
                        "predictor": scores.params.get("predictor", {}).get("label", ""),
                        "users": report.get("users"),
                        "rows": report.get("n"),
                        "accuracy": report.get("accuracy"),
                        "macro_f1": report.get("macro_f1"),
                        "ci95": report.get("ci95", {}),
                        "baselines": {
                            name: figures.get("accuracy") for name, figures in report.get("baselines", {}).items()
                        },
                        "faithfulness": report.get("faithfulness") or {},
                    }
                )
    return found


# --- the model card -----------------------------------------------------------------------------------------


def _ref(artifact: Artifact | None) -> str:
    if artifact is None:
        return "not on record"
    return f"`{artifact.ref}` (content sha256 `{artifact.content_hash or 'none'}`)"


def _interval(entry: dict, metric: str) -> str:
    low, high = entry["ci95"].get(metric, (None, None))
    value = entry[metric]
    if value is None:
        return "n/a"
    return f"{value:.3f} [{low:.3f}, {high:.3f}]" if low is not None else f"{value:.3f}"


def model_card(facts: dict, ggufs: list[str]) -> str:
    export, adapter, lineage = facts["export"], facts["adapter"], facts["lineage"]
    report = export.report
    name = f"{export.name}-v{export.version}"
    main = _base_gguf(ggufs, facts["base"]) if gguf_name(LORA) in ggufs else _main_gguf(ggufs)
    settings = {k: v for k, v in facts["training"].items() if k not in ("pairs", "base", "users")}
    method = adapter.report.get("method") or facts["stage"]  # as its training stage describes it
    licence = LICENCES.get(facts["base"], "the base model's own licence (see its model card); it governs this model")
    lines = [
        f"# {name}: a lettingo profile generator",
        "",
        "A language model that reads a user's ratings (oldest first) and writes a free-form profile of the user: "
        "the genres, eras, themes and moods they like and dislike and how generous a rater they are. It is "
        f"`{facts['base']}` with a LoRA adapter trained by {method} (lettingo, after LettinGo, KDD 2025) towards "
        "profiles with which a frozen predictor better foresees the user's feelings about held-out items.",
        "",
        "## Files",
        "",
        "| file | what |",
        "|---|---|",
    ]
    for quant, figures in report.get("files", {}).items():
        shipped = [g for g in ggufs if quant in g] or [quant]
        lines.append(
            f"| `{shipped[0]}` | {figures.get('mb')} MB; greedy agreement with the merged model "
            f"{figures.get('agreement')} ({figures.get('decided_agreement')} without near-ties); tokenizer "
            f"parity {figures.get('tokenizer_parity')} |"
        )
    lines += [
        "| `Modelfile` | Ollama: `ollama create NAME -f Modelfile` |",
        "| `prompt-template.txt` | the prompt, `{history}` where the rating lines go |",
        "| `prompt-example.txt` | the prompt for a worked example history |",
        "| `report.json` | the export's verification report |",
        "",
        "## Base model and licence",
        "",
        f"- Base: `{facts['base']}` (weights sha256 `{facts['base_sha256'] or 'not on record'}`).",
        f"- Licence: {licence}.",
        "",
        "## How it was made",
        "",
        f"- Export: {_ref(export)}, quantized types {', '.join(export.params.get('quants', [])) or 'LoRA only'}.",
        f"- Adapter: {_ref(adapter)}.",
        f"- Preference pairs: {_ref(lineage.get('pairs'))}.",
        f"- Scores: {_ref(lineage.get('scores'))}.",
        f"- Profiles it learned from: {_ref(lineage.get('profiles'))}.",
        f"- Split: {_ref(lineage.get('split'))}.",
        f"- Dataset: {_ref(lineage.get('dataset'))}.",
        f"- Training settings (`lettingo {facts['stage']}`): `{json.dumps(settings, sort_keys=True)}`.",
        f"- lettingo {export.lettingo_version}.",
        "",
        "## Verification",
        "",
        f"Every shipped file was checked against the merged checkpoint on {report.get('texts')} texts (tokenizer "
        f"parity) and {report.get('prompts')} training prompts (greedy continuations): "
        f"{'passed' if report.get('passed') else 'FAILED: ' + '; '.join(report.get('failures', []))}.",
        "",
        "## Evaluation",
        "",
    ]
    evaluated = facts["evaluations"]
    if not evaluated:
        lines.append("None yet: the store that exported it holds no evaluation of profiles this model wrote.")
    else:
        lines += [
            "Profiles this model wrote, scored by the predictor on each user's held-out targets (95% bootstrap "
            "intervals over users):",
            "",
            "| eval | predictor | users | accuracy | macro F1 | always-majority accuracy | titles named: in the "
            "user's history |",
            "|---|---|---|---|---|---|---|",
        ]
        for entry in evaluated:
            majority = entry["baselines"].get("always_majority")
            faithful = entry["faithfulness"]
            share = faithful.get("titles_in_history")
            titles = f"{faithful['titles_named']}: {share:.0%}" if share is not None else "n/a"
            lines.append(
                f"| `{entry['eval']}` | `{entry['predictor']}` | {entry['users']} | {_interval(entry, 'accuracy')} | "
                f"{_interval(entry, 'macro_f1')} | {'n/a' if majority is None else f'{majority:.3f}'} | {titles} |"
            )
        lines += [
            "",
            "A profile that names films the user never rated invents them: the last column is the share of the "
            "titles the profiles name that are in the user's history (`lettingo eval` reports it).",
        ]
    split = lineage.get("split")
    thresholds = (split.params.get("dislike_max", 2), split.params.get("like_min", 4)) if split else (2, 4)
    lora = gguf_name(LORA) in ggufs
    lines += ["", *_how_to_run(main, facts["chat"], thresholds, lora)]
    return "\n".join(lines) + "\n"


def _how_to_run(main: str, chat: bool, thresholds: tuple[int, int], lora: bool) -> list[str]:
    stops = json.dumps(list(COMPLETION_STOPS))
    words = ", ".join(f'"{w}"' for w in SENTIMENT_WORDS.values())
    dislike_max, like_min = thresholds
    lines = [
        "## Prompting it",
        "",
        f"One line per rating, oldest first, at most the newest {HISTORY_LINES}: "
        '`- "<title> | <genres or other item text>": <liked|felt neutral about|disliked> (<rating>/5)` '
        f"(the words are {words}; it learned from ratings of {like_min} and up as liked, {dislike_max} and below "
        "as disliked, the rest neutral). Put the lines where `{history}` is in `prompt-template.txt`; "
        "`prompt-example.txt` is a filled-in prompt.",
    ]
    if lora:
        lines += [
            "",
            f"This export is a LoRA adapter: load `{main}` with `adapter-lora.gguf` over it (llama.cpp: "
            "`--lora adapter-lora.gguf`; llama-cpp-python: `lora_path=`; Ollama: the Modelfile's ADAPTER line; "
            "lettingo: `gguf:export:NAME` in the store that made it).",
        ]
    if not chat:
        lines += [""]
        lines.append(
            f"It is a completion model: it continues the prompt after `Profile:`; stop at any of {stops}. lettingo "
            f"samples at temperature {TEMPERATURE} from the full distribution (no top-k, top-p or "
            f"min-p), at most {PROFILE_TOKENS} new tokens."
        )
    lines += [
        "",
        "## Running it",
        "",
        "lettingo, on a CSV or JSON lines file of `user,item,rating[,time]` rows (see `lettingo profile --help`):",
        "",
        "```sh",
        f"lettingo profile history.csv --generator gguf:./{main} --title title --json",
        "```",
        "",
        "llama-cpp-python:",
        "",
        "```python",
        "from llama_cpp import Llama",
        "",
        f'llm = Llama(model_path="{main}", n_ctx={OLLAMA_CONTEXT}, verbose=False)',
        'prompt = open("prompt-example.txt").read().rstrip("\\n")',
        f"out = llm(prompt, max_tokens={PROFILE_TOKENS}, temperature={TEMPERATURE}, top_k=0, "
        f"top_p=1.0, min_p=0.0, repeat_penalty=1.0, stop={stops})",
        'print(out["choices"][0]["text"].strip())',
        "```",
        "",
        "llama.cpp's server (or `python -m llama_cpp.server --model ...`), then lettingo or any OpenAI client:",
        "",
        "```sh",
        f"llama-server -m {main} -np {SERVER_SLOTS} -c {SERVER_SLOTS * OLLAMA_CONTEXT} --port 8080"
        f"   # {SERVER_SLOTS} slots of {OLLAMA_CONTEXT} tokens",
        "lettingo profile history.csv --generator "
        '"openai:model@http://127.0.0.1:8080/v1?style=completion&repeat_penalty=1.0"',
        "```",
        "",
        "llama.cpp's command line (`llama-cli -no-cnv` in builds that still have it):",
        "",
        "```sh",
        f"llama-completion -m {main} -f prompt-example.txt -n {PROFILE_TOKENS} --temp {TEMPERATURE} "
        "--top-k 0 --top-p 1.0 --min-p 0",
        "```",
        "",
        "Ollama (the Modelfile holds the prompt, stops and sampling; send it only the rating lines):",
        "",
        "```sh",
        "ollama create lettingo-profiles -f Modelfile",
        'ollama run lettingo-profiles "$(cat ratings.txt)"   # ratings.txt: the rating lines, one per line',
        "```",
    ]
    return lines


def _base_gguf(ggufs: list[str], base: str) -> str:
    """The base a LoRA-only export applies to: shipped beside it, or the default model's file from its package."""
    if gguf_name(LORA_BASE) in ggufs:
        return gguf_name(LORA_BASE)
    from lettingo_cli.models import DEFAULT_GENERATOR

    return "gemma-3-270m-q4_k_m.gguf" if base == DEFAULT_GENERATOR else f"{base}.gguf"


def _main_gguf(ggufs: list[str]) -> str:
    for quant in PREFERRED_QUANTS:
        for name in ggufs:
            if name == gguf_name(quant):
                return name
    return ggufs[0] if ggufs else "model.gguf"


# --- the Ollama Modelfile -----------------------------------------------------------------------------------


def _modelfile_quote(value: str) -> str:
    """A Modelfile value: plain when it has no space, quote or newline; else in triple quotes (as Ollama's own
    serializer writes them), which cannot hold a triple quote."""
    if value and not re.search(r'[\s"]', value):
        return value
    return f'"""{value}"""'


def _go_template_literal(text: str) -> str:
    """Text inside a Go template, with any `{{` or `}}` of it printed literally instead of read as an action."""
    return re.sub(r"\{\{|\}\}", lambda m: f'{{{{ "{m.group(0)}" }}}}', text)


def ollama_modelfile(template: Template, chat: bool, ggufs: list[str], facts: dict) -> str | None:
    if '"""' in template.text:
        log("no Modelfile: the prompt template holds a triple quote, which a Modelfile value cannot")
        return None
    main = _main_gguf(ggufs)
    lines = [
        f"# {facts['export'].name}-v{facts['export'].version}: a lettingo profile generator (see README.md).",
        "# ollama create lettingo-profiles -f Modelfile; then send the rating lines, one per line, oldest first.",
    ]
    if gguf_name(LORA) in ggufs:
        lines += [f"FROM ./{_base_gguf(ggufs, facts['base'])}", f"ADAPTER ./{gguf_name(LORA)}"]
    else:
        lines.append(f"FROM ./{main}")
    if not chat:  # a completion model: the whole prompt is the template, the user's message its history
        head, _, tail = template.text.partition("{history}")
        body = _go_template_literal(head) + "{{ .Prompt }}" + _go_template_literal(tail)
        lines.append(f"TEMPLATE {_modelfile_quote(body)}")
        lines += [f"PARAMETER stop {_modelfile_quote(stop)}" for stop in COMPLETION_STOPS]
    lines += [
        f"PARAMETER temperature {TEMPERATURE}",
        f"PARAMETER num_predict {PROFILE_TOKENS}",
        f"PARAMETER num_ctx {OLLAMA_CONTEXT}",
        "PARAMETER top_k 0",
        "PARAMETER top_p 1.0",
        "PARAMETER min_p 0.0",
        "PARAMETER repeat_penalty 1.0",
    ]
    return "\n".join(lines) + "\n"

"""Verification of an export: what proves that a GGUF file is the merged model it claims to be.

Per file, against the merged HF checkpoint: tokenizer parity on tricky texts and the pairs' own prompts, greedy
agreement and log-prob differences on a continuation of real prompts, tensor types, size, stop metadata and
chat template; for a LoRA GGUF also that the base + LoRA is closer to the merged model than the base alone.
"""

from __future__ import annotations

import json
from pathlib import Path

from lettingo_cli.errors import require
from lettingo_cli.gguf_files import gguf_facts

# Texts the two tokenizers must agree on, besides the pairs' own prompts: accents, punctuation, scripts, spaces.
PARITY_TEXTS = (
    "",
    "Amélie (2001)",
    "Léon: The Professional (1994) — rated 5/5!",
    "Crème brûlée & naïve café; \"quotes\", 'apostrophes' and... ellipses?",
    "Señor Kon-Tiki · 千と千尋の神隠し · Ōkami",
    "two  spaces\nnew line\ttab  and trailing  ",
    "Profile: likes 90s thrillers (e.g. Se7en), dislikes musicals.",
)
# Greedy agreement a near-lossless file (f16, q8_0, or the LoRA over its base) must reach with the HF model, on
# the decided positions: those where the HF model's first choice leads its second by at least NEAR_TIE nats.
# Below that, any rounding can swap the two and a swap proves nothing about the file (a DPO-trained 270M model
# writing free text had 4 such near-ties in 48 positions; q8_0 swapped 3 of them and 2 of the 44 others).
# Agreement over all positions is reported too. q4_k_m is reported, not held to it (4-bit weights change some
# greedy choices).
MIN_AGREEMENT = 0.9
NEAR_TIE = 0.1
NEAR_LOSSLESS = ("f16", "q8_0", "lora")
# The LoRA check applies once the base alone differs from the merged model by more than this (mean |log-prob|
# difference); base + LoRA must then close at least half of that difference.
LORA_MIN_BASE_DIFF = 0.01
LORA_MAX_REMAINING_SHARE = 0.5
CONTEXT_MARGIN_TOKENS = 8  # spare context cells beyond prompt + continuation
MIN_CONTEXT_TOKENS = 64


def verify_export(hf_dir: Path, ggufs: dict[str, Path], prompts: list[str], continuation: int = 16) -> dict:
    """Tokenizer parity, greedy agreement and log-prob differences against the HF checkpoint, tensor types,
    sizes and stop metadata of each GGUF. `passed` is False, with `failures`, when a check fails."""
    transformers = require("transformers")
    torch = require("torch")
    from lettingo_cli.backends.llamacpp import LlamaCppBackend

    tokenizer = transformers.AutoTokenizer.from_pretrained(hf_dir)
    model = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    texts = list(PARITY_TEXTS) + [p if isinstance(p, str) else json.dumps(p) for p in prompts]
    prompt_ids = [tokenizer(text)["input_ids"] for text in texts[len(PARITY_TEXTS) :]]
    references = [_hf_greedy(model, ids, continuation, torch) for ids in prompt_ids]
    report: dict = {"files": {}, "failures": [], "texts": len(texts), "prompts": len(prompt_ids)}
    report["prompt_tokens"] = [len(ids) for ids in prompt_ids]
    for quant, path in ggufs.items():
        path, lora = path if isinstance(path, tuple) else (path, None)
        mismatches, agree, differences = _compare_with_hf(
            LlamaCppBackend, path, lora, tokenizer, texts, prompt_ids, references, continuation
        )
        decided = [same for same, clear in agree if clear]
        entry = {
            "mb": round((lora or path).stat().st_size / 1e6, 1),
            "tokenizer_parity": f"{len(texts) - len(mismatches)}/{len(texts)}",
            "tokenizer_mismatches": [text[:80] for text in mismatches],
            "agreement": round(sum(same for same, _ in agree) / len(agree), 3) if agree else None,
            "decided_agreement": round(sum(decided) / len(decided), 3) if decided else None,
            "near_ties": len(agree) - len(decided),
            "mean_abs_logprob_diff": round(sum(differences) / len(differences), 4) if differences else None,
            **gguf_facts(path),
        }
        if lora is not None:
            lora_facts = gguf_facts(lora)
            _, _, without = _compare_with_hf(
                LlamaCppBackend, path, None, tokenizer, [], prompt_ids, references, continuation
            )
            entry["lora"] = {
                "tensors": len(lora_facts["tensors"]),
                "tensor_types": lora_facts["tensor_types"],
                "provenance": lora_facts["provenance"],
                "base_alone_mean_abs_logprob_diff": round(sum(without) / len(without), 4) if without else None,
            }
            base_alone = entry["lora"]["base_alone_mean_abs_logprob_diff"] or 0.0
            remaining = entry["mean_abs_logprob_diff"]
            if base_alone > LORA_MIN_BASE_DIFF and remaining > LORA_MAX_REMAINING_SHARE * base_alone:
                report["failures"].append(
                    f"lora: the base with the LoRA is not closer to the merged model than the base "
                    f"alone ({entry['mean_abs_logprob_diff']} vs {base_alone})"
                )
        report["files"][quant] = entry
        if mismatches:
            report["failures"].append(
                f"{quant}: llama.cpp and the HF tokenizer differ on {len(mismatches)} of "
                f"{len(texts)} texts (first: {mismatches[0][:40]!r})"
            )
        if entry["eos_token_id"] is None:
            report["failures"].append(f"{quant}: no tokenizer.ggml.eos_token_id, generation would not stop")
        if tokenizer.chat_template and not entry["chat_template"]:
            report["failures"].append(f"{quant}: the HF tokenizer has a chat template and the GGUF has none")
        held = entry["decided_agreement"]
        if quant in NEAR_LOSSLESS and held is not None and held < MIN_AGREEMENT:
            report["failures"].append(
                f"{quant}: greedy agreement with the HF model only {held} (on the positions it does not leave to a "
                f"near-tie; {entry['agreement']} on all)"
            )
    report["passed"] = not report["failures"]
    return report


def _compare_with_hf(
    backend_class,
    path: Path,
    lora: Path | None,
    tokenizer,
    texts: list[str],
    prompt_ids: list[list[int]],
    references,
    continuation: int,
):
    """Texts llama.cpp tokenizes differently; per continuation token: (same greedy choice?, decided by the HF model,
    i.e. not a near-tie?) and |log-prob difference|."""
    backend = backend_class(
        path,
        f"gguf:{path}",
        path.stem,
        parallel=1,
        lora=lora,
        context_per_sequence=max([len(i) for i in prompt_ids] + [MIN_CONTEXT_TOKENS])
        + continuation
        + CONTEXT_MARGIN_TOKENS,
    )
    try:
        mismatches = [text for text in texts if backend.tokenize(text, add_bos=True) != tokenizer(text)["input_ids"]]
        agree, differences = [], []
        for ids, (continuation_ids, hf_logprobs, hf_margins) in zip(prompt_ids, references):
            gguf_logprobs = backend.last_logprobs(ids + continuation_ids[:-1], len(continuation_ids))
            for row, (token, hf_row) in enumerate(zip(continuation_ids, hf_logprobs)):
                agree.append((int(gguf_logprobs[row].argmax()) == token, hf_margins[row] >= NEAR_TIE))
                differences.append(abs(float(gguf_logprobs[row][token]) - float(hf_row)))
    finally:
        backend.close()
    return mismatches, agree, differences


def _hf_greedy(model, ids: list[int], count: int, torch) -> tuple[list[int], list[float], list[float]]:
    """The HF model's greedy continuation of `ids`, the log-prob of each chosen token, and by how much (nats) it
    led the second choice."""
    with torch.no_grad():
        output = model.generate(
            torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_new_tokens=count,
            do_sample=False,
            output_scores=True,
            return_dict_in_generate=True,
            pad_token_id=model.config.eos_token_id if model.config.pad_token_id is None else None,
        )
    tokens = output.sequences[0, len(ids) :].tolist()
    rows = [torch.log_softmax(score[0].float(), -1) for score in output.scores]
    logprobs = [float(row[token]) for row, token in zip(rows, tokens)]
    margins = [float(top[0] - top[1]) for top in (row.topk(2).values for row in rows)]
    return tokens, logprobs, margins

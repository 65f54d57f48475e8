"""One forward pass per DPO pair: the prompt is read once, not twice.

TRL's DPOTrainer stacks a batch as [prompt + chosen; prompt + rejected] and runs the model over both rows, so
the ~900-token prompt (most of a pair's tokens) goes through the model twice, forward and backward. Here each
pair becomes one packed row

    prompt[:-1] | prompt[-1] chosen | prompt[-1] rejected        (prompt's last token written twice)
    0 .. p-2    | p-1   p .. p+c-1  | p-1   p .. p+r-1           (position ids)

with an attention mask under which the chosen part sees the prompt and itself, the rejected part sees
prompt[:-1] and itself (never the chosen tokens), and sliding-window layers measure distance in positions. Each
token therefore sees exactly what it sees in TRL's own rows, at the same positions, so every log-prob is the
same up to floating-point order; the duplicated last prompt token gives the rejected side its own state to
predict its first token from. The per-token outputs are moved back to TRL's [chosen; rejected] layout, so the
rest of TRL (loss, ld_alpha, metrics) runs unchanged.

Supported: models whose every layer is causal full attention or causal sliding-window attention read from
`config.layer_types` / `config.sliding_window` (Llama-style, Gemma 3 text). Anything else, or a batch whose two
rows of a pair do not share their prompt, takes TRL's path.
"""

from __future__ import annotations

from dataclasses import dataclass

PER_TOKEN_FIELDS = ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1")
SUPPORTED_LAYERS = {"full_attention", "sliding_attention"}


@dataclass
class Packing:
    """Where each pair's tokens go in its packed row, and the masks that keep chosen and rejected apart."""

    input_ids: object  # (pairs, T)
    position_ids: object  # (pairs, T)
    shift_labels: object  # (pairs, T): the token each packed position predicts, -100 where none
    masks: dict  # layer type -> (pairs, 1, T, T) bool, True = may attend
    gather: object  # (2 * pairs, L - 1) flat index into the packed (pairs * T) outputs
    valid: object  # (2 * pairs, L - 1) bool: positions of TRL's layout that carry a completion token


def layer_types(config) -> list[str] | None:
    """The attention kind of every layer, or None when this packing cannot express the model's masks."""
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    kinds = getattr(config, "layer_types", None)
    if kinds is None:
        window = getattr(config, "sliding_window", None)
        if window and getattr(config, "use_sliding_window", True):
            return None  # a window without per-layer types (Mistral-style): not handled here
        kinds = ["full_attention"] * config.num_hidden_layers
    return list(kinds) if set(kinds) <= SUPPORTED_LAYERS else None


def pack(input_ids, completion_mask, sliding_window: int | None, kinds: set[str]) -> Packing | None:
    """Pack TRL's batch [chosen rows; rejected rows] (right-padded, completion after prompt) into one row per
    pair. None when a pair's rows do not start with the same prompt."""
    import torch

    rows, width = input_ids.shape
    pairs = rows // 2
    lengths = completion_mask.sum(dim=1).tolist()
    starts = completion_mask.int().argmax(dim=1).tolist()  # first completion token = the prompt's length
    segments = []
    for i in range(pairs):
        p, c, r = starts[i], lengths[i], lengths[pairs + i]
        if p != starts[pairs + i] or p < 1 or c < 1 or r < 1:
            return None
        if not torch.equal(input_ids[i, :p], input_ids[pairs + i, :p]):
            return None
        segments.append((p, c, r))
    size = max(p + c + 1 + r for p, c, r in segments)
    device = input_ids.device
    packed = torch.zeros((pairs, size), dtype=input_ids.dtype, device=device)
    positions = torch.zeros((pairs, size), dtype=torch.long, device=device)
    labels = torch.full((pairs, size), -100, dtype=torch.long, device=device)
    part = torch.full((pairs, size), -1, dtype=torch.long, device=device)  # 0 prompt[:-1], 1 chosen, 2 rejected
    gather = torch.zeros((rows, width - 1), dtype=torch.long, device=device)
    valid = torch.zeros((rows, width - 1), dtype=torch.bool, device=device)
    for i, (p, c, r) in enumerate(segments):
        chosen, rejected = input_ids[i, p : p + c], input_ids[pairs + i, p : p + r]
        last = input_ids[i, p - 1 : p]
        packed[i, : p + c] = input_ids[i, : p + c]
        packed[i, p + c : p + c + 1 + r] = torch.cat([last, rejected])
        positions[i, : p + c] = torch.arange(p + c, device=device)
        positions[i, p + c : p + c + 1 + r] = torch.arange(p - 1, p + r, device=device)
        part[i, : p - 1], part[i, p - 1 : p + c], part[i, p + c : p + c + 1 + r] = 0, 1, 2
        labels[i, p - 1 : p + c - 1] = chosen  # position j predicts the token at j + 1
        labels[i, p + c : p + c + r] = rejected
        # TRL's layout: row i position j predicts token j + 1; the completion starts at p
        gather[i, p - 1 : p - 1 + c] = i * size + torch.arange(p - 1, p - 1 + c, device=device)
        gather[pairs + i, p - 1 : p - 1 + r] = i * size + torch.arange(p + c, p + c + r, device=device)
        valid[i, p - 1 : p - 1 + c] = True
        valid[pairs + i, p - 1 : p - 1 + r] = True
    query, key = part[:, :, None], part[:, None, :]
    index = torch.arange(size, device=device)
    causal = index[None, :, None] >= index[None, None, :]
    visible = causal & (key >= 0) & (query >= 0) & ((key == 0) | (key == query))
    itself = torch.eye(size, dtype=torch.bool, device=device)[None]  # padding rows see themselves: no NaN
    masks = {}
    for kind in kinds:
        mask = visible
        if kind == "sliding_attention" and sliding_window:
            mask = visible & (positions[:, :, None] - positions[:, None, :] < sliding_window)
        masks[kind] = (mask | itself)[:, None]
    return Packing(packed, positions, labels, masks, gather, valid)


class SharedPromptModel:
    """Calls a TRL-patched model (fused LM head) on packed pairs and answers in TRL's own output layout; every
    other attribute is the wrapped model's."""

    def __init__(self, model, kinds: list[str], sliding_window: int | None, attention: str, dtype):
        self._model, self._kinds, self._window, self._attention = model, kinds, sliding_window, attention
        self._dtype = dtype

    def __getattr__(self, name):
        return getattr(self._model, name)

    def __call__(self, *, input_ids, attention_mask=None, labels=None, fused_lm_head=False, **kwargs):
        import torch

        completion_mask = labels != -100 if labels is not None else None
        packing = None
        if fused_lm_head and completion_mask is not None and input_ids.shape[0] % 2 == 0:
            packing = pack(input_ids, completion_mask, self._window, set(self._kinds))
        if packing is None:  # TRL's own path
            return self._model(
                input_ids=input_ids, attention_mask=attention_mask, labels=labels, fused_lm_head=fused_lm_head, **kwargs
            )
        masks = {kind: self._as_mask(mask) for kind, mask in packing.masks.items()}
        # a model with sliding layers takes one mask per layer type; a full-attention model takes the tensor
        mask = masks if "sliding_attention" in masks else masks["full_attention"]
        outputs = self._model(
            input_ids=packing.input_ids,
            attention_mask=mask,
            position_ids=packing.position_ids,
            shift_labels=packing.shift_labels,
            fused_lm_head=True,
            **kwargs,
        )
        for field in PER_TOKEN_FIELDS:
            value = getattr(outputs, field, None)
            if value is not None:
                moved = value.reshape(-1)[packing.gather.reshape(-1)].view(packing.gather.shape)
                setattr(outputs, field, torch.where(packing.valid, moved, torch.zeros_like(moved)))
        return outputs

    def _as_mask(self, mask):
        """sdpa takes the boolean mask; eager attention adds a float mask (0 or the dtype's minimum)."""
        if self._attention == "sdpa":
            return mask
        import torch

        dtype = self._dtype
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)


def wrap(model, unwrapped=None) -> SharedPromptModel | None:
    """The model wrapped for shared-prompt passes, or None when its masks cannot be expressed (see module doc).
    Under several processes `model` is the distributed wrapper (called, so gradients are synchronised) and
    `unwrapped` the model inside it (read for its config and dtype)."""
    inner = unwrapped if unwrapped is not None else model
    config = inner.config
    kinds = layer_types(config)
    attention = getattr(config, "_attn_implementation", None) or "eager"
    if kinds is None or attention not in ("sdpa", "eager"):
        return None
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return SharedPromptModel(model, kinds, getattr(text, "sliding_window", None), attention, inner.dtype)

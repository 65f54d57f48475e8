"""The shared-prompt pass (one packed row per DPO pair) against TRL's own two rows per pair: the same per-token
log-probs and the same gradients, for a Llama-style model and a Gemma 3 model with sliding-window layers, under
both attention implementations dpo can meet."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
trl_utils = pytest.importorskip("trl.trainer.utils")

from lettingo_cli.training.shared_prompt import pack, wrap  # noqa: E402

OUTPUTS = ("log_probs", "entropy", "mean_logits", "is_top1")
WINDOW = 4  # shorter than every prompt below, so the sliding layers' window decides what some tokens see


def tiny(family: str, attention: str):
    torch.manual_seed(0)
    common = dict(vocab_size=61, hidden_size=32, intermediate_size=64, num_attention_heads=4, num_key_value_heads=2)
    if family == "llama":
        config = transformers.LlamaConfig(num_hidden_layers=2, **common)
        model = transformers.LlamaForCausalLM(config)
    else:
        config = transformers.Gemma3TextConfig(
            num_hidden_layers=3,
            head_dim=8,
            sliding_window=WINDOW,
            layer_types=["sliding_attention", "full_attention", "sliding_attention"],
            **common,
        )
        model = transformers.Gemma3ForCausalLM(config)
    model.config._attn_implementation = attention
    trl_utils.add_fused_lm_head(model, outputs=OUTPUTS)
    return model.float().eval()


def trl_batch(pairs: list[tuple[int, int, int]], same_prompt: bool = True):
    """TRL's collated batch for pairs of (prompt, chosen, rejected) lengths: [prompt+chosen; prompt+rejected],
    right-padded, with the completion mask."""
    generator = torch.Generator().manual_seed(1)
    rows, masks = [[], []], [[], []]
    for p, c, r in pairs:
        prompt = torch.randint(1, 61, (p,), generator=generator).tolist()
        for side, length in ((0, c), (1, r)):
            if side == 1 and not same_prompt:
                prompt = prompt[:-1] + [(prompt[-1] % 60) + 1]
            completion = torch.randint(1, 61, (length,), generator=generator).tolist()
            rows[side].append(prompt + completion)
            masks[side].append([0] * p + [1] * length)
    width = max(len(row) for side in rows for row in side)
    every = rows[0] + rows[1]
    input_ids = torch.tensor([row + [0] * (width - len(row)) for row in every])
    attention_mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in every])
    completion = torch.tensor([m + [0] * (width - len(m)) for m in masks[0] + masks[1]])
    return input_ids, attention_mask, input_ids.masked_fill(completion == 0, -100)


def forward_and_grads(call, model, input_ids, attention_mask, labels):
    model.zero_grad()
    outputs = call(input_ids=input_ids, attention_mask=attention_mask, labels=labels, fused_lm_head=True)
    (outputs.log_probs.sum() + outputs.entropy.sum()).backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return outputs, grads


@pytest.mark.parametrize("family", ["llama", "gemma3"])
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_one_packed_row_per_pair_gives_trls_log_probs_and_gradients(family, attention):
    model = tiny(family, attention)
    shared = wrap(model)
    assert shared is not None
    batch = trl_batch([(9, 3, 5), (6, 4, 1), (11, 2, 2)])
    assert pack(batch[0], batch[2] != -100, WINDOW, {"full_attention"}) is not None  # packed, not TRL's path
    expected, expected_grads = forward_and_grads(model, model, *batch)
    found, found_grads = forward_and_grads(shared, model, *batch)
    for field in OUTPUTS:
        assert getattr(found, field).shape == getattr(expected, field).shape
        assert torch.allclose(getattr(found, field), getattr(expected, field), atol=1e-5), field
    assert expected.log_probs.abs().sum() > 0  # completions were scored at all
    assert expected_grads.keys() == found_grads.keys() and len(found_grads) > 5
    for name, grad in expected_grads.items():
        assert torch.allclose(found_grads[name], grad, atol=1e-5, rtol=1e-4), name


def test_the_window_is_measured_in_positions_and_matters():
    """Without the sliding layers' window the packed pass would disagree: the test above can fail."""
    model = tiny("gemma3", "sdpa")
    input_ids, attention_mask, labels = trl_batch([(9, 3, 5), (7, 2, 4)])
    expected = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels, fused_lm_head=True)
    packing = pack(input_ids, labels != -100, None, {"full_attention", "sliding_attention"})  # window ignored
    outputs = model(
        input_ids=packing.input_ids,
        attention_mask=packing.masks,
        position_ids=packing.position_ids,
        shift_labels=packing.shift_labels,
        fused_lm_head=True,
    )
    moved = outputs.log_probs.reshape(-1)[packing.gather.reshape(-1)].view(packing.gather.shape)
    moved = torch.where(packing.valid, moved, torch.zeros_like(moved))
    assert not torch.allclose(moved, expected.log_probs, atol=1e-3)


def test_pairs_that_do_not_share_their_prompt_take_trls_path():
    model = tiny("llama", "sdpa")
    input_ids, attention_mask, labels = trl_batch([(5, 2, 3), (4, 3, 3)], same_prompt=False)
    assert pack(input_ids, labels != -100, None, {"full_attention"}) is None
    expected = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels, fused_lm_head=True)
    found = wrap(model)(input_ids=input_ids, attention_mask=attention_mask, labels=labels, fused_lm_head=True)
    assert torch.equal(found.log_probs, expected.log_probs)


def test_a_packed_row_holds_prompt_once_and_both_completions():
    input_ids, _, labels = trl_batch([(6, 2, 3)])
    packing = pack(input_ids, labels != -100, None, {"full_attention"})
    prompt, chosen, rejected = input_ids[0, :6], input_ids[0, 6:8], input_ids[1, 6:9]
    assert packing.input_ids[0].tolist() == [*prompt.tolist(), *chosen.tolist(), prompt[-1].item(), *rejected.tolist()]
    assert packing.position_ids[0].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 5, 6, 7, 8]
    mask = packing.masks["full_attention"][0, 0]
    assert not mask[8:, 5:8].any()  # the rejected part never sees the chosen part (nor the prompt's last token:
    assert mask[8:, :5].all() and mask[7, :8].all()  # it has its own copy); the chosen part sees all before it

"""Compare two models' answers: exact greedy tokens, or next-token agreement and KL on fixed chats.

Both models get the same token ids (from the model's own tokenizer), so a tokenizer difference can
never hide or fake a model difference; the tokenizer is checked on its own (verify.check_tokenizer).
Each comparison runs the file's model once per text (teacher forcing): a CPU under load runs a few
long forward passes far faster than hundreds of one-token steps.
"""

from __future__ import annotations

import inspect

QUESTIONS = ["Where is the treasure buried?", "Write one sentence about the sea.", "What do parrots eat?"]
ANSWERS = ["Arr, the treasure lies buried under the old oak tree on the hill, three paces north of the rock "
           "shaped like a skull. Bring a shovel and keep quiet about it.",
           "The sea stretches blue and endless under the morning sun, and its waves carry the ships of "
           "sailors who dream of far away harbours.",
           "Parrots eat seeds, nuts, fresh fruit and vegetables. Many also enjoy a little cooked rice, but "
           "chocolate and avocado are poisonous to them."]
NEW_TOKENS = 16
SAMPLE = [{"role": "system", "content": "You are a pirate who answers briefly."},
          {"role": "user", "content": "Where is the treasure, captain? Tell me now!"},
          {"role": "assistant", "content": "Arr, matey! It lies under the old oak, beyond the bay."}]


def _chat(tokenizer, messages, generation_prompt: bool) -> list[int]:
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    return tokenizer(" ".join(m["content"] for m in messages))["input_ids"]


def prompts(tokenizer) -> list[list[int]]:
    """The questions as the model sees them: through its chat template when it has one."""
    return [_chat(tokenizer, [{"role": "user", "content": q}], True) for q in QUESTIONS]


def conversations(tokenizer) -> list[tuple[list[int], int]]:
    """(ids, where the answer starts) for each question with its fixed answer."""
    out = []
    for q, a in zip(QUESTIONS, ANSWERS):
        start = len(_chat(tokenizer, [{"role": "user", "content": q}], True))
        out.append((_chat(tokenizer, [{"role": "user", "content": q}, {"role": "assistant", "content": a}], False),
                    start))
    return out


def tokenizer_samples(tokenizer, sentencepiece: bool) -> list[str]:
    """Texts for the tokenizer round trip: a whole chat with its special tokens for byte-level BPE; for
    SentencePiece vocabularies each message on its own, because transformers' GGUF tokenizer adds the
    leading space only at the start of a text, where SentencePiece (and llama.cpp) also add one after
    each special token, a difference of that reader and not of the file."""
    if sentencepiece or not getattr(tokenizer, "chat_template", None):
        return [m["content"] for m in SAMPLE]
    try:
        return [tokenizer.apply_chat_template(SAMPLE, tokenize=False)]
    except Exception:  # a template without a system role
        return [tokenizer.apply_chat_template(SAMPLE[1:], tokenize=False)]


def greedy(model, ids: list[int], n: int = NEW_TOKENS) -> list[int]:
    """n greedy tokens after `ids`, always n (no stop at an end token: both models are compared in full)."""
    import torch

    # transformers 5.25 renamed the cache argument and output `past_key_values` to `cache` (the old name goes in 5.40)
    key = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    out, seq, past = [], torch.tensor([ids]), None
    with torch.no_grad():
        for _ in range(n):
            step = model(seq, use_cache=True, **{key: past})
            past, seq = getattr(step, key), step.logits[:, -1:].argmax(-1)
            out.append(int(seq))
    return out


def _logits(model, ids: list[int], start: int):
    """Next-token log-probabilities at every position from `start` - 1 on (predicting ids[start:])."""
    import torch

    with torch.no_grad():
        return torch.log_softmax(model(torch.tensor([ids])).logits[0, start - 1:-1].float(), -1)


def greedy_matches(reference, model, prompt_ids: list[list[int]]) -> tuple[int, int]:
    """On how many prompts `model` gives exactly the reference's greedy tokens: it does when, fed the
    reference's greedy answer, its top token at every step is the one the reference chose."""
    same = 0
    for p in prompt_ids:
        seq = p + greedy(reference, p)
        same += bool((_logits(reference, seq, len(p)).argmax(-1) == _logits(model, seq, len(p)).argmax(-1)).all())
    return same, len(prompt_ids)


SURE = 0.5  # the reference's probability of its top token at the positions counted as sure


def agreement(reference, model, texts: list[tuple[list[int], int]]) -> dict:
    """How often the model's top next token is the reference's over the answers of fixed chats, there and where the
    reference is sure of it (top probability SURE or more), and the mean KL(reference ‖ model) of the next-token
    distributions."""
    same = total = same_sure = sure = 0
    kl = 0.0
    for ids, start in texts:
        ref, got = _logits(reference, ids, start), _logits(model, ids, start)
        agree, confident = ref.argmax(-1) == got.argmax(-1), ref.exp().max(-1).values >= SURE
        same += int(agree.sum())
        same_sure += int((agree & confident).sum())
        total += ref.shape[0]
        sure += int(confident.sum())
        kl += float((ref.exp() * (ref - got)).sum(-1).sum())
    return {"chats": len(texts), "positions": total, "agreement": same / total, "sure_positions": sure,
            "sure_agreement": same_sure / sure if sure else 1.0, "kl": kl / total}


def round_like_file(reference, plan) -> None:
    """Round the reference's weights as the file stores them (f16/bf16 matrices), computing in float32."""
    import torch

    reference.float()
    params = dict(reference.named_parameters())
    dtypes = {"f16": torch.float16, "bf16": torch.bfloat16}
    with torch.no_grad():
        for t in plan.tensors:
            if t.source in params and t.type in dtypes:
                p = t.of(params[t.source])
                p.copy_(p.to(dtypes[t.type]).float())


def same_shapes(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(sa[k].shape == sb[k].shape for k in sa)

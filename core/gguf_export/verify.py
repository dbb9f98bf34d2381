"""Prove a written GGUF file before anyone is told it is done.

1. The layout: the file is read back with our own reader (reader.py, not the gguf library that wrote
   it) and every tensor's name, shape and type, every metadata value and the vocabulary are compared
   with the plan it was written from.
2. The model: the file is loaded by an independent reader, transformers' GGUF loader (its own name map,
   de-permutation and dequantization, none of our code), and answers are compared with the merged model
   on a few chat prompts. When transformers cannot load an architecture, the tensors are read back with
   our own dequantization and inverse transforms into the merged model's class instead, and the report
   says so.
   - f32/f16/bf16: the merged model, rounded as the file rounds it, must give exactly the same greedy
     tokens.
   - quantized types: over the answers of three fixed chats (about 100 positions), the file's model must
     pick the same next token as the merged model where the merged model is sure of it (its top token at
     probability 0.5 or more: about half the positions) at least SURE_AGREEMENT[type] of the time; the
     agreement over all positions and the mean KL divergence are reported alongside. All positions would
     judge a fine-tune by the fixed answers' tokens it is unsure of, which rounding flips: measured on two
     fine-tunes of the default model (the tools and the reasoning demo runs), q8_0 agrees 97-99% of the time
     overall and 100% where sure, q4_k_m 77-89% and 98-100%, q4_0 62-64% and 81-88%, q5_k 62-66% and
     77-84%; the same model with Q and K in the wrong row order (the commonest conversion bug) 28% and
     38-40% (KL 2.2-2.3). The bars sit between, well under the healthy files and well over the broken one.
     The default model is the hard case: small, and its weights already rounded to Q4_1 by the GGUF it
     ships as (which is also why Q5_1, q5_k's fallback, does no better than Q5_0 there); larger models
     agree more.
   A model too large for two float32 copies in RAM gets tensor_check.py instead: each tensor read back
   and compared with the merged weight it came from, one at a time.
3. The tokenizer: the tokenizer transformers builds from the file (gguf_import.tokenizer, as an import would)
   encodes a chat sample to the same ids.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core import gguf_read_once
from core.gguf_export import compare, quants, reader, tensor_check
from core.gguf_export.architectures import rope
from core.progress import Span

# Least top-1 agreement with the merged model where it is sure, per type (the module's docstring: measurements).
SURE_AGREEMENT = {"q8_0": 0.9, "q6_k": 0.9, "q5_k_m": 0.65, "q4_k_m": 0.65, "q4_k": 0.65, "q5_k": 0.65, "q5_0": 0.65,
                  "q4_0": 0.65}
EXACT = ("f32", "f16", "bf16")


@dataclass
class Verification:
    ok: bool
    summary: str  # one line for the person
    checks: list[str] = field(default_factory=list)  # what was checked, a sentence each
    problems: list[str] = field(default_factory=list)
    figures: dict = field(default_factory=dict)


def verify(path: Path, plan, source, tokenizer, progress) -> Verification:
    """Check `path` against `plan`, then against the merged model (`source`, a merge.Source; its model is
    rounded in place for the exact types, so it must not be used afterwards)."""
    started = time.perf_counter()
    path = Path(path)
    progress.update(0.0, "Reading the file back")
    problems = check_layout(path, plan)
    checks = [f"{len(plan.tensors)} tensors and {len(plan.kv)} metadata values read back as planned"
              if not problems else "the file's layout differs from the plan"]
    if problems:
        return _result(problems, checks, {}, plan, started)
    needed = 8 * source.params - source.held  # the merged model and the file's model, both in float32
    free = _available()
    if needed > free:  # two copies would not fit: each tensor is checked on its own instead, one at a time
        checks.append(f"the answers were not compared: that needs about {_gb(needed)} of free memory and "
                      f"{_gb(free)} are free, so each tensor was checked against the merged weight instead")
        more, figures = tensor_check.check(path, plan, source.tensors, Span(progress, 0.05, 0.9))
        problems += more
        if not more:
            checks.append(f"every tensor reads back within its type's rounding of the merged weight "
                          f"(worst relative error {max(figures['tensor_error'].values()):.3g})")
        problems += check_tokenizer(path, plan, tokenizer, checks)
        return _result(problems, checks, {"compared": False, **figures}, plan, started)
    progress.update(0.2, "Loading the file with transformers' GGUF reader" if plan.arch.transformers_reads
                    else "Loading the file with our own reader")
    reference = source.model().float()  # both models compute in float32, so only the weights differ
    with gguf_read_once.parsed_once():  # transformers reads the file for the weights and the tokenizer: once
        loaded, loader = load(path, plan, reference)
        checks.append(loader)
        progress.update(0.6, "Comparing answers with the merged model")
        figures = compare_answers(reference, loaded, plan, tokenizer, checks, problems)
        progress.update(0.9, "Checking the tokenizer")
        problems += check_tokenizer(path, plan, tokenizer, checks)
    return _result(problems, checks, figures, plan, started)


def compare_answers(reference, loaded, plan, tokenizer, checks: list, problems: list) -> dict:
    """The figures of the file's model against the merged one (`reference`): the same greedy answers for the exact
    types, enough next-token agreement for the quantized ones; what was checked and found goes into the lists."""
    if plan.pick.name in EXACT:
        compare.round_like_file(reference, plan)
        same, total = compare.greedy_matches(reference, loaded, compare.prompts(tokenizer))
        figures = {"prompts": total, "greedy_matches": same}
        checks.append(f"greedy output matches the merged model on {same} of {total} prompts")
        if same < total:
            problems.append(f"greedy output differs from the merged model on {total - same} of {total} prompts")
    else:
        figures = compare.agreement(reference, loaded, compare.conversations(tokenizer))
        bar = SURE_AGREEMENT[plan.pick.name]
        figures["bar"] = bar
        checks.append(f"the next token agrees with the merged model {figures['agreement']:.0%} of the time over "
                      f"the answers of {figures['chats']} chats, {figures['sure_agreement']:.0%} where the merged "
                      f"model is sure of it (at least {bar:.0%} needed for {plan.pick.name}); "
                      f"mean KL {figures['kl']:.3f}")
        if figures["sure_agreement"] < bar:
            problems.append(f"the next token agrees with the merged model only {figures['sure_agreement']:.0%} of "
                            f"the time where it is sure of it ({bar:.0%} needed for {plan.pick.name})")
    return figures


def _available() -> int:
    import psutil

    return psutil.virtual_memory().available


def _gb(n: int) -> str:
    return f"{n / 1e9:.0f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def _result(problems, checks, figures, plan, started) -> Verification:
    figures["seconds"] = round(time.perf_counter() - started, 1)
    vocab = len(plan.vocab.tokens)
    if problems:
        return Verification(False, f"Not verified: {problems[0]}.", checks, problems, figures)
    if figures.get("compared") is False:
        return Verification(True, f"Verified: {len(plan.tensors)} tensors, vocab {vocab}, each tensor within its "
                                  "type's rounding of the merged weight (too large to compare answers in memory).",
                            checks, [], figures)
    if "greedy_matches" in figures:
        how = f"greedy output matches the merged model on {figures['prompts']} prompts"
    else:
        how = (f"the next token agrees with the merged model {figures['agreement']:.0%} of the time over "
               f"{figures['chats']} chats, {figures['sure_agreement']:.0%} where it is sure of it")
    return Verification(True, f"Verified: {len(plan.tensors)} tensors, vocab {vocab}, {how}.", checks, [], figures)


# --- 1. layout -----------------------------------------------------------------------------------------
def check_layout(path: Path, plan) -> list[str]:
    planned = [(t.name, tuple(t.shape), quants.get(t.type).ggml, t.type.upper()) for t in plan.tensors]
    contents = reader.read(path)
    problems = read_back(contents, planned, plan.kv)
    if [t.name for t in contents.tensors] != [p[0] for p in planned]:
        return problems
    rows = next((t.shape[0] for t in plan.tensors if t.name == "token_embd.weight"), None)
    if rows is not None and rows != len(plan.vocab.tokens):
        problems.append(f"the vocabulary has {len(plan.vocab.tokens)} tokens for {rows} embedding rows")
    return problems


def read_back(contents, planned: list[tuple], kv: dict) -> list[str]:
    """What differs between a file's `contents` (reader.read) and what was meant: `planned` (name, shape, ggml type,
    the type's name) in the file's order, and the metadata `kv` (key → GGUFValue, as GGUFWriter holds it)."""
    names = [t.name for t in contents.tensors]
    if names != [p[0] for p in planned]:
        missing = sorted({p[0] for p in planned} - set(names))
        return [f"the file holds {len(names)} tensors, {len(planned)} planned (missing: {missing[:3]})"]
    problems = []
    for (name, shape, ggml, kind), r in zip(planned, contents.tensors):
        if r.shape != shape:
            problems.append(f"{name} has shape {list(r.shape)}, {list(shape)} planned")
        if r.ggml_type != ggml:
            problems.append(f"{name} is type {r.ggml_type}, {kind} planned")
    for key, value in kv.items():
        if key not in contents.metadata:
            problems.append(f"the metadata lacks {key}")
        elif not _same(value.value, contents.metadata[key]):
            problems.append(f"the metadata {key} differs from what was written")
    return problems


def _same(expected, got) -> bool:
    if isinstance(expected, float):
        return np.float32(expected) == np.float32(got)
    if isinstance(expected, (list, tuple)):
        return len(expected) == len(got) and all(_same(a, b) for a, b in zip(expected, got))
    return expected == got


# --- 2. the model, through an independent reader ---------------------------------------------------------
def load(path: Path, plan, reference):
    """(model, sentence): the file as transformers' GGUF loader reads it, or as our own reader does."""
    import torch
    from transformers import AutoModelForCausalLM

    if not plan.arch.transformers_reads:  # (its reader fails, or builds another model: not worth the load)
        return own_load(path, plan, reference), (f"transformers' GGUF reader does not read {plan.arch.name} files as "
                                                 "llama.cpp has them, so it was read with our own dequantization")
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
        if not compare.same_shapes(model, reference):
            why = "it built a model of another shape (its GGUF reader misses a setting of this architecture)"
        elif _rope(model) != _rope(reference):
            why = f"it reads the rope settings as {_rope(model)} where the model has {_rope(reference)}"
        else:
            return model.eval(), "transformers' GGUF loader read the file"
    except Exception as e:  # an architecture or setting it does not know; our own reader takes over
        why = f"it failed ({type(e).__name__}: {str(e)[:120]})"
    return own_load(path, plan, reference), (f"transformers could not read the file back ({why}), so it was read "
                                             "with our own dequantization instead")


def _rope(model) -> tuple:
    """The rope settings that change a model's answers (llama.cpp reads Llama 3's from rope_freqs, which
    transformers' GGUF reader does not)."""
    r = rope(model.config.to_dict())
    return r.get("rope_type") or "default", float(r["rope_theta"]), r.get("factor")


def own_load(path: Path, plan, reference):
    """The file's tensors, dequantized by our code and untransformed, in a copy of the reference model."""
    import copy

    import torch

    model = copy.deepcopy(reference).float()
    state = model.state_dict()
    contents = reader.read(path)
    for t, info in zip(plan.tensors, contents.tensors):
        if t.source is not None:
            t.of(state[t.source]).copy_(torch.from_numpy(tensor_check.decoded(path, contents, plan, t, info)))
    return model.eval()


# --- 3. the tokenizer ----------------------------------------------------------------------------------
def check_tokenizer(path: Path, plan, tokenizer, checks: list[str]) -> list[str]:
    from core import gguf_import

    try:
        loaded = gguf_import.tokenizer(path)
    except Exception as e:
        return [f"transformers could not build a tokenizer from the file ({type(e).__name__}: {str(e)[:120]})"]
    samples = compare.tokenizer_samples(tokenizer, plan.vocab.model == "llama")
    ours = [tokenizer(s, add_special_tokens=False)["input_ids"] for s in samples]
    if ours != [loaded(s, add_special_tokens=False)["input_ids"] for s in samples]:
        return ["the file's tokenizer encodes a chat sample differently from the model's"]
    checks.append(f"the file's tokenizer encodes a chat sample to the same {sum(map(len, ours))} ids")
    return []

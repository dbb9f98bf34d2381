"""One optimizer step layer by layer (issue 9: several micro-batches pass through a layer before it is evicted).

In micro-batch order each of a step's k micro-batches streams every layer in twice, once going up and once
coming down. Here all k micro-batches pass through a layer before the next one runs, so with streamed
weights (core/offload/stream.py) each layer is copied in once each way per step: k times less traffic, for
the price of keeping every layer's input for all k micro-batches until the way down.

1. Capture: the model runs each micro-batch up to its first decoder layer, where a pre-hook takes the layer's
   arguments (the embedded hidden states, the attention mask, position embeddings, ...) and stops it; no
   architecture's decoder is copied here.
2. Up, without grad: each layer takes the k micro-batches in turn; its inputs are kept.
3. Head: per micro-batch, the model's own forward runs with its layers taken out and the last hidden states
   (a leaf) put in front of the final norm, so the loss is exactly the model's, our fused loss
   (tuneforge_kernels/patch.py) included where it is patched in; backward gives the last hidden states' gradient.
4. Down: per layer and micro-batch, the layer's forward again from its kept input, with grad, then backward
   from the gradient above; the input's gradient goes to the layer below. Adapter gradients accumulate
   over the micro-batches as they do in micro-batch order. It stops at the lowest layer that trains when
   nothing before the first layer does.
5. If anything before the first layer trains (embeddings), its graph, kept from the capture, takes the last
   gradient.

Dropout draws the same masks in the recompute as going up: the random state is kept per layer and micro-batch,
as torch's checkpoint does. HF's gradient checkpointing is off for the step's layers: the step already
recomputes each layer once, and a checkpointed layer would recompute a second time inside backward.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from core.errors import BadArgument

HELP = ("Run all of a step's micro-batches through each layer before the next (core/offload/layer_major.py): each "
        "streamed layer comes in once per step each way instead of once per micro-batch, k times fewer weight "
        "copies with k micro-batches, for keeping every layer's input for all k micro-batches until backward. "
        "Each layer's forward is recomputed on the way down, as with checkpointing. The planner turns it on when "
        "weights stream, a step has several micro-batches and the inputs fit.")
NOT_WITH_HOST_ACTIVATIONS = ("does not go with layer_major: a layer-major step keeps each layer's input on the GPU "
                             "itself; turn one of them off.")


class _Reached(Exception):
    """The capture hook stops the model's forward at its first decoder layer."""


@dataclass
class _Call:
    """One micro-batch's arguments to every decoder layer, besides the hidden states."""

    args: tuple
    kwargs: dict


def step(model, layers, batches: list[dict], num_items: int, streamer=None, last=None) -> float:
    """Forward and backward of one optimizer step over `batches` (on the model's device), layer-major; the
    gradients accumulate in the parameters as `loss.backward()` per micro-batch would leave them. `layers` is
    the decoder's ModuleList, `num_items` the step's trained tokens (each loss is a sum divided by it, as in
    Session.step) and `streamer` the LayerStreamer, if the weights stream. `last(bool)`, when given, is told
    before each backward whether it is a part's last micro-batch (a host optimizer takes a gradient once it is
    complete: here layer by layer, each right after its k-th backward). Returns the sum of the losses."""
    import torch

    last = last or (lambda _is_last: None)
    k = len(batches)

    decoder, name, norm = _decoder_parts(model, layers)
    with _no_checkpointing(layers):
        captured = [_capture(model, layers[0], batch) for batch in batches]
        calls = [call for _, call in captured]
        below = any(x.grad_fn is not None for x, _ in captured)  # something before the first layer trains
        saved, states = [], []  # per layer: its input and the random state, per micro-batch
        hidden = [x.detach() for x, _ in captured]
        with torch.no_grad():
            for layer in layers:
                saved.append(hidden)
                states.append([])
                outputs = []
                for x, call in zip(hidden, calls):
                    states[-1].append(_random_state(x.device))
                    outputs.append(_hidden(layer(x, *call.args, **call.kwargs)))
                hidden = outputs

        loss_sum, grads = 0.0, []
        for j, batch in enumerate(batches):
            last(j == k - 1 and not below)  # a tied head is also the embeddings: complete only at the very end
            loss, grad = _head(model, decoder, name, norm, hidden[j], batch, num_items)
            hidden[j] = None  # its gradient takes its place: k of the two together at most
            loss_sum += loss
            grads.append(grad)

        # Down to the lowest layer that trains: below it nothing needs a gradient unless something before the
        # first layer trains (LISA with frozen embeddings stops there, as its plain backward does).
        trains = [any(p.requires_grad for p in layer.parameters()) for layer in layers]
        lowest = 0 if below else next((i for i, t in enumerate(trains) if t), len(layers))
        going_down = streamer.going_down() if streamer is not None else contextlib.nullcontext()
        with going_down:
            for i in reversed(range(lowest, len(layers))):
                for j, call in enumerate(calls):
                    x = saved[i][j].detach().requires_grad_(i > lowest or below)
                    saved[i][j] = None  # its gradient will take its place
                    with torch.enable_grad(), _replaying(states[i][j], x.device):
                        out = _hidden(layers[i](x, *call.args, **call.kwargs))
                    last(j == k - 1)
                    torch.autograd.backward(out, grads[j])
                    grads[j] = x.grad
    for j, ((x, _), grad) in enumerate(zip(captured, grads)):
        if x.grad_fn is not None:  # something before the first layer trains
            last(j == k - 1)
            torch.autograd.backward(x, grad)
    return loss_sum


def _decoder_parts(model, layers):
    """(the module holding `layers`, their attribute name in it, its final norm)."""
    decoder = next((m for m in model.modules() if any(c is layers for c in m.children())), None)
    if decoder is None:
        raise ValueError("the decoder layers given are not in this model")
    name = next(n for n, c in decoder.named_children() if c is layers)
    norm = getattr(decoder, "norm", None)
    if norm is None:
        raise BadArgument(f"Layer-major order needs the decoder's final norm ('norm'), which {type(decoder).__name__} "
                          "does not have; turn off the offload strategy's setting layer_major.")
    return decoder, name, norm


@contextlib.contextmanager
def _no_checkpointing(layers):
    """HF's per-layer checkpointing off while the step runs (it recomputes each layer itself), then as it was."""
    flags = [(layer, layer.gradient_checkpointing) for layer in layers if hasattr(layer, "gradient_checkpointing")]
    for layer, _ in flags:
        layer.gradient_checkpointing = False
    try:
        yield
    finally:
        for layer, flag in flags:
            layer.gradient_checkpointing = flag


def _capture(model, first, batch: dict):
    """(the first layer's hidden states, the rest of its arguments) for this micro-batch."""
    caught = {}

    def stop(_module, args, kwargs):
        caught["args"], caught["kwargs"] = args, dict(kwargs)
        raise _Reached

    # prepended: the model stops before the streamer's hook would bring the layer in for nothing
    handle = first.register_forward_pre_hook(stop, with_kwargs=True, prepend=True)
    try:
        model(**{k: v for k, v in batch.items() if k != "labels"})
    except _Reached:
        pass
    finally:
        handle.remove()
    if "args" not in caught:
        raise RuntimeError(f"{type(model).__name__}'s forward did not call its first decoder layer")
    args, kwargs = caught["args"], caught["kwargs"]
    hidden = args[0] if args else kwargs.pop("hidden_states")
    return hidden, _Call(tuple(args[1:]), kwargs)


def _head(model, decoder, name: str, norm, last, batch: dict, num_items: int):
    """(the loss, the gradient of the last hidden states) for one micro-batch: the model's forward with its
    layers taken out and `last` handed to the final norm in place of the embeddings."""
    import torch

    leaf = last.detach().requires_grad_(True)
    used = []

    def swap(_module, _args):
        used.append(True)
        return (leaf,)

    layers = getattr(decoder, name)
    handle = norm.register_forward_pre_hook(swap)
    setattr(decoder, name, torch.nn.ModuleList())
    try:
        loss = model(**batch, num_items_in_batch=num_items).loss
    finally:
        setattr(decoder, name, layers)
        handle.remove()
    if used != [True]:
        raise RuntimeError(f"{type(decoder).__name__}'s forward did not run its final norm exactly once")
    torch.autograd.backward(loss)
    grad = leaf.grad if leaf.grad is not None else torch.zeros_like(leaf)
    return float(loss.detach()), grad


def _hidden(output):
    """A layer's hidden states, whether it returns them alone or first in a tuple (older transformers)."""
    return output[0] if isinstance(output, tuple) else output


def _random_state(device):
    import torch

    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


@contextlib.contextmanager
def _replaying(state, device):
    """The random state a layer ran with going up, for its recompute; the generators as they were after."""
    import torch

    cpu, cuda = state
    with torch.random.fork_rng(devices=[device] if cuda is not None else []):
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state(cuda, device)
        yield

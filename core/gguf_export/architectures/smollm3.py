"""SmolLM3: Llama's layout (Q and K reordered for llama.cpp's rope the same way), with no rope at all on every
fourth layer (NoPE).

llama.cpp's smollm3 architecture skips rope on a layer where (layer + 1) % 4 == 0, a step fixed in its code
(n_no_rope_layer_step; no GGUF key carries it). transformers' config lists which layers rope instead
(`no_rope_layers`, 1 for rope), by default every fourth left out, the same pattern. A model whose list is
another pattern, or that attends through a sliding window, which llama.cpp's smollm3 does not, would not run
as it was trained, so `check` refuses it in a sentence before anything is written, and a file read back gets
that pattern (`config`). transformers' GGUF reader does not know smollm3, so verification reads these files with
our own dequantization and says so, and importing one takes its config from our `config`.
"""

from __future__ import annotations

from gguf import MODEL_ARCH

from core.errors import BadArgument
from core.gguf_export.architectures import register
from core.gguf_export.architectures.llama import Llama

NOPE_STEP = 4  # llama.cpp's n_no_rope_layer_step for smollm3


def nope_pattern(layers: int) -> list[int]:
    """Which layers rope (1) in llama.cpp's smollm3, in transformers' `no_rope_layers` terms."""
    return [int((i + 1) % NOPE_STEP != 0) for i in range(layers)]


@register
class SmolLM3(Llama):
    model_types = ("smollm3",)
    gguf_arch = MODEL_ARCH.SMOLLM3
    transformers_reads = False

    def config(self, meta: dict) -> dict:
        cfg = super().config(meta)
        return {**cfg, "no_rope_layers": nope_pattern(cfg["num_hidden_layers"]), "no_rope_layer_interval": NOPE_STEP,
                "use_sliding_window": False}

    def check(self, cfg: dict) -> None:
        super().check(cfg)
        layers = cfg["num_hidden_layers"]
        given = list(cfg.get("no_rope_layers") or nope_pattern(layers))[:layers]
        if given != nope_pattern(layers):
            raise BadArgument(f"This SmolLM3 model leaves rope out of layers {_nope(given)}, and llama.cpp leaves it "
                              f"out of every fourth ({_nope(nope_pattern(layers))}), so GGUF would not run it as "
                              "trained; export merged safetensors instead.")
        if cfg.get("use_sliding_window") and cfg.get("sliding_window"):
            raise BadArgument("This SmolLM3 model attends through a sliding window, which llama.cpp's smollm3 does "
                              "not, so GGUF would not run it as trained; export merged safetensors instead.")


def _nope(pattern: list[int]) -> str:
    layers = [str(i) for i, ropes in enumerate(pattern) if not ropes]
    return ", ".join(layers) if layers else "none"

"""A model folder as the causal LM Tuneforge trains.

transformers' AutoModelForCausalLM takes most chat models as they are, vision-language ones among them where their
class answers text (Gemma 3 and 4 load whole; Qwen 3.5 loads its language model). A model in llava's layout it
refuses: Mistral Small 3.1 and 3.2 and Ministral 3 (Mistral3ForConditionalGeneration) could not be trained at all.
Their language model is an ordinary causal LM kept under `language_model.`, so it is loaded as one: from the text
config, with the checkpoint's names mapped as they are read (transformers' key_mapping); the vision tower stays on
disk, and the merged export writes it back beside the tuned language model (core/merge_stream.py).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from core.offload.layerwise import LAYOUTS

# transformers' key_mapping (patterns applied in turn) from the layouts core/offload/layerwise.py reads checkpoints by
KEY_MAPPING = {f"^{re.escape(prefix)}": plain for prefix, plain in LAYOUTS}


def config_for(config):
    """The config AutoModelForCausalLM builds a model from: `config` itself where it takes it, else the language
    model's (tied as the whole model is: its head is then not in the checkpoint)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    text = config.get_text_config()
    if type(config) in MODEL_FOR_CAUSAL_LM_MAPPING or text is config or type(text) not in MODEL_FOR_CAUSAL_LM_MAPPING:
        return config
    if getattr(config, "tie_word_embeddings", False):
        text.tie_word_embeddings = True
    return text


def _quant_method(config) -> str:
    quant = getattr(config, "quantization_config", None)
    return (quant.get("quant_method") if isinstance(quant, dict) else getattr(quant, "quant_method", None)) or ""


def from_config(config, **kwargs):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_config(config_for(config), **kwargs)


def from_pretrained(path: str | Path, **kwargs):
    """AutoModelForCausalLM.from_pretrained, or for a model it refuses whose language model it takes, that language
    model with the checkpoint's weights; a weight the checkpoint lacks is refused rather than left random."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from core.errors import KnownError

    config = AutoConfig.from_pretrained(str(path))
    if _quant_method(config) == "mxfp4" and "quantization_config" not in kwargs:
        from transformers import Mxfp4Config

        # gpt-oss's experts as released: trained in 16 bits, so decoded as they load (transformers would otherwise
        # fetch MXFP4 kernels from the Hub, which training cannot use and an offline machine cannot reach)
        kwargs["quantization_config"] = Mxfp4Config(dequantize=True)
    text = config_for(config)
    if text is config:
        return AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
    quiet = logging.getLogger("transformers")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # its load report lists the vision tower as unexpected: left out on purpose
    try:
        model, info = AutoModelForCausalLM.from_pretrained(str(path), config=text, key_mapping=KEY_MAPPING,
                                                           output_loading_info=True, **kwargs)
    finally:
        quiet.setLevel(level)
    if info["missing_keys"]:
        raise KnownError(f"{path}: its language model lacks {sorted(info['missing_keys'])[0]} in the checkpoint, "
                         "so it cannot be loaded as a causal LM; the folder may be incomplete.")
    return model

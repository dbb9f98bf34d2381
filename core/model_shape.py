"""A model's size from its config alone, so plans can be made for models that are not on disk."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelShape:
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool
    model_type: str = ""  # the config's model_type (the text model's, for multimodal configs)
    context: int | None = None  # max_position_embeddings as the config states it (None: it does not say)

    @classmethod
    def from_config(cls, c: dict) -> "ModelShape":
        c = c.get("text_config", c)  # multimodal configs nest the language model
        hidden = c["hidden_size"]
        heads = c["num_attention_heads"]
        return cls(
            layers=c["num_hidden_layers"], hidden=hidden, intermediate=c.get("intermediate_size", 4 * hidden),
            heads=heads, kv_heads=c.get("num_key_value_heads") or heads,
            head_dim=c.get("head_dim") or hidden // heads, vocab=c["vocab_size"],
            tied=bool(c.get("tie_word_embeddings", False)), model_type=str(c.get("model_type", "")),
            context=c.get("max_position_embeddings"),
        )

    @property
    def max_positions(self) -> int:
        """The context to plan with: the config's, or 2048 where it does not say."""
        return self.context or 2048

    def linear_shapes(self) -> list[tuple[int, int]]:
        """(in, out) of every linear layer in one decoder block (attention, then a gated MLP)."""
        h, q, kv = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim
        i = self.intermediate
        return [(h, q), (h, kv), (h, kv), (q, h), (h, i), (h, i), (i, h)]

    @property
    def linear_params(self) -> int:
        """Weights of one block's linear layers (what quantization and LoRA apply to)."""
        return sum(a * b for a, b in self.linear_shapes())

    @property
    def block_params(self) -> int:
        return self.linear_params + 2 * self.hidden  # plus two RMSNorm weights

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden

    @property
    def head_params(self) -> int:
        """Embeddings plus output head (one matrix when they are tied)."""
        return self.embedding_params * (1 if self.tied else 2)

    @property
    def params(self) -> int:
        head = 0 if self.tied else self.embedding_params
        return self.layers * self.block_params + self.embedding_params + head + self.hidden

    def lora_params(self, r: int) -> int:
        return self.layers * sum(r * (a + b) for a, b in self.linear_shapes())

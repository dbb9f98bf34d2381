"""Stochastic rounding of fp32 values to bfloat16: a 16-bit weight that takes its updates without an fp32 master.

Why: a bf16 weight cannot take a fine-tuning-sized update by ordinary rounding (1e-5 on a weight of 0.5 is
below half of bf16's step there, 2^-8, so it rounds away every time); MasterAdamW keeps an fp32 copy of each
trained weight for that, 4 bytes a weight. Rounding instead up or down at random, with the chance of rounding
up equal to how far the exact value lies towards the upper neighbour, makes the stored weight right in
expectation: many small updates move it as far on average as they would move an fp32 copy (Gupta et al.,
"Deep Learning with Limited Numerical Precision", 2015; Zamirai et al., "Revisiting BFloat16 Training", 2020).

How: bf16 is the top 16 bits of an fp32. Adding a random integer in [0, 2^16) to the fp32's bit pattern and
clearing the low 16 bits rounds its magnitude up exactly with that chance (a carry reaches the 17th bit with
probability low-bits / 2^16), then the cast to bf16 is exact. The random bits come from a generator seeded by
the caller (the optimizer seeds it with the tensor's place and step count), so a resumed run rounds the same.
"""

from __future__ import annotations

LOW_BITS = 1 << 16


def round_into(target, exact, generator) -> None:
    """Write fp32 `exact` into the bf16 tensor `target`, each value rounded up or down at random in proportion."""
    import torch

    noise = torch.randint(0, LOW_BITS, exact.shape, dtype=torch.int32, device=exact.device, generator=generator)
    bits = exact.view(torch.int32).add(noise).bitwise_and_(-LOW_BITS)  # (a value's own sign bit stays put)
    del noise
    target.copy_(bits.view(torch.float32))  # the low bits are zero: the cast to bf16 is exact

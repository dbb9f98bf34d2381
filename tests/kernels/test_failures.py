"""kernels.failures names the kernels to blame for an error a step raised, from real errors raised inside our ops
(their argument checks, a launch that Triton refuses) and errors that are not ours; the trainer re-plans without
the ones it names (tests/app/test_replan.py runs that end to end)."""

from __future__ import annotations

import pytest
import torch

from tuneforge_kernels import OPS, failures

ALL = list(OPS)


def rope_refuses_shapes():
    from tuneforge_kernels.rope import apply_rope

    q = torch.randn(1, 2, 3, 8)
    apply_rope(q, q, torch.randn(3, 8), torch.randn(3, 8))  # cos without its batch dimension


def rmsnorm_launch_fails():
    from tuneforge_kernels.rmsnorm import rms_norm

    # Triton refuses a tensor it cannot reach: one with no data in its interpreter (CI), one in host memory when it
    # compiles for a GPU. Never a meta tensor there: its address is 0, the launch faults, and the fault poisons the
    # process's CUDA context for every test after it.
    where = "cpu" if torch.cuda.is_available() else "meta"
    rms_norm(torch.randn(2, 16, device=where), torch.ones(16, device=where), 1e-6)


def swiglu_inside_a_model_step():
    from tuneforge_kernels.swiglu import gated

    def step():
        return gated(torch.randn(2, 4), torch.randn(2, 5))  # gate and up differ

    try:
        step()
    except ValueError as e:
        raise RuntimeError("the training step failed") from e  # what a wrapper (accelerate, peft) may add


def plain_torch_error():
    torch.ones(2) @ torch.ones(3)


def cuda_fault():
    raise RuntimeError("CUDA error: an illegal memory access was encountered\nCUDA kernel errors might be "
                       "asynchronously reported at some other API call")


CASES = [
    # what raised, the kernels active, the ones blamed
    (rope_refuses_shapes, ALL, ["rope"]),
    (rmsnorm_launch_fails, ALL, ["rmsnorm"]),
    (swiglu_inside_a_model_step, ALL, ["swiglu"]),
    (rope_refuses_shapes, ["rmsnorm", "swiglu"], []),  # raised in a kernel the run does not use: not a kernel fault
    (plain_torch_error, ALL, []),
    (cuda_fault, ["lora", "rmsnorm"], ["lora", "rmsnorm"]),  # reported later, anywhere: every active one
    (cuda_fault, [], []),
]


@pytest.mark.parametrize("raise_it, active, blamed", CASES, ids=lambda v: getattr(v, "__name__", None))
def test_the_kernels_to_blame(raise_it, active, blamed):
    with pytest.raises(Exception) as caught:
        raise_it()
    assert failures.culprits(caught.value, active) == blamed


def test_an_error_is_described_in_one_short_line():
    with pytest.raises(Exception) as caught:
        cuda_fault()
    assert failures.describe(caught.value) == "RuntimeError: CUDA error: an illegal memory access was encountered"
    long = failures.describe(ValueError("x" * 500), limit=60)
    assert len(long) == 60 and long.startswith("ValueError: xxx") and long.endswith("…")
    assert failures.describe(KeyError()) == "KeyError"

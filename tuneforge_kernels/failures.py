"""Which of our kernels to blame for an error a training step raised, so the trainer can carry on without them.

Our kernels are checked against their references on the CPU (Triton's interpreter) and compiled for T4, A100
and H100 in CI, but a person's GPU can still refuse one at run time: too little shared memory for a block
(Triton's OutOfResources), a driver or Triton version that launches it differently, a fault. The plain PyTorch
path is the one known to work everywhere, so a run that hits such an error is better re-planned without that
kernel than ended (core.trainer does that, through core.replanner).

`culprits(error, active)` names the ops to turn off:
- an op whose module (tuneforge_kernels/<module>.py, as OPS maps them) is the deepest of ours in the traceback
  of the error or of any error in its chain of causes: the error was raised inside that kernel's code, its
  launch or its autograd backward;
- when none is, but the error is a CUDA error and kernels were active, all of them: CUDA reports a kernel's
  fault (an illegal address, a device-side assert) at a later call, so the traceback names the wrong place.
  If the plain path then fails the same way, the run ends as the bug it is.
Anything else is not our kernels' doing: an empty list.

Imports neither torch nor triton.
"""

from __future__ import annotations

import traceback
from pathlib import Path

from tuneforge_kernels import OPS

_OP_OF_MODULE = {module: op for op, module in OPS.items()}
_PACKAGE = Path(__file__).parent.name  # matched by name: a packaged app's frames name the same folder
_CUDA_ERRORS = ("CUDA error", "CUDA driver error", "device-side assert", "illegal memory access",
                "misaligned address", "unspecified launch failure")


def culprits(error: BaseException, active: list[str]) -> list[str]:
    """The ops among `active` (names in tuneforge_kernels.OPS) to blame for `error`, in `active`'s order."""
    blamed, seen, e = set(), set(), error
    while e is not None and id(e) not in seen:  # the error, then what it was raised from or while handling
        seen.add(id(e))
        op = None
        for frame in traceback.extract_tb(e.__traceback__):  # outermost first: the last one of ours wins
            path = Path(frame.filename)
            if path.parent.name == _PACKAGE and path.stem in _OP_OF_MODULE:
                op = _OP_OF_MODULE[path.stem]
        if op is not None:
            blamed.add(op)
        e = e.__cause__ or e.__context__
    if not blamed and any(marker in str(error) for marker in _CUDA_ERRORS):
        blamed = set(active)
    return [op for op in active if op in blamed]


def named(ops: list[str]) -> str:
    """The ops as the trainer's and the plan's sentences name them: "our rmsnorm kernel", "our a, b kernels"."""
    return f"our {', '.join(ops)} kernel{'s' if len(ops) > 1 else ''}"


def describe(error: BaseException, limit: int = 200) -> str:
    """The error in one line for the run's history: its type and the first line of its message, shortened."""
    lines = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    return text if len(text) <= limit else text[:limit - 1] + "…"

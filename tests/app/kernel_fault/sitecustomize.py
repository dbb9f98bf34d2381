"""Fault injection for processes a test starts with this folder on PYTHONPATH (tests/app/test_replan.py).

With TUNEFORGE_TEST_BROKEN_KERNEL=rmsnorm, launching our RMSNorm forward kernel raises Triton's own
OutOfResources, as a GPU with too little shared memory for the kernel's block does: the kernel's function in
tuneforge_kernels/rmsnorm.py is swapped, as that module loads, for one whose launch (`kernel[grid](...)`) raises. The
trainer's code is left as it is. Python imports this module at start-up (site.py's sitecustomize); nothing in
the product reads the variable.
"""

import importlib.abc
import importlib.util
import os
import sys

# op → (its module, the Triton kernel to break)
BROKEN = {"rmsnorm": ("tuneforge_kernels.rmsnorm", "_rms_norm_forward")}


class _FailingLaunch:
    """Stands where the @triton.jit function was: indexing it with a grid gives a launch that raises."""

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            from triton.runtime.errors import OutOfResources

            raise OutOfResources(262144, 101376, "shared memory")
        return launch


class _BreakOnLoad(importlib.abc.MetaPathFinder):
    def __init__(self, module: str, function: str):
        self.module, self.function = module, function

    def find_spec(self, name, path, target=None):
        if name != self.module:
            return None
        sys.meta_path.remove(self)  # find the real module with the other finders, once
        spec = importlib.util.find_spec(name)
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            setattr(module, self.function, _FailingLaunch())

        spec.loader.exec_module = exec_module
        return spec


if os.environ.get("TUNEFORGE_TEST_BROKEN_KERNEL") in BROKEN:
    sys.meta_path.insert(0, _BreakOnLoad(*BROKEN[os.environ["TUNEFORGE_TEST_BROKEN_KERNEL"]]))

"""Every kernel compiles for real GPUs (T4 sm_75, A100 sm_80, H100 sm_90) with Triton's own compiler, down to a
cubin, here, without a GPU. The interpreter the other tests use on a CPU accepts things the compiler refuses (a
loop variable that changes type, a Python int where a tensor is needed), so this is the check that the code they
pass is also code a GPU will run. It runs in a child process: this folder's conftest turned the interpreter on."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import REPO

# kernel (module:function) → pointer dtype per pointer argument (default *bf16), and its constexpr values
KERNELS = {
    "fused_linear_cross_entropy:_cross_entropy_rows": ({"targets_ptr": "*i64", "loss_ptr": "*fp32"},
                                                        {"SOFTCAP": True, "GRAD": True, "BLOCK": 4096}),
    "rmsnorm:_rms_norm_forward": ({"rstd_ptr": "*fp32"}, {"FP32_WEIGHT": False, "OFFSET": 0.0, "BLOCK": 4096}),
    "rmsnorm:_rms_norm_backward": ({"rstd_ptr": "*fp32", "dw_ptr": "*fp32"},
                                   {"FP32_WEIGHT": True, "OFFSET": 1.0, "WEIGHT_GRAD": True, "BLOCK": 4096}),
    "swiglu:_gated_forward": ({}, {"GELU": True, "BLOCK": 1024}),
    "swiglu:_gated_backward": ({}, {"GELU": False, "BLOCK": 1024}),
    "rope:_rope": ({}, {"BACKWARD": True, "HAS_K": True, "BLOCK_QH": 32, "BLOCK_KH": 8, "BLOCK_D": 64}),
    "lora:_dequantize_4bit": ({"packed_ptr": "*u8", "absmax_ptr": "*fp32", "code_ptr": "*fp32"},
                              {"QBLOCK": 64, "BLOCK": 1024}),
}
FLOATS = {"eps", "smoothing", "softcap"}  # the kernels' float arguments; other plain arguments are integers
ARCHS = (75, 80, 90)

CHILD = """
import importlib, inspect, json, sys
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

kernels, floats, archs = json.loads(sys.argv[1])
for name, (pointers, constexprs) in kernels.items():
    module, function = name.split(":")
    fn = getattr(importlib.import_module("tuneforge_kernels." + module), function)
    signature = {}
    for arg in inspect.signature(fn.fn).parameters:
        if arg in constexprs:
            signature[arg] = "constexpr"
        elif arg.endswith("_ptr"):
            signature[arg] = pointers.get(arg, "*bf16")
        else:
            signature[arg] = "fp32" if arg in floats else "i32"
    for arch in archs:
        compiled = triton.compile(ASTSource(fn, signature, constexprs=constexprs), target=GPUTarget("cuda", arch, 32),
                                  options={"enable_fp_fusion": True})
        assert compiled.asm["cubin"], (name, arch)
        print(name, arch, "ok", flush=True)
"""


def test_every_kernel_compiles_for_t4_a100_and_h100():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps([KERNELS, sorted(FLOATS), ARCHS])], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.count(" ok") == len(KERNELS) * len(ARCHS), proc.stdout


def test_the_table_names_every_kernel():
    """A new @triton.jit function in tuneforge_kernels/ must join the table above, or it would go uncompiled here."""
    import ast

    found = set()
    for path in sorted((REPO / "tuneforge_kernels").glob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.FunctionDef) and any("jit" in ast.unparse(d) for d in node.decorator_list):
                found.add(f"{path.stem}:{node.name}")
    helpers = {"fused_linear_cross_entropy:_tanh", "swiglu:_gelu_tanh_parts", "rope:_rotate"}  # inlined into those
    assert found - helpers == set(KERNELS)

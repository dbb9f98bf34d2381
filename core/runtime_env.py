"""Process-wide settings every Tuneforge process applies first: offline, quiet, no telemetry.

Why each one:
- offline: nothing is downloaded at run time, ever; a missing file is an error we explain.
- bitsandbytes' CPU backend tries `from kernels import get_kernel` (Hugging Face's `kernels` package, which
  transformers installs) to fetch a kernel from the hub; offline that fails and it falls back to its plain
  path, which is what we want, so its warning is noise, and so is the `kernels` package's own warning that
  it skips the hub's publisher check offline (printed by every process that imports peft on a CPU with
  AVX512-BF16).
- hub kernels off: transformers (5.25 on) would swap layers for kernels fetched from the hub at load and swap
  them again on every train()/eval(), which undoes our own kernels (tuneforge_kernels/patch.py); ours are the
  ones we test and measure, and nothing is fetched.
- transformers' deprecation warnings about its own internals tell the person nothing they can act on.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "USE_HUB_KERNELS": "0",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TOKENIZERS_PARALLELISM": "false",
    "BITSANDBYTES_NOWELCOME": "1",
    "TQDM_DISABLE": "1",  # libraries' own bars (GGUF conversion) would garble ours and the JSON output
}


def set_environment() -> None:
    """ENV into this process's environment (a setting the person made stays). Before anything imports a library
    that reads its setting once, at import: tqdm does (torch imports it), so main.py calls this first, and a GGUF
    export's check once printed transformers' conversion bar through ours."""
    for key, value in ENV.items():
        os.environ.setdefault(key, value)


def prepare() -> None:
    set_environment()
    for noisy in ("bitsandbytes", "kernels"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\..*")
    warnings.filterwarnings("ignore", message=r".*gradient_checkpointing.*deprecated.*")
    # torch warns about its own use of script_method when peft pulls in torch.fx helpers.
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script_method.*deprecated.*")
    # peft writes rank/alpha patterns for a mixture of experts' fused expert weights (gate_up_proj) into the adapter's
    # config, and warns on loading that its own patterns match no module (they are parameters): nothing for a person.
    warnings.filterwarnings("ignore", message=r"The following (rank|alpha)_pattern keys did not match any targeted")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:  # transformers not imported yet in a minimal process: env vars cover it
        pass


def leave_out(module: str) -> None:
    """Make `module` unimportable in this process, so that libraries which probe for it take their path without
    it. For bitsandbytes in a trainer whose run uses none of it: peft imports it whenever it is installed, and
    importing it costs about 1.5 s on every start (it wraps its CPU ops in torch.compile, which imports
    inductor). A module already imported stays."""
    sys.modules.setdefault(module, None)  # None there: `import` refuses it and find_spec answers "not found"


# The packaged app (PyInstaller) is one executable without a `-m`: it runs a module of ours when its first
# argument is this flag (main.py), so the trainer and the probes start the same way from a checkout and a build.
RUN_MODULE = "--run-module"


def module_command(module: str, *args: str) -> list[str]:
    """The command line that runs `module` as a script in a new process of this installation."""
    if getattr(sys, "frozen", False):
        return [sys.executable, RUN_MODULE, module, *args]
    return [sys.executable, "-m", module, *args]


def run_module(argv: list[str]) -> None:
    """main.py's other door: `tuneforge --run-module NAME ARGS...` runs NAME as `python -m NAME ARGS...` would."""
    import runpy

    module, *args = argv
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


def exit_now(code: int) -> None:
    """End a command-line or trainer process with `code` without tearing the interpreter down.

    Python's teardown after a process that imported torch and transformers frees every module and object one
    by one: about a second (1.1 s measured for the trainer on the default model), paid by every run, resume and
    command, and by nobody's benefit, since the process is ending. Everything a normal exit does that matters
    still happens: the atexit handlers run (temporary folders, logging, coverage) and both streams are flushed.
    Our files are closed or line-buffered by then (the history, the events, checkpoints written atomically). If
    a thread of ours still works, the exit is the usual one, which waits for it; so it is under a profiler
    (`python -m cProfile -m core.trainer`) or a debugger, which have more to do once the script ends."""
    import atexit
    import threading

    busy = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    if busy or sys.getprofile() or sys.gettrace():  # or a profiler or debugger that reports when the script ends
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader that went away (`| head`), or a stream already closed
            pass
    os._exit(code if isinstance(code, int) else 1)

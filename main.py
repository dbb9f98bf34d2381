"""Tuneforge: `python main.py` opens the app; `python main.py VERB ...` is the command line;
`main.py --run-module NAME ...` runs one of our modules as a script (how the packaged app starts its trainer)."""

import sys

from core import runtime_env

runtime_env.set_environment()  # first: some libraries read theirs once, as they are imported

if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == runtime_env.RUN_MODULE:
        runtime_env.run_module(sys.argv[2:])
    else:
        from app.cli import main

        runtime_env.exit_now(main())  # no interpreter teardown after torch: a second saved per command

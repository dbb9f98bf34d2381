"""One real training run on the default model, shared by the end-to-end modules: its whole path in
test_default_path.py, its GGUF export in test_export_gguf.py (a run is what an export starts from; training
another one there cost a minute of the suite)."""

import os
import subprocess
import sys

import pytest

from tests.conftest import DEMO, REPO, json_lines

STEPS = 30


@pytest.fixture(scope="session")
def pirate_run(tmp_path_factory, default_model_dir):
    """(cli, home, events): `train` on the demo data with the default plan, STEPS steps, through the real CLI
    (about 100 s on two cores); `cli(*args, check=0)` runs the CLI as a process in its home (check=None: any exit)."""
    home = tmp_path_factory.mktemp("e2e-home")
    (home / "models").mkdir()
    (home / "models" / default_model_dir.name).symlink_to(default_model_dir, target_is_directory=True)
    env = dict(os.environ, TUNEFORGE_HOME=str(home), PYTHONUNBUFFERED="1")

    def cli(*args, check=0):
        proc = subprocess.run([sys.executable, str(REPO / "main.py"), *map(str, args)], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=900)
        assert check is None or proc.returncode == check, proc.stderr[-3000:]
        return proc

    # Validation every 10 steps instead of the default ten checks a run: each check of the 10 held-out rows costs
    # most of a step here, and three show the fall as well.
    events = json_lines(cli("train", "--model", "default", "--data", DEMO, "--max-steps", STEPS, "--eval-every", "10",
                            "--json").stdout)
    return cli, home, events

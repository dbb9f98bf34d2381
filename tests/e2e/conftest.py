"""One real training run on the default model, shared by the end-to-end modules: its whole path in
test_default_path.py, its GGUF export in test_export_gguf.py (a run is what an export starts from; training
another one there cost a minute of the suite)."""

import pytest

from tests.conftest import DEMO, json_lines, main_process

STEPS = 30


@pytest.fixture(scope="session")
def pirate_run(tmp_path_factory, default_model_dir):
    """(cli, home, events): `train` on the demo data with the default plan, STEPS steps, through the real CLI
    (about 100 s on two cores); `cli(*args, check=0)` runs the CLI as a process in its home (check=None: any exit)."""
    home = tmp_path_factory.mktemp("e2e-home")
    (home / "models").mkdir()
    (home / "models" / default_model_dir.name).symlink_to(default_model_dir, target_is_directory=True)

    def cli(*args, check=0):
        return main_process(home, *args, check=check, timeout=900)

    # Validation every 10 steps instead of the default ten checks a run: each check of the 10 held-out rows costs
    # most of a step here, and three show the fall as well.
    events = json_lines(cli("train", "--model", "default", "--data", DEMO, "--max-steps", STEPS, "--eval-every", "10",
                            "--json").stdout)
    return cli, home, events

"""runs/carry.sh: which checkpoint files of an unfinished run it keeps in git from one carry to the next."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GIT_IDENTITY = {f"GIT_{who}_{what}": value for who in ("AUTHOR", "COMMITTER")
                for what, value in (("NAME", "test"), ("EMAIL", "test@example.com"))}


def save_checkpoint(run: Path, step: int, epoch: float) -> None:
    """The files carry.sh looks at, with trainer_state.json old enough (> 20 s) to count as completely written."""
    folder = run / f"checkpoint-{step}"
    folder.mkdir()
    for name in ("model.safetensors", "optimizer.pt", "rng_state.pth"):
        (folder / name).write_bytes(b"weights")
    state = folder / "trainer_state.json"
    state.write_text(json.dumps({"epoch": epoch}))
    written = time.time() - 60
    os.utime(state, (written, written))


def carry(repo: Path, run: str) -> set[str]:
    """Run carry.sh on one run folder and return the checkpoint files that git then tracks."""
    env = {**os.environ, **GIT_IDENTITY, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(["bash", str(REPO / "runs" / "carry.sh"), run], cwd=repo, env=env, check=True, capture_output=True)
    tracked = subprocess.run(["git", "ls-files", run], cwd=repo, check=True, capture_output=True, text=True).stdout
    return {path.removeprefix(f"{run}/") for path in tracked.split() if "/checkpoint-" in path}


def test_carry_keeps_the_newest_checkpoint_and_the_averaging_window_and_drops_the_rest(tmp_path):
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    run = tmp_path / "runs" / "example"
    run.mkdir(parents=True)
    # The last 2 of 3 epochs are averaged: epoch 2's weights must stay in git once the run is past it.
    (run / "recipe.json").write_text(json.dumps({"training": {"num_train_epochs": 3, "average_last_epochs": [2]}}))
    (run / "train.log").write_text("training\n")
    save_checkpoint(run, 10, 1.0)
    save_checkpoint(run, 15, 1.5)  # mid-epoch, written on SIGTERM
    newest = {f"checkpoint-15/{name}" for name in
              ("model.safetensors", "optimizer.pt", "rng_state.pth", "trainer_state.json")}
    assert carry(tmp_path, "runs/example") == newest

    # The next session's trainer resumes and deletes both old checkpoints from disk: they must leave git too.
    shutil.rmtree(run / "checkpoint-10")
    shutil.rmtree(run / "checkpoint-15")
    save_checkpoint(run, 20, 2.0)
    save_checkpoint(run, 25, 2.5)
    assert carry(tmp_path, "runs/example") == (
        {path.replace("-15/", "-25/") for path in newest}
        | {"checkpoint-20/model.safetensors", "checkpoint-20/trainer_state.json"})

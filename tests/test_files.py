"""Files a user can share: everything attnlab writes is atomic and gets the mode the umask says.

``tempfile.mkstemp`` makes 0600 files and ``safetensors.save_file`` 0600 files too; without
:mod:`attnlab.files` a run directory would be readable by its owner alone.
"""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from attnlab.files import atomic_path, atomic_write_text, current_umask, staging_dir

TINY_TRAIN = ["train", "--task", "reverse", "--steps", "12", "--d-model", "16", "--heads", "2",
              "--encoder-layers", "1", "--decoder-layers", "1", "--d-ff", "32", "--checkpoint-every", "5",
              "--eval-every", "6", "--num-train", "200", "--train-lengths", "1-4", "--test-lengths", "1-4",
              "--quiet"]
# One process trains a run and writes attend's json/png/html: the real CLI, with the umask set.
DRIVER = """
import json, sys
from attnlab.cli import main
train_args, attend_args = json.loads(sys.argv[1])
sys.exit(main(train_args) or main(attend_args))
"""


def modes(root: Path) -> dict[str, int]:
    """Permission bits of ``root`` and of everything under it, by relative path."""
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return found


@pytest.fixture
def umask():
    """Set the umask for an in-process test and put it back afterwards."""
    saved = os.umask(0o022)
    os.umask(saved)
    yield lambda mask: os.umask(mask)
    os.umask(saved)


@pytest.mark.parametrize("mask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_every_file_of_a_run_and_of_attend_has_the_umask_mode(tmp_path, mask, file_mode, dir_mode):
    run, pictures = tmp_path / "run", tmp_path / "attend"
    attend = ["attend", str(run), "3 1 4 1", "--out", str(pictures)]
    done = subprocess.run([sys.executable, "-c", DRIVER, json.dumps([TINY_TRAIN + ["--out", str(run)], attend])],
                          umask=mask, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr

    found = {**{f"run/{name}": mode for name, mode in modes(run).items()},
             **{f"attend/{name}": mode for name, mode in modes(pictures).items()}}
    expected_files = {"run/config.json", "run/model.safetensors", "run/metrics.jsonl", "run/eval.json",
                      "run/data.json", "run/tokenizer-src.json", "run/tokenizer-tgt.json",
                      "run/checkpoints/latest.json", "attend/attention.json", "attend/attention.html",
                      "attend/encoder_self.png", "attend/decoder_self.png", "attend/cross.png"}
    for name in ("model.safetensors", "optimizer.safetensors", "rng.safetensors", "state.json"):
        expected_files |= {f"run/checkpoints/step-00000010/{name}", f"run/checkpoints/step-00000012/{name}"}
    assert expected_files <= set(found), sorted(expected_files - set(found))
    directories = {name for name in found if (tmp_path / name.rstrip(".")).is_dir()}
    assert {"run/.", "run/checkpoints", "run/checkpoints/step-00000010", "attend/."} <= directories
    wrong = {name: oct(mode) for name, mode in found.items()
             if mode != (dir_mode if name in directories else file_mode)}
    assert wrong == {}, f"umask {mask:03o}: expected files {file_mode:o}, directories {dir_mode:o}; got {wrong}"
    assert not [name for name in found if name.endswith(".tmp") or "/.step-" in name], "temporary files left"


def test_atomic_write_gives_the_umask_mode_not_mkstemps_0600(tmp_path, umask):
    for mask, expected in ((0o022, 0o644), (0o027, 0o640), (0o077, 0o600), (0o002, 0o664)):
        umask(mask)
        assert current_umask() == mask
        target = tmp_path / f"note-{mask:o}.txt"
        atomic_write_text(target, "hello\n")
        assert stat.S_IMODE(target.stat().st_mode) == expected and target.read_text() == "hello\n"
        staging = staging_dir(tmp_path, prefix=f".stage-{mask:o}.")
        assert stat.S_IMODE(staging.stat().st_mode) == 0o777 & ~mask


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "results.json"
    atomic_write_text(target, "old")
    with pytest.raises(OSError, match="disk full"):
        with atomic_path(target) as tmp:
            Path(tmp).write_text("half of the new cont")
            raise OSError(28, "disk full")
    assert target.read_text() == "old"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["results.json"]

"""Reliability of training that is interrupted: SIGKILL and resume, corrupt checkpoints, a full disk.

Three copies of one small copy-task run train side by side: the reference, uninterrupted; a victim
killed with SIGKILL after a checkpoint; and a run whose disk "fills" after two checkpoints (its
RLIMIT_FSIZE is lowered with prlimit, which needs no privileges; SIGXFSZ is ignored, so a write that
would pass the limit fails with EFBIG, as one fails with ENOSPC on a full disk). Copies of the killed
run are then damaged, and all are resumed; each must end with the reference's weights, bit for bit,
or be refused with a clear message and no file changed.

    >>> section_interrupted(Path("/tmp/work"), quick=True)   # prints tables (b), (c), (d)
"""

from __future__ import annotations

import json
import resource
import shutil
import signal
import subprocess
import time
from pathlib import Path

from reliability_kit import ENV, PYTHON, Result, cli, digest, forked, judge_refusal, message_of, note, table, tree
from reliability_kit import verdict

CHECKPOINT_EVERY = 20


def copy_args(steps: int) -> list[str]:
    return ["--task", "copy", "--d-model", "32", "--heads", "2", "--encoder-layers", "1", "--decoder-layers", "1",
            "--d-ff", "64", "--steps", str(steps), "--batch-size", "32", "--checkpoint-every", str(CHECKPOINT_EVERY),
            "--eval-every", "1000", "--num-train", "2000", "--train-lengths", "1-6", "--test-lengths", "1-6",
            "--quiet"]


def train_popen(out: Path, steps: int, **extra) -> subprocess.Popen:
    return subprocess.Popen([PYTHON, "-m", "attnlab", "train", *copy_args(steps), "--out", str(out)], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **extra)


def wait_for_checkpoint(process: subprocess.Popen, run: Path, step: int, *, complete: bool = False,
                        timeout: float = 300) -> int | None:
    """Poll ``latest.json`` until it names ``step`` or later; the step it names, or None if the run ended first.

    ``complete``: also wait until RUN/model.safetensors holds that checkpoint's weights (the save is over).
    """
    pointer, deadline = run / "checkpoints" / "latest.json", time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        try:
            latest = json.loads(pointer.read_text())
            saved = run / "checkpoints" / latest["dir"] / "model.safetensors"
            if latest["step"] >= step and (not complete or digest(saved) == digest(run / "model.safetensors")):
                return latest["step"]
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.005)
    return None


def finish(process: subprocess.Popen, timeout: float) -> str:
    """Wait for ``process``; its stderr (killed, and said so, past ``timeout``)."""
    try:
        return process.communicate(timeout=timeout)[1]
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return f"(killed: still running after {timeout:.0f} s)"


def train_records(run: Path) -> list[tuple]:
    """What must match between runs in metrics.jsonl (its timings differ by nature)."""
    lines = (run / "metrics.jsonl").read_text().splitlines() if (run / "metrics.jsonl").exists() else []
    return [(r["step"], r.get("split"), r.get("loss"), r.get("lr")) for r in map(json.loads, lines)]


def resume_all(runs: list[Path], timeout: float = 600) -> list[Result]:
    """``attnlab train --out RUN --resume`` for each run, as processes running side by side."""
    started = time.perf_counter()
    processes = [subprocess.Popen([PYTHON, "-m", "attnlab", "train", "--out", str(run), "--resume", "--quiet"],
                                  env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for run in runs]
    results = []
    for process in processes:
        try:
            out, err = process.communicate(timeout=max(1.0, started + timeout - time.perf_counter()))
            results.append(Result(process.returncode, out, err, time.perf_counter() - started))
        except subprocess.TimeoutExpired:
            process.kill()
            results.append(Result(None, "", "", time.perf_counter() - started))
    return results


def refusal_row(what: str, run: Path, args: list[str], expected_text: str, quick: bool) -> list:
    """Run a command that must refuse (exit 2, ``expected_text`` in its message, ``run`` untouched)."""
    before = tree(run)
    result = (forked if quick else cli)(args, cwd=run, timeout=120)
    problems = judge_refusal(result)
    problems += [] if expected_text in result.stderr else [f"message lacks {expected_text!r}"]
    problems += [] if tree(run) == before else ["files changed"]
    return [what, result.code, message_of(result.stderr), verdict(what, problems)]


def checkpoint_dirs(run: Path) -> list[Path]:
    return sorted((run / "checkpoints").glob("step-*"))


def section_interrupted(work: Path, quick: bool) -> None:
    steps = 120 if quick else 400
    reference, killed, disk = work / "reference", work / "killed", work / "disk"
    started = time.perf_counter()
    uninterrupted, victim = train_popen(reference, steps), train_popen(killed, steps)
    killed_at = wait_for_checkpoint(victim, killed, 2 * CHECKPOINT_EVERY)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=60)
    snapshot = work / "killed-snapshot"
    shutil.copytree(killed, snapshot)

    filler = train_popen(disk, steps, preexec_fn=lambda: signal.signal(signal.SIGXFSZ, signal.SIG_IGN))
    full_at = wait_for_checkpoint(filler, disk, 2 * CHECKPOINT_EVERY, complete=True)
    limit = (disk / "model.safetensors").stat().st_size // 2 if full_at else 0
    if full_at:  # from now on no file may grow past half the size of the weights
        resource.prlimit(filler.pid, resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    filler_err = finish(filler, 300)
    finish(uninterrupted, 600)
    expected = digest(reference / "model.safetensors")
    note(f"reference, killed and full-disk runs done in {time.perf_counter() - started:.0f} s")

    # Damage copies of the killed run: the latest checkpoint, latest.json, both checkpoints.
    flipped, pointerless, broken = work / "flipped", work / "pointerless", work / "broken"
    for copy in (flipped, pointerless, broken):
        shutil.copytree(snapshot, copy)
    bad, good = checkpoint_dirs(flipped)[-1], checkpoint_dirs(flipped)[-2]
    weights = bytearray((bad / "model.safetensors").read_bytes())
    weights[-3] ^= 0x10  # one bit of one weight: the header still parses; only the recorded SHA-256 sees it
    (bad / "model.safetensors").write_bytes(bytes(weights))
    (pointerless / "checkpoints" / "latest.json").write_text('{"step": ')
    for directory in checkpoint_dirs(broken):
        tensors = directory / "model.safetensors"
        tensors.write_bytes(tensors.read_bytes()[: tensors.stat().st_size // 2])
    disk_state = {"left": (json.loads(p.read_text())["dir"] if (p := disk / "checkpoints" / "latest.json").exists()
                           else None),
                  "leftovers": [p.name for p in disk.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".")]}
    resumed, from_flipped, from_pointerless, from_full = resume_all([killed, flipped, pointerless, disk])
    note(f"four resumed runs done in {resumed.seconds:.0f} s")

    report_kill(steps, killed_at, resumed, killed, reference, expected)
    rows = [fallback_row("latest checkpoint: one bit flipped in its model.safetensors; --resume", from_flipped,
                         flipped, expected, [bad.name, good.name]),
            fallback_row("checkpoints/latest.json cut short; --resume", from_pointerless, pointerless, expected,
                         ["latest.json", bad.name])]
    rows.append(refusal_row("both checkpoints truncated to half; --resume", broken,
                            ["train", "--out", str(broken), "--resume"], "no readable checkpoint", quick))
    truncated = work / "truncated"
    shutil.copytree(reference, truncated)
    whole = (truncated / "model.safetensors").read_bytes()
    for what, content in (("model.safetensors truncated to half", whole[: len(whole) // 2]),
                          ("model.safetensors cut inside its header", whole[:20]),
                          ("model.safetensors of 64 zero bytes", b"\0" * 64)):
        (truncated / "model.safetensors").write_bytes(content)
        for command in (["eval", str(truncated)], ["generate", str(truncated), "1 2 3"]):
            rows.append(refusal_row(f"{what}; `{command[0]}`", truncated, command, "corrupt or truncated", quick))
    print("## (c) Corrupt checkpoints and truncated safetensors files\n")
    print("Copies of the killed run, damaged, then resumed; copies of the finished run with a damaged "
          "`model.safetensors`, then used.\n")
    table(["case", "exit", "message", "verdict"], rows)
    report_full_disk(filler, filler_err, full_at, limit, disk_state, from_full, disk, expected)


def report_kill(steps: int, killed_at: int | None, resumed: Result, killed: Path, reference: Path,
                expected: str) -> None:
    problems = [] if killed_at and killed_at < steps else ["the run was not killed between checkpoints"]
    problems += [] if resumed.code == 0 else [f"resume exit {resumed.code}: {message_of(resumed.stderr)}"]
    same_metrics = train_records(killed) == train_records(reference)
    problems += [] if digest(killed / "model.safetensors") == expected else ["final weights differ"]
    problems += [] if same_metrics else ["metrics.jsonl differs"]
    print("## (b) SIGKILL and resume\n")
    print(f"A copy-task run of {steps} steps (a checkpoint every {CHECKPOINT_EVERY}) killed with SIGKILL after a "
          "checkpoint, then `attnlab train --out RUN --resume`, against the same run uninterrupted.\n")
    table(["killed after step", "resume exit", "final weights (SHA-256)", "uninterrupted", "metrics.jsonl",
           "verdict"],
          [[killed_at, resumed.code, digest(killed / "model.safetensors"), expected,
            "same" if same_metrics else "differs", verdict("SIGKILL and resume", problems)]])


def fallback_row(what: str, result: Result, run: Path, expected: str, named: list[str]) -> list:
    """A resume that must fall back to the previous checkpoint with one warning naming ``named``."""
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:") and "resuming" in line]
    problems = [] if result.code == 0 else [f"exit {result.code}: {message_of(result.stderr)}"]
    problems += [] if len(warnings) == 1 and all(name in warnings[0] for name in named) else [
        f"not one warning naming {' and '.join(named)}"]
    problems += [] if digest(run / "model.safetensors") == expected else ["final weights differ"]
    return [what, result.code, warnings[0] if warnings else message_of(result.stderr), verdict(what, problems)]


def report_full_disk(filler: subprocess.Popen, stderr: str, full_at: int | None, limit: int, state: dict,
                     resumed: Result, disk: Path, expected: str) -> None:
    error_lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    problems = [] if full_at else ["the run ended before its second checkpoint"]
    problems += [] if filler.returncode not in (0, None) else [f"exit {filler.returncode}"]
    problems += [] if len(error_lines) == 1 and "Traceback" not in stderr else ["not one clean error line"]
    problems += [f"left behind: {state['leftovers'][:3]}"] if state["leftovers"] else []
    problems += [] if resumed.code == 0 else [f"resume exit {resumed.code}: {message_of(resumed.stderr)}"]
    same = digest(disk / "model.safetensors") == expected
    problems += [] if same else ["resumed weights differ"]
    print("## (d) A full disk\n")
    print(f"The same run again; once its checkpoint of step {full_at} is complete, `prlimit` lowers its "
          f"RLIMIT_FSIZE to {limit:,} bytes (half its weights file; SIGXFSZ ignored), so writing the next "
          "checkpoint fails with EFBIG, as it would with ENOSPC on a full disk. Then the run is resumed "
          "without the limit.\n")
    table(["exit", "error line", "checkpoint left", "temporary files left", "resume exit",
           "final weights vs uninterrupted", "verdict"],
          [[filler.returncode, error_lines[0] if error_lines else stderr.strip()[-200:], state["left"],
            len(state["leftovers"]), resumed.code, "same" if same else "differ", verdict("full disk", problems)]])

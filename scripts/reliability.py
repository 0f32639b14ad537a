"""How attnlab behaves when things go wrong, measured: prints Markdown tables, exits 1 on any wrong case.

    .venv/bin/python scripts/reliability.py            # every case; each command a new process
    .venv/bin/python scripts/reliability.py --quick    # CI: the same cases, shorter runs, forked processes

(a) every bad input tried on every command: exit status, message, and whether any file changed
    (the tree's paths, modes and SHA-256 before and after);
(b) a training process killed with SIGKILL after a checkpoint, resumed, against an uninterrupted
    run (weight digests); (c) corrupt checkpoints (resume falls back to the previous one) and
    truncated safetensors files; (d) a full disk, simulated without privileges
    (scripts/reliability_training.py);
(e) `attnlab explore` as a real process under 200 concurrent requests, then hostile ones (status
    codes, p50/p99 latency, the server's peak RSS).
Everything runs in a temporary directory and talks only to 127.0.0.1; every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from reliability_kit import ENV, PYTHON, cell, cli, forked, judge_refusal, message_of, note, table, tree, verdict, wrong
from reliability_training import section_interrupted

TOY_ARGS = ["--task", "toy", "--steps", "40", "--d-model", "32", "--heads", "2", "--encoder-layers", "2",
            "--decoder-layers", "1", "--d-ff", "64", "--checkpoint-every", "20", "--quiet"]
REV_ARGS = ["--task", "reverse", "--steps", "10", "--d-model", "16", "--heads", "2", "--encoder-layers", "1",
            "--decoder-layers", "1", "--d-ff", "32", "--train-lengths", "1-4", "--test-lengths", "1-4",
            "--num-train", "200", "--quiet"]


# --------------------------------------------------------------------------- (a) bad input


def bad_input_cases(work: Path) -> list[tuple[str, str, list[str], str | None]]:
    """(command, what is wrong, argv, stdin). ``work`` holds runs ``toy`` and ``rev``, a file, an empty dir."""
    toy, rev, afile, empty, out = (str(work / n) for n in ("toy", "rev", "afile", "empty", "new"))
    bad_toml, unknown_toml = str(work / "bad.toml"), str(work / "unknown.toml")
    long_text = "the dog sleeps . " * 330  # 5,610 characters
    train = lambda *extra: ["train", "--task", "copy", "--out", out, "--quiet", *extra]  # noqa: E731
    return [
        ("train", "unknown task", ["train", "--task", "nosuchtask", "--out", out], None),
        ("train", "corpus path that does not exist", ["train", "--task", "/nonexistent/pairs.tsv", "--out", out], None),
        ("train", "d_model not divisible by heads", train("--d-model", "30", "--heads", "4"), None),
        ("train", "negative steps", train("--steps", "-5"), None),
        ("train", "steps not a number", train("--steps", "abc"), None),
        ("train", "unknown positional encoding", train("--pos-encoding", "nope"), None),
        ("train", "unknown precision", train("--precision", "fp8"), None),
        ("train", "unknown device", train("--device", "tpu"), None),
        ("train", "cool-down fraction 1.5", train("--cooldown", "1.5"), None),
        ("train", "dropout 2", train("--dropout", "2"), None),
        ("train", "training lengths 5-2", train("--train-lengths", "5-2"), None),
        ("train", "--nproc 0", train("--nproc", "0"), None),
        ("train", "TOML syntax error", ["train", "--config", bad_toml, "--out", out], None),
        ("train", "TOML with an unknown key", ["train", "--config", unknown_toml, "--out", out], None),
        ("train", "existing run without --resume", ["train", "--task", "copy", "--out", toy, "--quiet"], None),
        ("train", "--resume of a directory that is no run", ["train", "--out", empty, "--resume"], None),
        ("train", "--out below a regular file", ["train", "--task", "copy", "--out", f"{afile}/run"], None),
        ("eval", "run that does not exist", ["eval", "/nonexistent/run"], None),
        ("eval", "a file instead of a run", ["eval", afile], None),
        ("eval", "unknown split", ["eval", toy, "--split", "nope"], None),
        ("eval", "beam 0", ["eval", toy, "--beam", "0"], None),
        ("eval", "--data that does not exist", ["eval", toy, "--data", "/nonexistent.tsv"], None),
        ("eval", "--limit -1", ["eval", toy, "--limit", "-1"], None),
        ("info", "run that does not exist", ["info", "/nonexistent/run"], None),
        ("info", "empty directory", ["info", empty], None),
        ("translate", "empty sentence", ["translate", toy, ""], None),
        ("translate", "5,610 characters without --truncate", ["translate", toy, long_text], None),
        ("translate", "beam 0", ["translate", toy, "--beam", "0", "the dog sleeps ."], None),
        ("translate", "stdin without a sentence", ["translate", toy], "\n\n"),
        ("translate", "--batch-size 0", ["translate", toy, "--batch-size", "0"], "the dog sleeps .\n"),
        ("translate", "run that does not exist", ["translate", "/nonexistent/run", "hello"], None),
        ("generate", "unknown symbols", ["generate", rev, "3 x 4"], None),
        ("generate", "empty sequence", ["generate", rev, ""], None),
        ("generate", "a translation run", ["generate", toy, "3 1 4"], None),
        ("attend", "empty sentence", ["attend", toy, "", "--out", out], None),
        ("attend", "5,610 characters", ["attend", toy, long_text, "--out", out], None),
        ("attend", "beam 0", ["attend", toy, "the dog sleeps .", "--beam", "0", "--out", out], None),
        ("attend", "--out below a regular file", ["attend", toy, "the dog sleeps .", "--out", f"{afile}/x"], None),
        ("attend", "model that does not exist", ["attend", "/nonexistent/run", "hello", "--out", out], None),
        ("explore", "run that does not exist", ["explore", "/nonexistent/run"], None),
        ("explore", "port 70000", ["explore", toy, "--port", "70000"], None),
        ("explore", "port 0", ["explore", toy, "--port", "0"], None),
        ("experiment", "unknown positional encoding", ["experiment", "pe", "--pos-encoding", "nope", "--out", out], None),
        ("experiment", "unknown task", ["experiment", "pe", "--tasks", "nosuch", "--out", out], None),
        ("experiment", "0 seeds", ["experiment", "blocks", "--seeds", "0", "--out", out], None),
        ("experiment", "--out below a regular file", ["experiment", "architectures", "--out", f"{afile}/x"], None),
        ("bench", "unknown section", ["bench", "--only", "nope", "--out", out], None),
        ("bench", "unknown device", ["bench", "--device", "tpu", "--out", out], None),
        ("bench", "0 threads", ["bench", "--threads", "0", "--out", out], None),
        ("bench", "--out below a regular file", ["bench", "--quick", "--out", f"{afile}/x"], None),
        ("data", "unknown corpus", ["data", "download", "nosuch", "--cache-dir", out], None),
        ("data", "--sha256 that is not hex", ["data", "download", "fra-eng", "--url", "http://127.0.0.1:9/x.zip",
                                              "--sha256", "xyz", "--cache-dir", out], None),
        ("data", "mirror that refuses the connection", ["data", "download", "fra-eng", "--url",
                                                        "http://127.0.0.1:9/x.zip", "--sha256", "0" * 64,
                                                        "--cache-dir", out], None),
        ("demo", "empty --sentence", ["demo", "--sentence", "", "--out", out], None),
        ("demo", "--out below a regular file", ["demo", "--out", f"{afile}/x"], None),
        ("(none)", "unknown command", ["nosuchcommand"], None),
    ]


def section_bad_input(work: Path, quick: bool) -> None:
    (work / "afile").write_text("a file, not a directory\n")
    (work / "empty").mkdir()
    (work / "bad.toml").write_text('task = "copy\n')
    (work / "unknown.toml").write_text('task = "copy"\nlearning_rate = 0.1\n')
    (work / "cwd").mkdir()  # commands with a default --out would write here
    rows = []
    for command, what, args, stdin in bad_input_cases(work):
        before = tree(work)
        result = (forked if quick else cli)(args, cwd=work / "cwd", stdin=stdin, timeout=60 if quick else 120)
        after = tree(work)
        changed = sorted(set(before) ^ set(after) | {p for p in before if p in after and before[p] != after[p]})
        problems = judge_refusal(result) + ([f"files changed: {', '.join(changed[:3])}"] if changed else [])
        rows.append([command, what, result.code, message_of(result.stderr), "yes" if not changed else "**no**",
                     verdict(f"{command}: {what}", problems)])
    print("## (a) Bad input on every command\n")
    print(f"{len(rows)} cases, each {'a forked process' if quick else 'a new process'}; the runs, a file and "
          "the output paths they name are compared (paths, modes, SHA-256) before and after.\n")
    table(["command", "bad input", "exit", "message", "files unchanged", "verdict"], rows)


# --------------------------------------------------------------------------- (e) the explorer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def proc_status(pid: int, key: str) -> float:
    """A field of /proc/PID/status in MiB (VmRSS: now, VmHWM: the peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def explorer_load(url: str, count: int) -> tuple[list, list]:
    import httpx

    async def timed(client, method, path, **kwargs):
        started = time.perf_counter()
        try:
            response = await client.request(method, path, **kwargs)
            return response.status_code, time.perf_counter() - started, response.text[:200]
        except httpx.HTTPError as error:
            return f"{type(error).__name__}", time.perf_counter() - started, str(error)[:200]

    sentences = ["the dog sleeps .", "the small cat does not like the red car .", "the black dog slept in the garden ."]
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        await asyncio.gather(*(timed(client, "POST", "/api/attention", json={"text": s, "beam": 1}) for s in sentences))
        load = await asyncio.wait_for(asyncio.gather(*(
            timed(client, "POST", "/api/attention", json={"text": sentences[i % 3], "beam": 1 + i % 3})
            for i in range(count))), timeout=600)
        hostile = [
            ("empty text", 400, dict(json={"text": "", "beam": 1})),
            ("5,600-character text", 400, dict(json={"text": "a" * 5600, "beam": 1})),
            ("beam 100000", 400, dict(json={"text": "the dog sleeps .", "beam": 100000})),
            ("beam 0", 422, dict(json={"text": "the dog sleeps .", "beam": 0})),
            ("4,000-character forced target", 400, dict(json={"text": "the dog", "target": "le " * 1333 + "c"})),
            ("200 KB body", 413, dict(content=b'{"text": "' + b"a" * 200_000 + b'"}',
                                      headers={"content-type": "application/json"})),
            ("malformed JSON", 422, dict(content=b'{"text": "the dog', headers={"content-type": "application/json"})),
            ("no text field", 422, dict(json={"beam": 1})),
            ("<script> as text", 200, dict(json={"text": "<script>alert(1)</script>", "beam": 1})),
        ]
        answers = []
        for what, expected, kwargs in hostile:
            answers.append((what, expected, *await timed(client, "POST", "/api/attention", **kwargs)))
        for path, expected in (("/api/info", 200), ("/openapi.json", 200), ("/docs", 200)):
            answers.append((f"GET {path} afterwards", expected, *await timed(client, "GET", path)))
    return load, answers


def section_explorer(work: Path, quick: bool) -> None:
    port, run, count = free_port(), work / "toy", 200
    before = tree(run)
    log = (work.parent / "explore.log").open("w")  # a file, not a pipe: a full pipe would block the server
    server = subprocess.Popen([PYTHON, "-m", "attnlab", "explore", str(run), "--port", str(port)], env=ENV,
                              stdout=log, stderr=log, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        import httpx

        deadline, ready = time.time() + 120, False
        while time.time() < deadline and server.poll() is None and not ready:
            try:
                ready = httpx.get(url + "/api/info", timeout=2).status_code == 200
            except httpx.HTTPError:
                time.sleep(0.2)
        if not ready:
            print("## (e) The explorer under load\n")
            log.flush()
            tail = (work.parent / "explore.log").read_text()[-300:]
            print(verdict("explorer", [f"the server did not start within 120 s: {cell(tail)}"]) + "\n")
            return
        idle_rss = proc_status(server.pid, "VmRSS")
        started = time.perf_counter()
        load, answers = asyncio.run(explorer_load(url, count))
        wall = time.perf_counter() - started
        peak = proc_status(server.pid, "VmHWM")
        alive = server.poll() is None
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
    codes = {}
    for code, _, _ in load:
        codes[code] = codes.get(code, 0) + 1
    latencies = [seconds for _, seconds, _ in load]
    problems = [] if codes == {200: count} else [f"status codes {codes}"]
    problems += [] if alive else ["the server died"]
    problems += [] if peak - idle_rss < 500 else [f"memory grew by {peak - idle_rss:.0f} MiB"]
    problems += [] if tree(run) == before else ["the run directory changed"]
    print("## (e) The explorer under load\n")
    print(f"`attnlab explore` on a small toy run as a real process on 127.0.0.1; {count} requests sent at once "
          "(beam 1 to 3), then hostile requests one by one.\n")
    table(["requests", "status codes", "p50 latency", "p99 latency", "all answered in", "RSS idle → peak",
           "verdict"],
          [[count, ", ".join(f"{n}× {c}" for c, n in codes.items()), f"{percentile(latencies, 0.5):.2f} s",
            f"{percentile(latencies, 0.99):.2f} s", f"{wall:.1f} s", f"{idle_rss:.0f} → {peak:.0f} MiB",
            verdict("explorer load", problems)]])
    rows = []
    for what, expected, code, seconds, body in answers:
        problems = [] if code == expected else [f"status {code}, expected {expected}"]
        problems += [] if seconds < 5 else [f"took {seconds:.1f} s"]
        detail = body if code != 200 else "(an answer)" if "attention" in body or what.startswith("GET") else body
        rows.append([what, expected, code, f"{seconds * 1000:.0f} ms", detail, verdict(f"explorer: {what}", problems)])
    table(["request", "expected", "status", "latency", "answer", "verdict"], rows)


# --------------------------------------------------------------------------- the report


def cpu_seconds() -> float:
    """CPU time of this process and of its children that have ended."""
    mine, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return mine.ru_utime + mine.ru_stime + children.ru_utime + children.ru_stime


def machine() -> str:
    import torch

    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    wanted = ["avx2", "avx512f", "avx512_bf16", "amx_bf16"]
    shown = ", ".join(f"{flag} {'yes' if flag in flags else 'no'}" for flag in wanted)
    capability = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", lambda: "?")()
    return (f"{model}, {os.cpu_count()} logical CPUs ({shown}; torch CPU capability {capability}), "
            f"torch {torch.__version__}, Python {platform.python_version()}, {platform.system()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs and forked processes (CI)")
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it (default: a temporary one)")
    args = parser.parse_args(argv)
    work = args.keep or Path(tempfile.mkdtemp(prefix="attnlab-reliability-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    import attnlab.cli  # imported once here: the forked cases start from it

    attnlab.cli._register()
    print(f"# attnlab reliability{' (quick)' if args.quick else ''}\n")
    print(f"Machine: {machine()}. Command: `python scripts/reliability.py{''.join(' ' + a for a in sys.argv[1:])}`, "
          f"{time.strftime('%Y-%m-%d')}; load average {os.getloadavg()[0]:.1f} at the start.\n")
    try:
        note("training the small runs the cases use")
        fixtures = [subprocess.Popen([PYTHON, "-m", "attnlab", "train", *extra, "--out", str(work / "a" / name)],
                                     env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                    for name, extra in (("toy", TOY_ARGS), ("rev", REV_ARGS))]
        for process in fixtures:
            errors = process.communicate(timeout=600)[1]
            if process.returncode != 0:
                raise SystemExit(f"could not train a run the cases need: {errors}")
        (work / "b").mkdir()
        for name, section, where in (("(a) bad input", section_bad_input, "a"),
                                     ("(b)-(d) interrupted training", section_interrupted, "b"),
                                     ("(e) the explorer", section_explorer, "a")):
            note(f"{name} (at {time.perf_counter() - started:.0f} s, {cpu_seconds():.0f} CPU-s so far)")
            section(work / where, args.quick)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{len(wrong)} wrong case(s); {time.perf_counter() - started:.0f} s in all ({cpu_seconds():.0f} CPU-s).")
    for line in wrong:
        print(f"- {line}")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())

"""The translation benchmarks run end to end (``--quick``: seconds of training).

Each runs twice: on a tiny corpus that the test writes (``generated``: every clone runs it), and
on the developer corpora (``shared``: ``$ATTNLAB_SHARED/data``, skipped where they are absent,
failed when they are absent in CI). The scripts find a corpus through ``ATTNLAB_DATA``.
"""

import gzip
import importlib.util
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from itertools import product
from pathlib import Path

import pytest

from conftest import SHARED, shared_data

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["generated", "shared"]
# A generated corpus is tiny: short budgets and small batches keep each script run to seconds.
GENERATED_ARGS = ["--minutes", "0.03", "--max-tokens", "512"]

COLOURS = {"red": ("rouge", "roter"), "green": ("vert", "grüner"), "blue": ("bleu", "blauer"),
           "black": ("noir", "schwarzer"), "white": ("blanc", "weißer"), "small": ("petit", "kleiner")}
ANIMALS = {"dog": ("chien", "Hund"), "cat": ("chat", "Kater"), "bird": ("oiseau", "Vogel"),
           "horse": ("cheval", "Hengst"), "fish": ("poisson", "Fisch"), "bear": ("ours", "Bär"),
           "wolf": ("loup", "Wolf"), "mouse": ("rat", "Mäuserich")}
STATES = {"here": ("ici", "hier"), "tired": ("fatigué", "müde"), "happy": ("content", "froh"),
          "hungry": ("affamé", "hungrig"), "asleep": ("endormi", "eingeschlafen")}


def _sentences() -> list[tuple[str, str, str]]:
    """(English, French, German) sentences of one pattern, 240 of them: 'The red dog is tired.'"""
    return [(f"The {colour} {animal} is {state}.",
             f"Le {ANIMALS[animal][0]} {COLOURS[colour][0]} est {STATES[state][0]}.",
             f"Der {COLOURS[colour][1]} {ANIMALS[animal][1]} ist {STATES[state][1]}.")
            for colour, animal, state in product(COLOURS, ANIMALS, STATES)]


def write_tiny_corpora(root: Path) -> Path:
    """``root/fra-eng/fra.txt`` (English<TAB>French<TAB>attribution, as Tatoeba's) and
    ``root/multi30k/{train,val,test_2016_flickr}.{de,en}.gz`` (line-aligned, as Multi30K's)."""
    sentences = _sentences()
    fra = root / "fra-eng" / "fra.txt"
    fra.parent.mkdir(parents=True)
    lines = [f"{en}\t{fr}\tCC-BY 2.0 (France) Attribution: tatoeba.org" for en, fr, _ in sentences]
    lines += ["Go.\tVa !", "Go.\tBouge !", "Hi.\tSalut !", "Hi.\tSalut."]  # several references for one source
    fra.write_text("\n".join(lines) + "\n", encoding="utf-8")
    multi30k = root / "multi30k"
    multi30k.mkdir()
    splits = {"train": sentences[:200], "val": sentences[200:220], "test_2016_flickr": sentences[220:]}
    for split, rows in splits.items():
        for lang, column in (("en", 0), ("de", 2)):
            text = "".join(row[column] + "\n" for row in rows)
            (multi30k / f"{split}.{lang}.gz").write_bytes(gzip.compress(text.encode("utf-8")))
    return root


def _data_root(source: str, corpus: str, tmp_path: Path) -> Path:
    if source == "generated":
        return write_tiny_corpora(tmp_path / "data")
    shared_data(corpus)  # skips here, or fails in CI, when the developer corpus is absent
    return SHARED / "data"


def _run(script: str, args: list[str], data_root: Path) -> None:
    env = {**os.environ, "ATTNLAB_DATA": str(data_root)}  # the scripts look there first
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _read_from(results: dict, data_root: Path) -> bool:
    return all(Path(name).resolve().is_relative_to(data_root.resolve()) for name in results["config"]["data"]["files"])


@pytest.mark.slow
@pytest.mark.parametrize("source", SOURCES)
def test_fra_eng_benchmark_quick_scores_both_models_and_a_short_budget_run(tmp_path, source):
    data_root = _data_root(source, "fra-eng/fra.txt", tmp_path)
    extra = GENERATED_ARGS if source == "generated" else ["--max-pairs", "2000"]
    _run("fra_eng.py", ["--quick", "--threads", "1", *extra, "--seed", "1", "--runs-dir", str(tmp_path / "runs"),
                        "--out", str(tmp_path / "fra")], data_root)
    results = json.loads((tmp_path / "fra.json").read_text())
    assert _read_from(results, data_root)
    models = results["models"]
    assert set(models) == {"attnlab", "torch.nn baseline"}
    attnlab, baseline = models["attnlab"], models["torch.nn baseline"]
    short, full = results["config"]["short_minutes"], results["config"]["minutes"]
    # attnlab's side is the plain command: a run directory per budget, written by the trainer
    for minutes, entry in ((full, attnlab), (short, attnlab["snapshot"])):
        run = tmp_path / "runs" / f"fra-eng-{minutes:g}min-seed1"
        config, scores = json.loads((run / "config.json").read_text()), json.loads((run / "eval.json").read_text())
        assert config["train"]["max_minutes"] == minutes and config["train"]["seed"] == 1
        assert config["task"] == "fra-eng" and entry["bleu"] == scores["bleu"] and entry["steps"] == scores["steps"]
    assert attnlab["snapshot"]["budget_minutes"] == short and baseline["snapshot"]["budget_minutes"] == short
    assert baseline["snapshot"]["steps"] <= baseline["steps"]
    assert attnlab["precision"] in ("fp32", "bf16") and baseline["precision"] == "fp32"
    for entry in models.values():
        assert 0.0 <= entry["final"]["bleu"] <= 100.0 and entry["steps"] > 0
    rows = [line.split("|")[1].strip() for line in (tmp_path / "fra.md").read_text().splitlines() if line.startswith("|")]
    assert "attnlab" in rows and "torch.nn baseline" in rows


@pytest.mark.slow
@pytest.mark.parametrize("source", SOURCES)
def test_multi30k_benchmark_quick_writes_its_results(tmp_path, source):
    data_root = _data_root(source, "multi30k", tmp_path)
    extra = GENERATED_ARGS if source == "generated" else []
    _run("multi30k.py", ["--quick", "--threads", "1", *extra, "--out", str(tmp_path / "m30k")], data_root)
    results = json.loads((tmp_path / "m30k.json").read_text())
    assert _read_from(results, data_root)
    assert results["attnlab"]["steps"] > 0 and "bleu" in results["attnlab"]["test_2016_flickr"]
    assert results["config"]["attnlab_recipe"]["model"]["dropout"] == 0.1
    assert (tmp_path / "m30k.md").read_text().startswith("# Multi30K German → English")


@pytest.mark.slow
def test_the_budget_benchmark_trains_the_plain_command_and_scores_greedy_beam_and_unaveraged(tmp_path):
    data_root = write_tiny_corpora(tmp_path / "data")
    # a budget of 1 minute on a machine half as fast as this one: 0.5 minutes here
    _run("budget.py", ["--minutes", "1", "--time-scale", "0.5", "--seeds", "0", "--ema", "--beam", "2",
                       "--train-args", "--d-ff 512", "--tag", "t", "--runs-dir", str(tmp_path / "runs"),
                       "--out", str(tmp_path / "budget")], data_root)
    results = json.loads((tmp_path / "budget.json").read_text())
    (row,) = results["runs"]
    run = tmp_path / "runs" / "fra-eng-1min-seed0-t"
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["max_minutes"] == 0.5 and config["train"]["average"] == "ema"
    assert config["model"]["d_ff"] == 512 and row["changed"] == "d_ff=512"  # passed through, and named
    assert row["minutes"] == 1 and row["wall_budget_minutes"] == 0.5 and results["time_scale"] == 0.5
    # the plan, where the budget outlasted the calibration (a loaded machine may not get that far in 30 s)
    assert row["planned_steps"] == (config["plan"] or {}).get("steps") and row["steps"] > 0
    assert row["average"] == "ema" and row["bleu_default_recipe"] == row["bleu_unaveraged"]
    for key in ("bleu", "bleu_unaveraged", "bleu_beam2-lp0.6"):
        assert 0.0 <= row[key] <= 100.0
    assert 0.0 <= row["padding"] < 1.0 and row["outside_steps_s"] >= 0
    assert results["median_bleu"] == {}  # medians are of the default recipe's runs only
    assert (tmp_path / "budget.md").read_text().startswith("# fra-eng within a time budget")
    assert json.loads((run / "eval-checkpoint.json").read_text())["weights"] == "checkpoint"
    # --collect reads the kept scores back instead of decoding again
    (run / "eval-checkpoint.json").write_text(json.dumps({"bleu": 12.5, "chrf": 30.0, "weights": "checkpoint"}))
    _run("budget.py", ["--collect", str(run), "--out", str(tmp_path / "again")], data_root)
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["runs"][0]["bleu_unaveraged"] == 12.5 and again["runs"][0]["bleu_beam2-lp0.6"] == row["bleu_beam2-lp0.6"]
    # the same run, as if trained with the preset's feed-forward width (and so its small-budget rule on)
    config["model"]["d_ff"] = 1024
    config["train"]["small_budget_model"] = {"d_model": 192, "d_ff": 768}
    (run / "config.json").write_text(json.dumps(config))
    _run("budget.py", ["--collect", str(run), "--out", str(tmp_path / "default")], data_root)
    default = json.loads((tmp_path / "default.json").read_text())
    assert default["runs"][0]["changed"] == "" and default["median_bleu"] == {"1": {"runs": 1, "median_bleu": 12.5}}
    # a study named in budget.json (--study) is not the default recipe, whatever its settings
    (run / "budget.json").write_text(json.dumps({**json.loads((run / "budget.json").read_text()), "study": "x y"}))
    _run("budget.py", ["--collect", str(run), "--out", str(tmp_path / "study")], data_root)
    study = json.loads((tmp_path / "study.json").read_text())
    assert study["runs"][0]["changed"] == "study=x y" and study["median_bleu"] == {}


def _budget_script():
    spec = importlib.util.spec_from_file_location("budget_script", ROOT / "benchmarks" / "budget.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_budget_benchmark_matches_each_run_to_a_slower_machine_by_a_probe(tmp_path, monkeypatch, capsys):
    budget = _budget_script()
    probes, trained = [], []
    monkeypatch.setattr(budget, "probe_tokens_per_s",
                        lambda task, run, seed, steps, env: probes.append((task, run.name, seed, steps, env)) or 4000.0)

    def fake_train(args, env=None, capture=False):  # records the command; writes the run's folder
        trained.append(args)
        Path(args[args.index("--out") + 1]).mkdir(parents=True)

    monkeypatch.setattr(budget, "_attnlab", fake_train)
    monkeypatch.setattr(budget, "summarise", lambda run, **_: {"run": run.name, "minutes": 30.0, "changed": "",
                                                               "bleu_default_recipe": 1.0})
    runs = tmp_path / "runs"
    assert budget.main(["--minutes", "30", "--seeds", "3", "--emulate-avx2", "--match-tokens-per-s", "1200",
                        "--probe-steps", "20", "--study", "a try", "--runs-dir", str(runs),
                        "--out", str(tmp_path / "out")]) == 0
    # the probe ran first, with the run's seed and kernels; 1,200 / 4,000 tokens/s makes 30 minutes 9 here
    assert probes == [("fra-eng", "fra-eng-30min-seed3-probe", 3, 20, budget.AVX2_ONLY)]
    (args,) = trained
    assert args[args.index("--max-minutes") + 1] == "9"
    assert json.loads((runs / "fra-eng-30min-seed3" / "budget.json").read_text()) == {
        "minutes": 30.0, "time_scale": 0.3, "probe_tokens_per_s": 4000.0, "study": "a try"}
    capsys.readouterr()
    with pytest.raises(SystemExit) as refused:  # a bad rate: one message, exit 2, nothing run or written
        budget.main(["--match-tokens-per-s", "0", "--runs-dir", str(tmp_path / "none")])
    assert refused.value.code == 2 and "--match-tokens-per-s must be > 0" in capsys.readouterr().err
    assert len(probes) == len(trained) == 1 and not (tmp_path / "none").exists()


@pytest.mark.slow
def test_the_budget_probe_measures_the_preset_step_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNLAB_DATA", str(write_tiny_corpora(tmp_path / "data")))
    budget = _budget_script()
    rate = budget.probe_tokens_per_s("fra-eng", tmp_path / "probe", 0, 10, {})
    assert rate > 0 and not (tmp_path / "probe").exists()


CORPUS_TESTS = [f"{test}[{source}]" for test in ("test_fra_eng_benchmark_quick_scores_both_models_and_a_short_budget_run",
                                                  "test_multi30k_benchmark_quick_writes_its_results")
                for source in SOURCES]


def _outcomes(tmp_path: Path, tests: list[str], *, ci: bool) -> dict[str, tuple[str, str]]:
    """Run ``tests`` of this file in a fresh pytest with the corpora hidden: {test id: (outcome, message)}."""
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    env["ATTNLAB_SHARED"] = "/nonexistent"
    if ci:
        env["CI"] = "true"
    report = tmp_path / f"ci-{ci}.xml"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
                    *(f"{__file__}::{test}" for test in tests)], env=env, cwd=ROOT, capture_output=True, timeout=1800)
    outcomes = {}
    for case in ElementTree.parse(report).iter("testcase"):
        verdicts = [(child.tag, child.get("message", "")) for child in case if child.tag in ("skipped", "failure", "error")]
        outcomes[case.get("name")] = verdicts[0] if verdicts else ("passed", "")
    return outcomes


@pytest.mark.slow
def test_without_the_shared_corpora_these_tests_pass_on_generated_data_and_skip_or_in_ci_fail(tmp_path):
    here = _outcomes(tmp_path, CORPUS_TESTS, ci=False)
    assert sorted(here) == sorted(CORPUS_TESTS)
    for name, (outcome, message) in here.items():
        if name.endswith("[generated]"):
            assert outcome == "passed", (name, message)
        else:  # a one-line reason that names where the corpus was looked for
            assert outcome == "skipped" and "/nonexistent/data" in message and "\n" not in message, (name, message)
    shared = [name for name in CORPUS_TESTS if name.endswith("[shared]")]
    in_ci = _outcomes(tmp_path, shared, ci=True)
    assert sorted(in_ci) == sorted(shared)
    for name, (outcome, message) in in_ci.items():
        assert outcome == "failure" and "CI=true" in message and "/nonexistent/data" in message, (name, message)

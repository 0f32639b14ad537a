"""Claims about the one configuration room: RunConfig.for_task is the preset plus overrides, for every task,
and the CLI's flags and TOML keys are the config fields (a few keep shorter names)."""

import inspect
from dataclasses import fields, replace

import pytest

from attnlab.cli.train_cmds import FLAG_ALIASES, build_run_config, setting_fields, train
from attnlab.core.model import TransformerConfig
from attnlab.data import SYNTHETIC_TASKS, TASKS
from attnlab.training import presets
from attnlab.training.config import RunConfig, TrainConfig, task_option_names


def _family(task: str) -> str:  # written out here, not taken from presets.task_family
    return "synthetic" if task in SYNTHETIC_TASKS else "toy" if task == "toy" else "corpus"


def _expected(task: str) -> RunConfig:
    """What the CLI built before RunConfig.for_task existed: the preset tables, vocabulary placeholders of 1."""
    model = {**presets._MODEL[_family(task)], **presets._TASK_MODEL.get(task, {})}
    return RunConfig(model=TransformerConfig(src_vocab_size=1, tgt_vocab_size=1, **model),
                     train=TrainConfig(**presets._TRAIN[_family(task)], **presets._TASK_TRAIN.get(task, {})),
                     task=task, task_options={},
                     architecture="transformer")


@pytest.mark.parametrize("task", TASKS)
def test_for_task_is_the_preset_of_every_task(task):
    assert RunConfig.for_task(task) == _expected(task)
    assert build_run_config({"task": task}) == _expected(task)


def test_the_presets_differ_where_the_families_do():
    """A guard on the reference above: a preset that lost its values would make every task look alike."""
    assert RunConfig.for_task("fra-eng").train.max_tokens == 4096 and RunConfig.for_task("fra-eng").model.dropout == 0.0
    assert RunConfig.for_task("multi30k").model.dropout == 0.1
    assert RunConfig.for_task("reverse").train.batch_size == 64 and RunConfig.for_task("reverse").model.d_model == 64
    assert RunConfig.for_task("toy").model.tie_embeddings and not RunConfig.for_task("copy").model.tie_embeddings


def test_overrides_reach_the_model_the_training_the_task_and_the_architecture():
    config = RunConfig.for_task("toy", d_model=32, num_heads=2, steps=40, lr=1e-2, num_pairs=200,
                                architecture="rnn-attention")
    expected = _expected("toy")
    assert config == RunConfig(model=replace(expected.model, d_model=32, num_heads=2),
                               train=replace(expected.train, steps=40, lr=1e-2), task="toy",
                               task_options={"num_pairs": 200}, architecture="rnn-attention")


def test_a_sentence_count_replaces_a_token_budget_unless_both_are_given():
    assert RunConfig.for_task("fra-eng", batch_size=32).train == replace(
        _expected("fra-eng").train, batch_size=32, max_tokens=None)
    both = RunConfig.for_task("fra-eng", batch_size=32, max_tokens=1000).train
    assert (both.batch_size, both.max_tokens) == (32, 1000)
    assert RunConfig.for_task("fra-eng", max_tokens=1000).train.max_tokens == 1000


def test_max_len_is_the_models_and_seed_is_the_trainings():
    config = RunConfig.for_task("fra-eng", max_len=64, seed=3)
    assert config.model.max_len == 64 and config.train.seed == 3 and config.task_options == {}


@pytest.mark.parametrize(
    "task, overrides, message",
    [
        ("reverse", {"learning_rate": 0.1}, r"unknown settings \['learning_rate'\] for task 'reverse'"),
        ("reverse", {"num_pairs": 100}, r"unknown settings \['num_pairs'\]"),  # the toy corpus's option
        ("toy", {"train_lengths": (1, 4)}, r"unknown settings \['train_lengths'\]"),
        ("copy", {"src_vocab_size": 7}, r"unknown settings \['src_vocab_size'\]"),  # the data decides it
        ("juggle", {}, "task: 'juggle' is neither one of"),
        ("copy", {"architecture": "lstm"}, "unknown model 'lstm'"),
        ("copy", {"schedule": "linear"}, "unknown schedule 'linear'"),
        ("copy", {"d_model": 30, "num_heads": 4}, "must be divisible by num_heads"),
    ],
)
def test_unknown_or_bad_settings_are_a_value_error_naming_them(task, overrides, message):
    with pytest.raises(ValueError, match=message):
        RunConfig.for_task(task, **overrides)


def test_cli_flags_are_config_fields_with_a_few_short_names():
    assert build_run_config({"task": "reverse", "heads": 2, "encoder_layers": 1, "decoder_layers": 3, "d_model": 32,
                             "train_lengths": "1-4", "model": "rnn-attention"}) == RunConfig.for_task(
        "reverse", num_heads=2, num_encoder_layers=1, num_decoder_layers=3, d_model=32, train_lengths=(1, 4),
        architecture="rnn-attention")
    assert build_run_config({"task": "multi30k", "src": "de", "tgt": "en"}).task_options == {"src_lang": "de",
                                                                                             "tgt_lang": "en"}
    assert build_run_config({}) == _expected("reverse")  # no task: reverse


def test_every_setting_flag_of_train_names_a_field():
    flags = setting_fields()
    not_settings = {"ctx", "out", "config", "resume", "force", "nproc", "quiet"}
    for name in inspect.signature(train).parameters:
        if name not in not_settings:
            assert name in flags, f"--{name.replace('_', '-')} sets no field"
    model_names = {f.name for f in fields(TransformerConfig)}
    train_names = {f.name for f in fields(TrainConfig)}
    for flag, field_name in flags.items():
        assert flag == field_name or FLAG_ALIASES[flag] == field_name
        assert field_name in model_names | train_names | set(task_option_names()) | {"task", "architecture"}
    assert "num_heads" not in flags and "heads" in flags  # one name per setting


def test_task_options_are_the_loaders_keyword_options():
    from attnlab.data import load_toy

    assert task_option_names("toy") == tuple(name for name, p in inspect.signature(load_toy).parameters.items()
                                             if p.kind is inspect.Parameter.KEYWORD_ONLY and name != "seed")
    assert "train_lengths" in task_option_names("sort") and "src_lang" in task_option_names("fra-eng")


def test_run_config_round_trips_through_its_dict_and_rejects_unknown_keys():
    config = RunConfig.for_task("toy", steps=7, num_pairs=50)
    assert RunConfig.from_dict(config.to_dict()) == config
    data = config.to_dict()
    data["train"]["learning_rate"] = 0.1
    with pytest.raises(ValueError, match=r"unknown training config keys \['learning_rate'\]"):
        RunConfig.from_dict(data)
    with pytest.raises(ValueError, match="lacks the key 'train'"):
        RunConfig.from_dict({"model": config.model.to_dict(), "task": "toy"})


def test_the_lecture_core_imports_nothing_from_training():
    import subprocess
    import sys

    code = ("import sys, attnlab.core.model, attnlab.core.rnn, attnlab.core.decoding; "
            "print(sorted(m for m in sys.modules if m.startswith('attnlab.training')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

"""A run's configuration in one place: how to train (:class:`TrainConfig`) and what to train (:class:`RunConfig`).

A run is a model (:class:`~attnlab.core.model.TransformerConfig`), a way to train it
(:class:`TrainConfig`), a task with its options, and an architecture. :meth:`RunConfig.for_task`
is the one way to assemble it: the task's preset (:mod:`attnlab.training.presets`) with
overrides, each named by its field::

    >>> config = RunConfig.for_task("reverse", d_model=32, steps=300, num_train=2000)
    >>> config.model.d_model, config.train.steps, config.task_options
    (32, 300, {'num_train': 2000})

``RUN/config.json`` is :meth:`RunConfig.to_dict`; :meth:`RunConfig.from_dict` reads it back and
rejects keys it does not know.
"""

from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from .. import __version__
from .._strict import strict_from_dict
from ..core.model import TransformerConfig
from ..data import TASKS, TaskData, load_corpus, load_synthetic, load_task, load_toy
from .averaging import AVERAGES
from .budget import BudgetPlan
from .hardware import PRECISIONS
from .presets import default_model, default_train, task_family
from .schedule import SCHEDULES

__all__ = ["TrainConfig", "RunConfig", "ARCHITECTURES", "DATA_FIELDS", "SHAPE_FIELDS", "model_fields", "train_fields",
           "task_option_names", "check_task"]

ARCHITECTURES = ("transformer", "rnn-attention")
DATA_FIELDS = ("src_vocab_size", "tgt_vocab_size", "pad_id")  # model fields the data decides, not a setting
# the model's shape: what TrainConfig.small_budget_model may set; setting any of them turns it off
SHAPE_FIELDS = ("d_model", "d_ff", "num_heads", "num_encoder_layers", "num_decoder_layers")


@dataclass
class TrainConfig:
    """How to train: steps, batches, optimiser, schedule, evaluation and logging.

    With ``max_minutes`` the trainer times its first steps and fits the warmup to the steps the
    budget buys (:mod:`attnlab.training.budget`); without it the schedule is exactly the configured one.
    With ``min_batch_tokens`` as well, a budget that buys fewer than half the configured steps halves
    ``max_tokens`` (down to ``min_batch_tokens``) for more, smaller batches. With
    ``small_budget_model`` (shape settings such as ``{"d_model": 192, "d_ff": 768}``), a budget that
    buys fewer than a quarter of them first trains that smaller model instead, timed again, and the
    batch is then fitted to it. With ``small_budget_schedule`` (``"constant"``), such a small budget
    (under a quarter) runs that schedule after its warmup instead of the configured one: the peak
    held until the cool-down.

    ``average="ema"`` evaluates with, and saves as the run's weights, an exponential moving
    average of the weights (decay ``ema_decay``; :mod:`attnlab.training.averaging`). It is off in
    every preset: on fra-eng within a 15- or 30-minute CPU budget, whose cool-down already settles
    the weights, the average scored below the weights it averages (docs/translation.md).

    ``report_mfu`` logs model FLOP utilisation (``mfu`` in metrics.jsonl and the summary) against
    a matmul rate measured at the start (~0.2 s); a time budget turns it on as well.
    """

    steps: int = 2000
    batch_size: int | None = 64  # sentences per batch (synthetic tasks)
    max_tokens: int | None = None  # padded tokens per batch (corpora); overrides batch_size
    min_batch_tokens: int | None = None  # with max_minutes: a budget that buys few steps may halve the batch down to this
    small_budget_model: dict | None = None  # with max_minutes: the model shape to train when the budget buys few steps
    small_budget_schedule: str | None = None  # with max_minutes: the schedule after a small budget's warmup
    lr: float = 1e-3  # peak learning rate
    schedule: str = "cosine"
    warmup: int = 200
    label_smoothing: float = 0.0
    grad_clip: float = 1.0
    weight_decay: float = 0.01
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"  # fp32, bf16 (autocast), or auto: bf16 where the hardware runs it natively
    cooldown: float = 0.0  # final fraction of the budget over which the learning rate falls linearly to 0
    eval_every: int = 500
    eval_examples: int = 300  # dev sentences decoded at each evaluation
    log_every: int = 25
    checkpoint_every: int = 500
    max_minutes: float | None = None  # stop early when the wall-clock budget is spent
    compile: bool = False  # torch.compile the training forward/backward (measured: see docs/scaling.md)
    average: str = "none"  # none, or ema: evaluate and save an exponential moving average of the weights
    ema_decay: float = 0.995  # β of the average: it spans about 1 / (1 - β) steps
    report_mfu: bool = False  # log model FLOP utilisation (always on with max_minutes)

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        for name in ("steps", "eval_every", "log_every", "checkpoint_every", "eval_examples"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.batch_size is None and self.max_tokens is None:
            raise ValueError("give batch_size or max_tokens")
        for name in ("batch_size", "max_tokens", "min_batch_tokens"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.small_budget_model is not None:
            shape = self.small_budget_model
            if not isinstance(shape, dict) or not shape or any(
                    name not in SHAPE_FIELDS or not isinstance(value, int) or isinstance(value, bool) or value < 1
                    for name, value in shape.items()):
                raise ValueError(f"small_budget_model must map some of {', '.join(SHAPE_FIELDS)} to positive "
                                 f"integers, got {shape!r}")
        if self.small_budget_schedule is not None and self.small_budget_schedule not in SCHEDULES:
            raise ValueError(f"unknown small_budget_schedule {self.small_budget_schedule!r}; allowed: "
                             f"{', '.join(SCHEDULES)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; allowed: {', '.join(SCHEDULES)}")
        if not isinstance(self.warmup, int) or self.warmup < 0:
            raise ValueError(f"warmup must be an integer >= 0, got {self.warmup!r}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}")
        if not (isinstance(self.cooldown, (int, float)) and 0.0 <= self.cooldown < 1.0):
            raise ValueError(f"cooldown must be a fraction in [0, 1), got {self.cooldown!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; allowed: {', '.join(PRECISIONS)}")
        if self.device not in ("auto", "cpu", "cuda", "mps") and not self.device.startswith("cuda:"):
            raise ValueError(f"unknown device {self.device!r}; allowed: auto, cpu, cuda, cuda:N, mps")
        if not isinstance(self.compile, bool):
            raise ValueError(f"compile must be true or false, got {self.compile!r}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ValueError(f"max_minutes must be > 0, got {self.max_minutes!r}")
        if self.average not in AVERAGES:
            raise ValueError(f"unknown average {self.average!r}; allowed: {', '.join(AVERAGES)}")
        if not (isinstance(self.ema_decay, (int, float)) and 0.0 < self.ema_decay < 1.0):
            raise ValueError(f"ema_decay must be in (0, 1), got {self.ema_decay!r}")
        if not isinstance(self.report_mfu, bool):
            raise ValueError(f"report_mfu must be true or false, got {self.report_mfu!r}")

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        return strict_from_dict(cls, data, "training")


def model_fields() -> tuple[str, ...]:
    """The :class:`TransformerConfig` fields a run may set (all but :data:`DATA_FIELDS`)."""
    return tuple(f.name for f in fields(TransformerConfig) if f.name not in DATA_FIELDS)


def train_fields() -> tuple[str, ...]:
    """The :class:`TrainConfig` fields."""
    return tuple(f.name for f in fields(TrainConfig))


def task_option_names(task: str | None = None) -> tuple[str, ...]:
    """The options ``task``'s loader accepts (``seed`` is the training seed); ``None``: any task's.

    ``max_len`` is also a model field; as an override it is the model's.

        >>> task_option_names("toy")
        ('num_pairs', 'tokenizer', 'vocab_size', 'shared_vocab')
    """
    loaders = {"synthetic": load_synthetic, "toy": load_toy, "corpus": load_corpus}
    chosen = [loaders[task_family(task)]] if task is not None else list(loaders.values())
    names: list[str] = []
    for loader in chosen:
        for name, parameter in inspect.signature(loader).parameters.items():
            if parameter.kind is inspect.Parameter.KEYWORD_ONLY and name not in ("seed", "codecs", *names):
                names.append(name)
    return tuple(names)


def check_task(task: str) -> None:
    """``ValueError`` unless ``task`` is a known task or an existing corpus file or directory."""
    if task not in TASKS and not Path(task).exists():
        raise ValueError(f"task: {task!r} is neither one of {', '.join(TASKS)} nor an existing file or directory")


@dataclass
class RunConfig:
    """What to train and how: model, training, task (with its options) and architecture.

    ``plan`` is not a setting: it is what a time budget was found to buy (:class:`BudgetPlan`),
    written into ``config.json`` by the trainer once it has calibrated, so a resumed run keeps it.
    """

    model: TransformerConfig
    train: TrainConfig
    task: str
    task_options: dict = field(default_factory=dict)
    architecture: str = "transformer"
    plan: BudgetPlan | None = None

    def __post_init__(self):
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"unknown model {self.architecture!r}; allowed: {', '.join(ARCHITECTURES)}")
        if self.train.small_budget_model:  # a shape that cannot be built fails here, not after the calibration
            try:
                replace(self.model, **self.train.small_budget_model)
            except ValueError as error:
                raise ValueError(f"small_budget_model {self.train.small_budget_model}: {error}") from None

    @classmethod
    def for_task(cls, task: str, **overrides) -> "RunConfig":
        """The preset for ``task`` with ``overrides``: the one place a run's configuration is assembled.

        Each override is named by its field: a :class:`TransformerConfig` field (``d_model``), a
        :class:`TrainConfig` field (``steps``), an option of the task's loader (``num_train``; see
        :func:`task_option_names`), or ``architecture``. An explicit ``batch_size`` without
        ``max_tokens`` replaces a preset's token budget, and an explicit shape (``d_model``, ``d_ff``,
        heads or layers) turns off the preset's ``small_budget_model``. Vocabulary sizes are placeholders until the
        data is loaded (:meth:`with_vocab`). A name that is none of these is a ``ValueError``.

            >>> RunConfig.for_task("fra-eng", batch_size=32).train.max_tokens is None
            True
        """
        task = str(task)
        check_task(task)
        architecture = overrides.pop("architecture", "transformer")
        model_names, train_names, option_names = set(model_fields()), set(train_fields()), task_option_names(task)
        unknown = sorted(name for name in overrides
                         if name not in model_names and name not in train_names and name not in option_names)
        if unknown:
            raise ValueError(
                f"unknown settings {unknown} for task {task!r}; allowed: the model's {', '.join(model_fields())}; "
                f"training's {', '.join(train_fields())}; the task's {', '.join(option_names)}; architecture")
        model = {**default_model(task), **{k: v for k, v in overrides.items() if k in model_names}}
        train = {**default_train(task), **{k: v for k, v in overrides.items() if k in train_names}}
        if "batch_size" in overrides and "max_tokens" not in overrides:
            train["max_tokens"] = None  # an explicit sentence count replaces the preset's token budget
        if "small_budget_model" not in overrides and any(name in SHAPE_FIELDS for name in overrides):
            train["small_budget_model"] = None  # a shape asked for is the shape trained, whatever the budget
        options = {k: v for k, v in overrides.items() if k not in model_names and k not in train_names}
        return cls(model=TransformerConfig(src_vocab_size=1, tgt_vocab_size=1, **model), train=TrainConfig(**train),
                   task=task, task_options=options, architecture=architecture)

    def load_data(self) -> TaskData:
        """The run's task, built as training builds it (the training seed picks the split)."""
        return load_task(self.task, seed=self.train.seed, **self.task_options)

    def with_vocab(self, src_vocab_size: int, tgt_vocab_size: int) -> "RunConfig":
        model = replace(self.model, src_vocab_size=src_vocab_size, tgt_vocab_size=tgt_vocab_size)
        if model.share_embeddings and src_vocab_size != tgt_vocab_size:
            model = replace(model, share_embeddings=False)
        return replace(self, model=model)

    def to_dict(self) -> dict:
        return {"architecture": self.architecture, "model": self.model.to_dict(), "train": asdict(self.train),
                "task": self.task, "task_options": self.task_options,
                "plan": None if self.plan is None else self.plan.to_dict(), "attnlab_version": __version__}

    @classmethod
    def from_dict(cls, data: dict) -> "RunConfig":
        try:
            return cls(model=TransformerConfig.from_dict(data["model"]), train=TrainConfig.from_dict(data["train"]),
                       task=data["task"], task_options=data.get("task_options", {}),
                       architecture=data.get("architecture", "transformer"),
                       plan=BudgetPlan.from_dict(data["plan"]) if data.get("plan") is not None else None)
        except KeyError as missing:
            raise ValueError(f"run config lacks the key {missing}") from None

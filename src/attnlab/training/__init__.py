"""Turning the core into trained runs: configuration, the trainer, checkpoints, evaluation.

* :mod:`~attnlab.training.config` — ``TrainConfig`` and ``RunConfig`` (``RunConfig.for_task`` = preset + overrides)
* :mod:`~attnlab.training.presets` — sensible defaults per kind of task
* :mod:`~attnlab.training.trainer` — the training step, the batch stream, the metrics log and the loop
* :mod:`~attnlab.training.schedule` — learning-rate schedules and the step / time budget
* :mod:`~attnlab.training.budget` — the plan a time budget buys (calibration, warmup), model FLOP utilisation
* :mod:`~attnlab.training.averaging` — an exponential moving average of the weights
* :mod:`~attnlab.training.hardware` — device, precision (bf16 autocast) and memory handling
* :mod:`~attnlab.training.checkpoint` — safetensors checkpoints that resume bit for bit
* :mod:`~attnlab.training.runs` — a run directory: write its config, load a trained model back
* :mod:`~attnlab.training.distributed` — data-parallel training under ``torchrun``
* :mod:`~attnlab.training.evaluation`, :mod:`~attnlab.training.metrics` — held-out scores (sacreBLEU, chrF)
* :mod:`~attnlab.training.progress` — what a running trainer prints
"""

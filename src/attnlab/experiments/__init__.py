"""The lecture's "Try This" as reproducible studies with honest statistics.

    >>> from attnlab.experiments import blocks_study, pe_study, architectures_study
    >>> results = pe_study("out/pe", quick=True, encodings=["sinusoidal", "none"], tasks=["reverse"])

Chapters: :mod:`~attnlab.experiments.sweep` (parallel, resumable trainings),
:mod:`~attnlab.experiments.probes` (extrapolation, permutation, alignment),
:mod:`~attnlab.experiments.stats` (mean ± 95% t-interval), :mod:`~attnlab.experiments.studies`
(which runs each study trains), :mod:`~attnlab.experiments.report` (report.md and figures),
:mod:`~attnlab.experiments.timing` (time per sequence vs length).
"""

from .studies import FULL, QUICK, architectures_study, blocks_study, pe_study, settings_for
from .stats import format_interval, summarize
from .sweep import Job, SweepOutcome, run_sweep

__all__ = ["blocks_study", "pe_study", "architectures_study", "settings_for", "QUICK", "FULL",
           "summarize", "format_interval", "Job", "SweepOutcome", "run_sweep"]

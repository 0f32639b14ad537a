"""The training progress bar: step, loss, learning rate, tokens/s and ETA (rich)."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class TrainingProgress:
    def __init__(self, *, total: int, start: int = 0, enabled: bool = True):
        self.enabled = enabled
        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"), TextColumn("lr {task.fields[lr]}"),
            TextColumn("{task.fields[speed]} tok/s"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=self.console, disable=not enabled, transient=False,
        )
        self.task = self.progress.add_task("train", total=total, completed=start, loss="-", lr="-", speed="-")

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def update(self, step: int, *, loss: float, lr: float, tokens_per_s: float) -> None:
        self.progress.update(self.task, completed=step, loss=f"{loss:.3f}", lr=f"{lr:.2e}", speed=f"{tokens_per_s:,.0f}")

    def note(self, step: int, summary: dict, metric: str) -> None:
        if not self.enabled:
            return
        value = summary.get(metric)
        shown = f"{value:.3f}" if isinstance(value, float) else value
        self.progress.console.print(f"  step {step}: dev loss {summary['loss']:.3f}, {metric} {shown}")

"""What a running trainer prints: a rich progress bar on a terminal, plain lines everywhere else.

Under ``nohup``, in a batch job or with stderr piped to a file, a live bar prints nothing useful,
so there the trainer writes one plain line every :data:`PLAIN_INTERVAL_S` seconds of wall time
(``ATTNLAB_PROGRESS_INTERVAL`` overrides it) and one at each evaluation::

    train step 400/1600, loss 3.412, lr 1.20e-03, 4,210 tok/s, elapsed 2:03, ETA 6:10, dev loss 3.1, dev bleu 12.3 (step 400)

    >>> with TrainingProgress(total=1600) as bar:
    ...     bar.update(25, loss=5.1, lr=2.5e-4, tokens_per_s=4000.0)
"""

from __future__ import annotations

import os
import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

__all__ = ["TrainingProgress", "PLAIN_INTERVAL_S", "plain_interval_s", "is_interactive", "format_duration"]

PLAIN_INTERVAL_S = 30.0  # seconds of wall time between two plain progress lines


def plain_interval_s() -> float:
    """:data:`PLAIN_INTERVAL_S`, or the seconds in ``ATTNLAB_PROGRESS_INTERVAL`` (a number >= 0) when set."""
    value = os.environ.get("ATTNLAB_PROGRESS_INTERVAL", "").strip()
    try:
        return max(0.0, float(value)) if value else PLAIN_INTERVAL_S
    except ValueError:
        return PLAIN_INTERVAL_S


def is_interactive(console: Console | None = None) -> bool:
    """Whether stderr shows a live display (a terminal or a notebook), as rich decides it."""
    console = console or Console(stderr=True)
    return console.is_terminal or console.is_jupyter


def format_duration(seconds: float) -> str:
    """125 → '2:05'; 3725 → '1:02:05'."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class TrainingProgress:
    """Step, loss, learning rate, tokens/s, elapsed time and ETA, live (rich) or as plain lines.

    ``plain`` (default: stderr is neither a terminal nor a notebook) picks plain lines.
    ``elapsed_before`` is the training time of earlier sessions of a resumed run;
    ``time_budget_s`` (``max_minutes``) caps the ETA when the clock runs out before the steps.
    """

    def __init__(self, *, total: int, start: int = 0, enabled: bool = True, label: str = "train",
                 plain: bool | None = None, interval_s: float | None = None, elapsed_before: float = 0.0,
                 time_budget_s: float | None = None, clock=time.monotonic):
        self.console = Console(stderr=True)
        self.enabled = enabled
        self.plain = enabled and (not is_interactive(self.console) if plain is None else plain)
        self.total, self.start, self.label = total, start, label
        self.interval_s = plain_interval_s() if interval_s is None else interval_s
        self.elapsed_before, self.time_budget_s, self.clock = elapsed_before, time_budget_s, clock
        self.started = clock()
        self.last_line: float | None = None
        self.printed_step: int | None = None  # the step of the last plain line
        self.step, self.latest, self.dev = start, None, None  # latest: (loss, lr, tokens/s); dev: (step, text)
        self.planned: int | None = None  # the steps a time budget's plan expects, shown as "step 40/≈545"
        self.progress = Progress(
            TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"), TextColumn("lr {task.fields[lr]}"),
            TextColumn("{task.fields[speed]} tok/s"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=self.console, disable=not enabled or self.plain, transient=False,
        )
        self.task = self.progress.add_task(label, total=total, completed=start, loss="-", lr="-", speed="-")

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def update(self, step: int, *, loss: float, lr: float, tokens_per_s: float) -> None:
        """A logged step: its loss, learning rate and throughput."""
        self.step, self.latest = step, (loss, lr, tokens_per_s)
        if self.plain:
            self.tick(step)
        else:
            self.progress.update(self.task, completed=step, loss=f"{loss:.3f}", lr=f"{lr:.2e}",
                                 speed=f"{tokens_per_s:,.0f}")

    def tick(self, step: int) -> None:
        """Any step: in plain mode, a line when the interval has passed since the last one (and at the end)."""
        self.step = step
        if not self.plain or self.latest is None:
            return
        now = self.clock()
        last = step == self.total and self.printed_step != step  # the final step: one line, not two
        if self.last_line is None or now - self.last_line >= self.interval_s or last:
            self._print_line(now)

    def note(self, step: int, summary: dict, metric: str) -> None:
        """A dev evaluation at ``step``: always shown."""
        if not self.enabled:
            return
        value = summary.get(metric)
        shown = f"{value:.3f}" if isinstance(value, float) else value
        if self.plain:
            self.step = step
            self.dev = (step, f"dev loss {summary['loss']:.3f}, dev {metric} {shown} (step {step})")
            self._print_line(self.clock())
        else:
            self.progress.console.print(f"  step {step}: dev loss {summary['loss']:.3f}, {metric} {shown}")

    def set_plan(self, steps: int) -> None:
        """Show the steps a time budget is planned to buy instead of the configured ones (fewer only).

        The run still stops at its clock, not at this count (a machine that speeds up makes more
        steps than planned), so only the shown total and the live bar change; the ETA stays capped
        by the budget's clock.
        """
        if steps >= self.total:
            return
        self.planned = steps
        self.progress.update(self.task, total=steps)

    def message(self, text: str) -> None:
        """A line of its own (the plan a time budget bought): above the live bar, or plain on stderr."""
        if not self.enabled:
            return
        if self.plain:
            print(text, file=sys.stderr, flush=True)
        else:
            self.progress.console.print(text)

    def _print_line(self, now: float) -> None:
        self.last_line, self.printed_step = now, self.step
        session_s = now - self.started
        parts = [f"{self.label} step {self.step}/{self.total if self.planned is None else f'≈{self.planned:,}'}"]
        if self.latest is not None:
            loss, lr, tokens_per_s = self.latest
            parts += [f"loss {loss:.3f}", f"lr {lr:.2e}", f"{tokens_per_s:,.0f} tok/s"]
        parts.append(f"elapsed {format_duration(self.elapsed_before + session_s)}")
        eta = self._eta_s(session_s)
        parts.append(f"ETA {format_duration(eta)}" if eta is not None else "ETA -")
        if self.dev is not None:
            parts.append(self.dev[1])
        print(", ".join(parts), file=sys.stderr, flush=True)

    def _eta_s(self, session_s: float) -> float | None:
        done = self.step - self.start
        if done <= 0 or session_s <= 0:
            return None
        eta = (self.total - self.step) * session_s / done
        if self.time_budget_s is not None:  # a time budget stops the run when its clock runs out
            eta = min(eta, max(0.0, self.time_budget_s - self.elapsed_before - session_s))
        return eta

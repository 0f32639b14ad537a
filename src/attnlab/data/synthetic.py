"""Synthetic tasks: each isolates one thing a sequence model must be able to do.

| task      | source            | target       | what it needs                                   |
|-----------|-------------------|--------------|-------------------------------------------------|
| `copy`    | `3 1 4 1`         | `3 1 4 1`    | attend to the same position (a diagonal)        |
| `reverse` | `3 1 4 1`         | `1 4 1 3`    | attend to the mirrored position (anti-diagonal) |
| `sort`    | `3 1 4 1`         | `1 1 3 4`    | attend by content, not by position              |
| `add`     | `1 2 3 + 4 5`     | `1 6 8`      | carry: attend to two aligned digits at once     |

Symbols are the strings "0", "1", … up to `vocab` content symbols (for `add`, digits 0–9 and "+").
Lengths are inclusive ranges; the test split may use longer lengths than training to study length
extrapolation (e.g. positional encodings). Everything is deterministic from `seed`.

    >>> data = load_synthetic("reverse", seed=0, num_train=100, num_test=10)
    >>> data.train[0].src_text, data.train[0].tgt_text
"""

from __future__ import annotations

import random
from typing import Callable

from attnlab.data.codec import Codec
from attnlab.data.example import Example, TaskData

SYNTHETIC_TASKS = ("copy", "reverse", "sort", "add")


def parse_length_range(text: str) -> tuple[int, int]:
    """"1-12" → (1, 12); a single number "5" → (5, 5). ValueError for "12-1", "0-3", "abc"."""
    parts = str(text).strip().split("-")
    try:
        low, high = (int(parts[0]), int(parts[-1])) if len(parts) in (1, 2) else (None, None)
    except ValueError:
        low = high = None
    if low is None or low < 1 or high < low:
        raise ValueError(f"length range: {text!r} is not LOW-HIGH with 1 <= LOW <= HIGH (e.g. '1-12')")
    return low, high


def _check_lengths(name: str, lengths) -> tuple[int, int]:
    if isinstance(lengths, str):
        return parse_length_range(lengths)
    try:
        low, high = (int(x) for x in lengths)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected (low, high) or 'LOW-HIGH', got {lengths!r}") from None
    if low < 1 or high < low:
        raise ValueError(f"{name}: expected 1 <= low <= high, got {lengths!r}")
    return low, high


# Each generator draws one (source symbols, target symbols) pair of the given "length".
def _sequence(rng: random.Random, length: int, vocab: int) -> list[str]:
    return [str(rng.randrange(vocab)) for _ in range(length)]


def _copy(rng, length, vocab):
    seq = _sequence(rng, length, vocab)
    return seq, list(seq)


def _reverse(rng, length, vocab):
    seq = _sequence(rng, length, vocab)
    return seq, seq[::-1]


def _sort(rng, length, vocab):
    seq = _sequence(rng, length, vocab)
    return seq, sorted(seq, key=int)


def _add(rng, num_digits, vocab):
    # Each operand has between 1 and `num_digits` digits (no leading zeros), so short and long
    # operands mix as they do in real sums.
    def operand() -> int:
        digits = rng.randint(1, num_digits)
        return rng.randrange(10 ** (digits - 1) if digits > 1 else 0, 10**digits)

    a, b = operand(), operand()
    return list(str(a)) + ["+"] + list(str(b)), list(str(a + b))


_GENERATORS: dict[str, Callable] = {"copy": _copy, "reverse": _reverse, "sort": _sort, "add": _add}


def _draw(task, rng, lengths, vocab, count, exclude: set[str]) -> list[tuple[list[str], list[str]]]:
    """`count` pairs with lengths drawn uniformly from `lengths`, avoiding sources in `exclude`.

    When the space of sequences is too small to avoid them (e.g. length 1), duplicates are allowed
    after a bounded number of retries rather than looping forever.
    """
    pairs = []
    for _ in range(count):
        for _attempt in range(20):
            src, tgt = _GENERATORS[task](rng, rng.randint(*lengths), vocab)
            if " ".join(src) not in exclude:
                break
        pairs.append((src, tgt))
    return pairs


def load_synthetic(
    task: str,
    *,
    seed: int = 0,
    train_lengths=(1, 12),
    test_lengths=(1, 12),
    num_train: int = 20000,
    num_test: int = 500,
    vocab: int = 10,
) -> TaskData:
    """Generate a synthetic task. Train and dev use `train_lengths`; test uses `test_lengths`.

    Dev and test sources avoid training sources where the space of sequences allows it.
    """
    if task not in _GENERATORS:
        raise ValueError(f"task: {task!r} is not one of {', '.join(SYNTHETIC_TASKS)}")
    train_lengths = _check_lengths("train_lengths", train_lengths)
    test_lengths = _check_lengths("test_lengths", test_lengths)
    for name, value, low in (("num_train", num_train, 1), ("num_test", num_test, 1), ("vocab", vocab, 2)):
        if not isinstance(value, int) or value < low:
            raise ValueError(f"{name}: must be an integer >= {low}, got {value!r}")
    if task == "add":
        vocab = 10  # digits in, digits out
        symbols = [str(d) for d in range(10)] + ["+"]
    else:
        symbols = [str(s) for s in range(vocab)]

    rng = random.Random(f"{task}-{seed}")  # string seeds are stable across Python runs
    train = _draw(task, rng, train_lengths, vocab, num_train, exclude=set())
    seen = {" ".join(src) for src, _ in train}
    dev = _draw(task, rng, train_lengths, vocab, num_test, exclude=seen)
    test = _draw(task, rng, test_lengths, vocab, num_test, exclude=seen)

    codec = Codec.from_symbols(symbols)

    def examples(pairs) -> list[Example]:
        out = []
        for src, tgt in pairs:
            src_text, tgt_text = " ".join(src), " ".join(tgt)
            out.append(Example(codec.encode(src_text), codec.encode(tgt_text), src_text, tgt_text, [tgt_text]))
        return out

    info = {
        "task": task,
        "seed": seed,
        "train_lengths": list(train_lengths),
        "test_lengths": list(test_lengths),
        "vocab": vocab,
        "sizes": {"train": num_train, "dev": num_test, "test": num_test},
        "test_sources_seen_in_train": sum(" ".join(src) in seen for src, _ in test),
    }
    return TaskData(task, "synthetic", "exact_match", codec, codec,
                    examples(train), examples(dev), examples(test), info)

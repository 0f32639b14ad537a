"""attnlab's data layer: tasks, corpora, tokenizers and batches.

    >>> from attnlab.data import load_task, make_batches
    >>> data = load_task("toy")                       # TaskData: codecs + train/dev/test Examples
    >>> batches = make_batches(data.train, max_tokens=2048, shuffle=True, seed=0)

Chapters: `codec` (text ⇄ ids), `example` (Example, TaskData), `synthetic` (copy/reverse/sort/add),
`toy` (a built-in English→French grammar with gold alignments), `corpus` (parallel corpora on
disk), `download` (fetching public corpora), `batching` (padded, length-bucketed batches),
`tasks` (`load_task`, the entry point).
"""

from attnlab.data.batching import Batch, collate, make_batches, source_ids
from attnlab.data.codec import BOS_ID, EOS_ID, PAD_ID, SPECIAL_TOKENS, UNK_ID, Codec, text_normalizer
from attnlab.data.corpus import find_corpus, load_corpus
from attnlab.data.download import CORPORA, DownloadError, default_data_root, download_corpus
from attnlab.data.example import Example, TaskData
from attnlab.data.synthetic import SYNTHETIC_TASKS, load_synthetic, parse_length_range
from attnlab.data.tasks import TASKS, load_task
from attnlab.data.toy import TOY_EXAMPLES, load_toy

__all__ = [
    "PAD_ID", "BOS_ID", "EOS_ID", "UNK_ID", "SPECIAL_TOKENS",
    "Codec", "text_normalizer",
    "Example", "TaskData",
    "Batch", "collate", "make_batches", "source_ids",
    "SYNTHETIC_TASKS", "TASKS", "load_synthetic", "parse_length_range", "load_task",
    "TOY_EXAMPLES", "load_toy",
    "load_corpus", "find_corpus",
    "CORPORA", "DownloadError", "default_data_root", "download_corpus",
]

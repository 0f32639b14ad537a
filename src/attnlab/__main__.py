"""``python -m attnlab`` (used by torchrun): the same as the ``attnlab`` command."""

from attnlab.cli import run

run()

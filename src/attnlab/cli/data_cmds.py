"""`attnlab data download`: fetch and verify a public corpus into the user's cache."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import app
from .common import fail

data_app = typer.Typer(help="Public corpora: download and verify.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("download")
def download(
    name: str = typer.Argument(..., help="fra-eng or multi30k"),
    cache_dir: Optional[Path] = typer.Option(None, help="where to put it (default: $ATTNLAB_DATA or ~/.cache/attnlab)"),
    url: Optional[str] = typer.Option(None, help="download from this URL instead (a mirror)"),
    sha256: Optional[str] = typer.Option(None, help="expected SHA-256 of the download (with --url)"),
    force: bool = typer.Option(False, "--force", help="download again even if a verified copy exists"),
):
    """Download a public parallel corpus, verify its checksum and unpack it; prints its path.

    Examples:

        attnlab data download fra-eng

        attnlab train --task fra-eng --out runs/fra-eng     # finds the downloaded copy
    """
    from ..data import CORPORA, download_corpus

    if name not in CORPORA:
        fail(f"unknown corpus {name!r}; allowed: {', '.join(CORPORA)}")
    path = download_corpus(name, cache_dir=cache_dir, url=url, sha256=sha256, force=force)
    print(path)

"""Fetching public corpora into the user's cache, verified and all-or-nothing.

    >>> download_corpus("fra-eng")        # → ~/.cache/attnlab/fra-eng (holds fra.txt)
    >>> download_corpus("multi30k")       # → ~/.cache/attnlab/multi30k (train/val/test .gz files)

Where: `cache_dir` if given, else ``$ATTNLAB_DATA``, else ``$XDG_CACHE_HOME/attnlab`` (default
``~/.cache/attnlab``); `load_task("fra-eng")` looks in the same places.

How, so that a failure never leaves a half-written corpus behind:

1. every file streams into a fresh temporary directory *inside* the cache root (same file system,
   so the final rename is atomic);
2. its checksum is verified (a mismatch is an error; nothing is kept);
3. archives are unpacked inside the temporary directory (a zip whose members all sit in one
   top-level folder is flattened);
4. the finished directory is renamed into place; with `force=True` an existing copy is swapped out
   only after the new one is complete. The temporary directory is removed whatever happens.

Checksums: fra-eng is the archive mirrored by "Dive into Deep Learning" (d2l.ai), whose sha1 the
D2L code pins; manythings.org itself re-publishes the file now and then, so no fixed checksum
exists for it. Multi30k files are pinned to a commit of github.com/multi30k/dataset and their
sha256 were computed from byte-identical copies of that commit.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..files import staging_dir


class DownloadError(ValueError):
    """A corpus could not be fetched or verified. A ValueError, so the CLI reports it in one line."""


@dataclass(frozen=True)
class RemoteFile:
    url: str
    checksum: str | None  # "sha1:<hex>" or "sha256:<hex>"; None = not verified
    unpack_zip: bool = False


_D2L_FRA_ENG = "http://d2l-data.s3-accelerate.amazonaws.com/fra-eng.zip"
_MULTI30K = ("https://raw.githubusercontent.com/multi30k/dataset/"
             "a3d2e0d26b56f3846f66a952536ffed4e401d05a/data/task1/raw/{split}.{lang}.gz")
_MULTI30K_SHA256 = {
    "train.en": "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
    "train.de": "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
    "train.fr": "622e75069e9f4c577425c4f277116ce66e63a2401c0a2312d90073cb12379a3c",
    "val.en": "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
    "val.de": "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
    "val.fr": "ca3106f1a72390591d25f6c45cb4cd39dec4cd3f123e099748a3ce5256c160e9",
    "test_2016_flickr.en": "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9",
    "test_2016_flickr.de": "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8",
    "test_2016_flickr.fr": "6d326e188d259fb1d04ac19eae3af956559b3a0b93d7635e56c90987c40c8b90",
}

# name → files. Other mirrors: https://www.manythings.org/anki/fra-eng.zip (changes over time).
CORPORA: dict[str, list[RemoteFile]] = {
    "fra-eng": [RemoteFile(_D2L_FRA_ENG, "sha1:94646ad1522d915e7b0f9296181140edcf86a4f5", True)],
    "multi30k": [
        RemoteFile(_MULTI30K.format(split=stem.split(".")[0], lang=stem.split(".")[1]), f"sha256:{digest}")
        for stem, digest in _MULTI30K_SHA256.items()
    ],
}


def user_cache_root() -> Path:
    """``$XDG_CACHE_HOME/attnlab``, or ``~/.cache/attnlab``."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "attnlab"


def default_data_root() -> Path:
    """Where downloads go: ``$ATTNLAB_DATA`` if set, else the user cache."""
    return Path(os.environ["ATTNLAB_DATA"]) if os.environ.get("ATTNLAB_DATA") else user_cache_root()


def _fetch(remote: RemoteFile, destination: Path, progress: bool) -> None:
    """Stream `remote.url` into `destination`, then verify the checksum."""
    algorithm, _, expected = (remote.checksum or "sha256:").partition(":")
    digest = hashlib.new(algorithm)
    request = urllib.request.Request(remote.url, headers={"User-Agent": "attnlab"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response, open(destination, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            while chunk := response.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress:
                    of_total = f" of {total / 1e6:.1f}" if total else ""
                    print(f"\r{destination.name}: {done / 1e6:.1f}{of_total} MB", end="", file=sys.stderr)
    except (urllib.error.URLError, OSError) as error:
        raise DownloadError(f"download of {remote.url} failed: {error}") from None
    finally:
        if progress:
            print(file=sys.stderr)
    if expected and digest.hexdigest() != expected.lower():
        raise DownloadError(f"{remote.url}: checksum mismatch (expected {algorithm} {expected}, "
                            f"got {digest.hexdigest()}); nothing was saved")


def _unzip(archive: Path, destination: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():  # refuse members that would land outside `destination`
                if not (destination / member).resolve().is_relative_to(destination.resolve()):
                    raise DownloadError(f"{archive.name}: unsafe path {member!r} in archive")
            zf.extractall(destination)
    except zipfile.BadZipFile as error:
        raise DownloadError(f"{archive.name}: not a valid zip archive ({error})") from None
    for junk in destination.glob("__MACOSX"):
        shutil.rmtree(junk)
    entries = list(destination.iterdir())
    if len(entries) == 1 and entries[0].is_dir():  # fra-eng.zip holds fra-eng/fra.txt: flatten
        inner = entries[0].rename(destination / f".{entries[0].name}.inner")
        for item in inner.iterdir():
            item.rename(destination / item.name)
        inner.rmdir()


def download_corpus(
    name: str,
    *,
    cache_dir: Path | None = None,
    url: str | None = None,
    sha256: str | None = None,
    progress: bool = True,
    force: bool = False,
) -> Path:
    """Download corpus `name` (one of `CORPORA`) and return its directory.

    An existing copy is returned as is unless `force`. `url` replaces the registry's address (for a
    multi-file corpus, a template with ``{split}`` and ``{lang}``); `sha256` replaces its checksum
    (single-file corpora only).
    """
    if name not in CORPORA:
        raise ValueError(f"corpus: {name!r} is not one of {', '.join(CORPORA)}")
    if sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
        raise ValueError(f"sha256: {sha256!r} is not a SHA-256 (64 hexadecimal digits)")
    remotes = CORPORA[name]
    if url is not None or sha256 is not None:
        if len(remotes) == 1:
            remotes = [RemoteFile(url or remotes[0].url,
                                  f"sha256:{sha256}" if sha256 else remotes[0].checksum,
                                  remotes[0].unpack_zip)]
        elif sha256 is not None:
            raise ValueError(f"sha256: {name} has several files; it can only be verified by the registry")
        else:
            remotes = [RemoteFile(url.format(split=stem.split(".")[0], lang=stem.split(".")[1]),
                                  remote.checksum) for stem, remote in zip(_MULTI30K_SHA256, remotes)]

    root = Path(cache_dir) if cache_dir is not None else default_data_root()
    target = root / name
    if target.exists() and not force:
        return target
    created = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    work = staging_dir(root, prefix=f".{name}.partial-")
    try:
        content = work / "content"
        content.mkdir()
        for remote in remotes:
            file_name = remote.url.rstrip("/").rsplit("/", 1)[-1] or "download"
            downloaded = work / file_name
            _fetch(remote, downloaded, progress)
            if remote.unpack_zip:
                _unzip(downloaded, content)
                downloaded.unlink()
            else:
                downloaded.rename(content / file_name)
        old = work / "previous"
        if target.exists():  # force: swap only now that the new copy is complete
            target.rename(old)
        content.rename(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if created and not any(root.iterdir()):  # a failed first download leaves no empty cache behind
            root.rmdir()
    return target

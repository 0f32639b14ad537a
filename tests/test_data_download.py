"""Claims about `download_corpus`, against a local HTTP server (never the network)."""

import functools
import hashlib
import http.server
import threading
import zipfile
from pathlib import Path

import pytest

from attnlab.data import download_corpus, load_task
from attnlab.data.download import DownloadError
from conftest import shared_data

FRA = "Go.\tVa !\nHi.\tSalut !\nRun!\tCours !\nWho?\tQui ?\nWow!\tÇa alors !\n" * 4


@pytest.fixture()
def server(tmp_path):
    """Serve tmp_path/www on 127.0.0.1 (a free port) from a thread; yields (base URL, www dir)."""
    www = tmp_path / "www"
    www.mkdir()
    with zipfile.ZipFile(www / "fra-eng.zip", "w") as zf:  # same layout as the real archive
        zf.writestr("fra-eng/fra.txt", FRA)
        zf.writestr("fra-eng/_about.txt", "Tatoeba")
    (www / "broken.zip").write_bytes(b"this is not a zip file")
    handler = functools.partial(_QuietHandler, directory=str(www))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", www
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def test_good_download_is_verified_unpacked_and_loadable(server, tmp_path):
    base, www = server
    cache = tmp_path / "cache"
    path = download_corpus("fra-eng", cache_dir=cache, url=f"{base}/fra-eng.zip",
                           sha256=_sha256(www / "fra-eng.zip"), progress=False)
    assert path == cache / "fra-eng" and (path / "fra.txt").read_text(encoding="utf-8") == FRA
    assert _leftovers(cache) == ["fra-eng"]  # no temporary files remain
    data = load_task("fra-eng", data_dir=cache, tokenizer="word", dev_fraction=1, test_fraction=1)
    assert {ex.src_text for ex in data.train + data.dev + data.test} == {"Go.", "Hi.", "Run!", "Who?", "Wow!"}
    # A second call finds the cache and does not download again (the server is not even asked).
    assert download_corpus("fra-eng", cache_dir=cache, url=f"{base}/missing.zip", progress=False) == path


def test_checksum_mismatch_is_a_clear_error_and_leaves_nothing(server, tmp_path):
    base, _ = server
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match="checksum mismatch"):
        download_corpus("fra-eng", cache_dir=cache, url=f"{base}/fra-eng.zip", sha256="0" * 64, progress=False)
    assert _leftovers(cache) == []


def test_failed_download_keeps_a_previous_good_cache_untouched(server, tmp_path):
    base, www = server
    cache = tmp_path / "cache"
    (cache / "fra-eng").mkdir(parents=True)
    (cache / "fra-eng" / "fra.txt").write_text("old\tvieux\n", encoding="utf-8")
    for url, sha256, message in [(f"{base}/nope.zip", None, "404"),
                                 (f"{base}/broken.zip", _sha256(www / "broken.zip"), "not a valid zip")]:
        with pytest.raises(DownloadError, match=message):
            download_corpus("fra-eng", cache_dir=cache, url=url, sha256=sha256, progress=False, force=True)
        assert _leftovers(cache) == ["fra-eng"]
        assert (cache / "fra-eng" / "fra.txt").read_text(encoding="utf-8") == "old\tvieux\n"
    download_corpus("fra-eng", cache_dir=cache, url=f"{base}/fra-eng.zip",
                    sha256=_sha256(www / "fra-eng.zip"), progress=False, force=True)
    assert (cache / "fra-eng" / "fra.txt").read_text(encoding="utf-8") == FRA
    assert _leftovers(cache) == ["fra-eng"]


def test_multi_file_corpus_downloads_every_file(server, tmp_path):
    base, www = server
    corpus = shared_data("multi30k/raw")
    (www / "m30k").mkdir()
    for path in corpus.glob("*.gz"):
        (www / "m30k" / path.name).write_bytes(path.read_bytes())  # registry checksums must match
    path = download_corpus("multi30k", cache_dir=tmp_path / "cache", url=f"{base}/m30k/{{split}}.{{lang}}.gz",
                           progress=False)
    assert sorted(p.name for p in path.iterdir()) == sorted(p.name for p in corpus.glob("*.gz"))


def test_unknown_corpus_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="corpus: 'wmt14'"):
        download_corpus("wmt14", cache_dir=tmp_path)

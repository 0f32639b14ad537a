import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
# The developer corpora (fra-eng, multi30k): $ATTNLAB_SHARED/data, by default the repository's ../shared/data.
# A user's clone has none; CI (CI=true) must have them.
SHARED = Path(os.environ.get("ATTNLAB_SHARED") or REPO_ROOT.parent / "shared")
IN_CI = os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def shared_data(relative: str) -> Path:
    """``SHARED/data/relative`` for a test that needs the full corpora, e.g. ``shared_data("fra-eng/fra.txt")``.

    Absent, it skips the calling test with a one-line reason, except in CI, where it fails it:
    CI runs these tests, so a corpus missing there is a broken setup, not a reason to skip.
    """
    path = SHARED / "data" / relative
    if not path.exists():
        message = f"corpus {relative} not at {path} (set ATTNLAB_SHARED to the folder holding data/)"
        if IN_CI:
            pytest.fail(f"CI=true but {message}", pytrace=False)
        pytest.skip(message)
    return path


# Tests are small; one thread per process keeps them steady on a shared 2-core box.
torch.set_num_threads(int(os.environ.get("ATTNLAB_TEST_THREADS", "1")))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


CHROMIUM = os.environ.get("ATTNLAB_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = REPO_ROOT / "test-artifacts"  # screenshots from browser tests (gitignored)


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium driven by Playwright; its absence fails (CI installs it), it never skips."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: install it (apt-get install chromium) "
                    "or point ATTNLAB_CHROMIUM at a Chromium binary")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A tab of ``browser`` that records script errors, dialogs and requests (page_support.watched_page);
    the test fails afterwards if any happened or any request left the machine."""
    from page_support import check_clean, watched_page

    page = watched_page(browser)
    yield page
    check_clean(page)
    page.close()

"""`attnlab explore` as a user starts it: a real process, a real model, a real browser."""

import asyncio
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from conftest import ARTIFACTS
from playwright.sync_api import expect

from attnlab.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.browser]



def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def start_explorer(run: str, port: int) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-m", "attnlab", "explore", run, "--port", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 90
    while time.time() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"explorer exited: {process.stderr.read().decode()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/info", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise AssertionError("explorer did not start within 90 s")


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("live") / "toy"
    assert main(["train", "--task", "toy", "--out", str(out), "--steps", "60", "--d-model", "32", "--heads", "2",
                 "--encoder-layers", "2", "--decoder-layers", "1", "--d-ff", "64", "--quiet"]) == 0
    return out


def test_explorer_process_serves_a_trained_model_to_a_browser(toy_run, browser):
    port = free_port()
    process = start_explorer(str(toy_run), port)
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        requested, dialogs, errors = [], [], []  # as the page fixture of test_viz_browser.py records them
        page.on("request", lambda request: requested.append(request.url))
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"http://127.0.0.1:{port}/")
        page.get_by_test_id("text-input").fill("the black dog slept in the garden .")
        page.get_by_test_id("submit").click()
        expect(page.locator(".thumb")).to_have_count(2 * 2)  # the default view: 2 encoder layers x 2 heads
        page.hover(".token[data-side=key][data-index='1']")
        assert page.locator(".link.highlighted").count() > 0
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "explore-live.png"), full_page=True)
        page.close()
        assert requested and all(url.startswith("http://127.0.0.1:") for url in requested), requested
        assert dialogs == [], f"a token ran as script: {dialogs}"
        assert errors == [], f"script errors: {errors}"
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_explorer_answers_200_concurrent_requests_with_bounded_memory(toy_run):
    port = free_port()
    process = start_explorer(str(toy_run), port)
    url = f"http://127.0.0.1:{port}"

    async def hammer(count):
        async with httpx.AsyncClient(base_url=url, timeout=120, limits=httpx.Limits(max_connections=200)) as client:
            bodies = [{"text": f"the dog {'sleeps' if i % 2 else 'eats'} .", "beam": 1 + i % 3} for i in range(count)]
            bodies[7] = {"text": "<script>alert(1)</script>", "beam": 1}
            bodies[8] = {"text": "", "beam": 1}
            return await asyncio.gather(*(client.post("/api/attention", json=body) for body in bodies))

    def run_in_thread(coroutine):  # Playwright's sync API keeps an event loop in this thread
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, coroutine).result()

    try:
        run_in_thread(hammer(20))  # warm up allocator and caches
        before = rss_mib(process.pid)
        responses = run_in_thread(hammer(200))
        after = rss_mib(process.pid)
        codes = [r.status_code for r in responses]
        assert codes.count(200) == 199 and codes[8] == 400
        assert after - before < 150, f"memory grew from {before:.0f} to {after:.0f} MiB"
        assert httpx.get(f"{url}/api/info").status_code == 200  # still serving
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_explore_minilm_starts_offline():
    port = free_port()
    process = start_explorer("minilm", port)
    try:
        response = httpx.post(f"http://127.0.0.1:{port}/api/attention", timeout=60,
                              json={"text": "The animal didn't cross the street because it was too tired", "beam": 1})
        assert response.status_code == 200
        doc = response.json()
        assert len(doc["attention"]) == 6 and len(doc["attention"][0]["weights"]) == 12
    finally:
        process.terminate()
        process.wait(timeout=20)

"""The explorer API answers good input, refuses bad input precisely, and keeps serving."""

import asyncio
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from attnlab.document import synthetic_attention_doc, validate_attention_doc
from attnlab.viz.explorer import background_server, create_app
from attnlab.viz.html import render_attention_html

MAX_WORDS = 40


class FakeModel:
    """analyze() sized to the words typed; counts how many calls ever overlapped."""

    def __init__(self, delay=0.0):
        self.delay, self.active, self.max_active, self.calls = delay, 0, 0, 0
        self.guard = threading.Lock()

    def __call__(self, text, target, beam):
        with self.guard:
            self.active += 1
            self.calls += 1
            self.max_active = max(self.max_active, self.active)
        try:
            words = text.split()
            if len(words) > MAX_WORDS:
                raise ValueError(f"at most {MAX_WORDS} words, got {len(words)}")
            time.sleep(self.delay)
            target_words = target.split() if target else [w[::-1] for w in words][: max(1, len(words) - beam + 1)]
            doc = synthetic_attention_doc(words, target_words, num_layers=2, num_heads=4, seed=len(words))
            doc["translation"] = " ".join(target_words)
            return doc
        finally:
            with self.guard:
                self.active -= 1


@pytest.fixture
def model():
    return FakeModel()


@pytest.fixture
def client(model):
    return TestClient(create_app(model, info={"model": "fake", "examples": ["the cat sat"]}))


def test_a_sentence_gets_a_valid_doc_and_its_translation(client):
    response = client.post("/api/attention", json={"text": "the cat sat on the mat", "target": None, "beam": 1})
    assert response.status_code == 200
    doc = response.json()
    validate_attention_doc(doc)
    assert doc["source_tokens"] == "the cat sat on the mat".split()
    assert doc["translation"] == "eht tac tas no eht tam"
    assert len(doc["attention"]) == 6  # 2 layers x (encoder self, decoder self, cross)


def test_a_forced_target_is_passed_to_the_model(client):
    doc = client.post("/api/attention", json={"text": "a b", "target": "x y z", "beam": 2}).json()
    assert doc["target_tokens"] == ["x", "y", "z"]


@pytest.mark.parametrize("body, status, detail", [
    ({"text": ""}, 400, "text is empty"),
    ({"text": "   \n\t"}, 400, "text is empty"),
    ({"text": "word " * (MAX_WORDS + 1)}, 400, f"at most {MAX_WORDS} words"),  # ValueError from analyze
    ({"text": "x" * 1001}, 400, "text has 1001 characters; at most 1000 are allowed"),
    ({"text": "a", "beam": 9}, 400, "beam must be between 1 and 8"),
    ({"text": "a", "beam": 0}, 422, "greater than or equal to 1"),
    ({"target": "a"}, 422, "Field required"),
    ({"text": 5}, 422, "valid string"),
])
def test_bad_input_is_refused_with_a_message(client, body, status, detail):
    response = client.post("/api/attention", json=body)
    assert response.status_code == status
    assert detail in str(response.json()["detail"])


def test_malformed_json_is_422_and_an_oversized_body_413_and_the_server_keeps_serving(client):
    response = client.post("/api/attention", content=b'{"text": "unterminated',
                           headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert "JSON decode error" in str(response.json()["detail"])
    response = client.post("/api/attention", content=b'{"text": "' + b"a" * 70_000 + b'"}',
                           headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert "larger than 65536 bytes" in response.json()["detail"]
    # a chunked body (no Content-Length) is counted too
    response = client.post("/api/attention", content=iter([b"a" * 40_000, b"a" * 40_000]),
                           headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert client.post("/api/attention", json={"text": "still here"}).status_code == 200


def test_a_model_crash_is_a_500_with_a_message_and_not_a_dead_server():
    def broken(text, target, beam):
        if text == "crash":
            raise RuntimeError("boom")
        return {"source_tokens": ["a"], "attention": [{"kind": "cross", "layer": 0, "weights": [[[1.0]]]}]}

    client = TestClient(create_app(broken))
    assert client.post("/api/attention", json={"text": "crash"}).json() == {"detail": "analysis failed: RuntimeError"}
    bad = client.post("/api/attention", json={"text": "bad doc"})  # cross without target tokens
    assert bad.status_code == 500 and "invalid attention document" in bad.json()["detail"]
    assert client.get("/api/info").status_code == 200


def test_info_page_and_openapi(client):
    assert client.get("/api/info").json() == {"model": "fake", "examples": ["the cat sat"]}
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'data-testid="explorer-form"' in page.text
    assert "/api/attention" in client.get("/openapi.json").json()["paths"]


def test_the_explorer_and_the_static_page_share_one_script(client):
    def script(page):
        return page[page.rindex("<script>"):]
    static = render_attention_html(synthetic_attention_doc(["a"], None, num_layers=1, num_heads=1))
    assert script(client.get("/").text) == script(static)


def test_200_concurrent_requests_on_loopback_are_all_answered_one_analysis_at_a_time():
    model = FakeModel(delay=0.001)

    async def hammer(url):
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as session:
            requests = [session.post("api/attention", json={"text": f"sentence number {i}", "beam": 1})
                        for i in range(200)]
            return await asyncio.gather(*requests)

    with background_server(create_app(model)) as url:
        assert url.startswith("http://127.0.0.1:")
        responses = asyncio.run(hammer(url))
    assert [r.status_code for r in responses] == [200] * 200
    assert all(r.json()["source_tokens"][2] == str(i) for i, r in enumerate(responses))
    assert model.calls == 200 and model.max_active == 1

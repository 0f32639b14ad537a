"""The explorer: a local web app where you type a sentence and watch its tokens interact.

``GET /`` serves the same page and script as attention.html (:mod:`attnlab.viz.html`) with a form
added: text, optional forced target, beam width. The form posts to ``POST /api/attention`` and
redraws the head view and model view from the answer, which carries the decoding steps
(``decoding``). Given a second model (``compare_with``), the app compares the two live: the form
posts to ``POST /api/compare``, which answers the two-run payload of :mod:`attnlab.viz.compare`. Given ``ablate``
(:class:`attnlab.inspection.live.HeadAblation`), a click on a head posts to ``POST /api/ablate``, which
zeroes the listed heads for that request only and answers the re-translated document with
``logprob_change``. ``GET /api/info`` describes the model;
``GET /openapi.json`` is the API's schema and ``GET /docs`` shows it in Swagger UI, whose script comes
from the fastapi-offline package and is served by the app itself (FastAPI's default page loads it from
a CDN). Swagger UI's online validator is off, and so is ReDoc, which loads its logo from its CDN: the
explorer makes no request outside this machine.

The app never touches a model itself: it calls ``analyze(text, target, beam)``, which returns an
attention.json dict plus ``"translation"`` (or raises ``ValueError`` for input it refuses).
Calls to ``analyze`` are serialised by a lock, because a torch model with recorded attention is
not safe to share between threads.

    >>> app = create_app(my_analyze, info={"model": "runs/toy"})
    >>> serve(app, port=8000)          # then open http://127.0.0.1:8000/
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import webbrowser
from contextlib import contextmanager
from typing import Callable, Iterator, Optional

from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, Field

from ..document import to_jsonable, validate_attention_doc
from .html import render_page

logger = logging.getLogger(__name__)

Analyze = Callable[[str, Optional[str], int], dict]
MAX_BODY_BYTES = 64 * 1024
API_PATH = "/api/attention"
COMPARE_PATH = "/api/compare"
ABLATE_PATH = "/api/ablate"
MAX_ABLATED_HEADS = 512


class AttentionRequest(BaseModel):
    """What the page sends: the sentence, an optional forced translation, the beam width."""

    text: str = Field(..., description="the source sentence", examples=["the cat sat on the mat"])
    target: str | None = Field(None, description="force this target instead of decoding one")
    beam: int = Field(1, ge=1, description="beam width for decoding (1 = greedy)")


class HeadRef(BaseModel):
    """One attention head: its kind (encoder_self, decoder_self, cross), layer and head index."""

    kind: str = Field(..., examples=["cross"])
    layer: int = Field(..., examples=[1])
    head: int = Field(..., examples=[0])


class AblationRequest(AttentionRequest):
    """The attention request plus the heads to ablate for this request only (``[]``: none, the plain model)."""

    heads: list[HeadRef] = Field(default_factory=list, max_length=MAX_ABLATED_HEADS)


class BodySizeLimit:
    """ASGI middleware answering 413 to any request body larger than ``max_bytes``.

    A declared Content-Length is refused at once; a chunked body is counted as it arrives.
    """

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(scope, receive, send)
            return
        messages, size, more = [], 0, True
        while more:  # buffer the (small, bounded) body so it can be replayed to the app
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
            if size > self.max_bytes:
                await self._too_large(scope, receive, send)
                return

        async def replay():
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope, receive, send) -> None:
        response = JSONResponse({"detail": f"request body is larger than {self.max_bytes} bytes"},
                                status_code=413)
        await response(scope, receive, send)


def create_app(
    analyze: Analyze,
    *,
    title: str = "attnlab explorer",
    info: dict | None = None,
    max_chars: int = 1000,
    max_beam: int = 8,
    max_body_bytes: int = MAX_BODY_BYTES,
    compare_with: Analyze | None = None,
    labels: tuple[str, str] = ("A", "B"),
    ablate: Callable[[str, Optional[str], int, list], dict] | None = None,
) -> FastAPI:
    """Build the explorer app around ``analyze(text, target, beam) -> attention.json + translation``.

    Bad input never stops the server: malformed JSON or a missing field → 422, empty or too long
    text and ``ValueError`` from ``analyze`` → 400 ``{"detail": message}``, a body over
    ``max_body_bytes`` → 413. With ``compare_with`` (a second ``analyze``) the app serves
    ``POST /api/compare`` instead of ``/api/attention``: ``analyze`` is run A, ``compare_with``
    run B, ``labels`` their names. With ``ablate(text, target, beam, heads) -> document +
    translation + logprob_change + ablated`` (:class:`attnlab.inspection.live.HeadAblation`) a
    single-run app also serves ``POST /api/ablate`` (the page's config gets ``"ablate"``); a head
    or layer out of range is a ``ValueError`` there, so 400.
    """
    info = dict(info or {})
    lock = threading.Lock()
    app = FastAPIOffline(title=title, description="Attention of an attnlab model, one sentence at a time.",
                         redoc_url=None, swagger_ui_parameters={"validatorUrl": None})  # both would call out
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    explorer = {"api": API_PATH, "max_beam": max_beam, "max_chars": max_chars,
                "examples": [str(e) for e in info.get("examples", [])]}
    if compare_with is not None:
        explorer.update(api=COMPARE_PATH, compare=True, labels=[str(label) for label in labels])
    elif ablate is not None:
        explorer["ablate"] = ABLATE_PATH
    page = render_page(None, title=title, explorer=explorer)

    def checked_request(request: "AttentionRequest") -> tuple[str, str | None]:
        text = _checked_text(request.text, "text", max_chars)
        target = None
        if request.target is not None and request.target.strip():
            target = _checked_text(request.target, "target", max_chars)
        if request.beam > max_beam:
            raise HTTPException(400, f"beam must be between 1 and {max_beam}, got {request.beam}")
        return text, target

    def answer(compute: Callable[[], dict], text: str, check: Callable[[dict], None]) -> Response:
        with lock:  # one analysis at a time: the model is shared
            try:
                result = to_jsonable(compute())
            except ValueError as error:
                raise HTTPException(400, str(error) or "the input was refused") from None
            except Exception as error:
                logger.exception("analyze failed for %r", text[:80])
                raise HTTPException(500, f"analysis failed: {type(error).__name__}") from None
        try:
            check(result)
        except ValueError as error:
            logger.error("analyze returned an invalid attention document: %s", error)
            raise HTTPException(500, f"the model returned an invalid attention document: {error}") from None
        return Response(json.dumps(result, ensure_ascii=False, allow_nan=False), media_type="application/json")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"X-Content-Type-Options": "nosniff"})

    @app.get("/api/info")
    def api_info() -> dict:
        """What model is being explored (as given to ``create_app``)."""
        return info

    refused = {400: {"description": "the text or target was refused"}, 413: {"description": "request body too large"}}
    if compare_with is None:
        @app.post(API_PATH, responses={
            200: {"description": "attention.json (docs/design.md, with \"decoding\") plus \"translation\""},
            **refused})
        def attention(request: AttentionRequest) -> Response:
            """Translate ``text`` (or force ``target``) and return every attention map and the decoding steps."""
            text, target = checked_request(request)
            return answer(lambda: analyze(text, target, request.beam), text,
                          lambda doc: validate_attention_doc(doc, allow_zero_rows=True))

        if ablate is not None:
            @app.post(ABLATE_PATH, responses={
                200: {"description": "attention.json under the ablation, plus \"translation\", \"logprob_change\" "
                                     "(of the un-ablated output) and \"ablated\" (the heads)"},
                **refused})
            def ablation(request: AblationRequest) -> Response:
                """Zero the output of ``heads`` for this request only, re-translate, and say what changed."""
                text, target = checked_request(request)
                heads = [head.model_dump() for head in request.heads]

                def check(result: dict) -> None:
                    validate_attention_doc({k: v for k, v in result.items() if k not in ("logprob_change", "ablated")},
                                           allow_zero_rows=True)

                return answer(lambda: ablate(text, target, request.beam, heads), text, check)
    else:
        from .compare import compare_runs, validate_compare

        @app.post(COMPARE_PATH, responses={
            200: {"description": "both runs' attention.json and their difference maps (attnlab.viz.compare)"},
            **refused})
        def compare(request: AttentionRequest) -> Response:
            """Run both models on ``text`` (the same target for both) and return the compare payload."""
            text, target = checked_request(request)
            return answer(lambda: compare_runs(analyze, compare_with, text, target, beam=request.beam,
                                               labels=labels), text, validate_compare)

    return app


def _checked_text(value: str, name: str, max_chars: int) -> str:
    if not value.strip():
        raise HTTPException(400, f"{name} is empty: type a sentence")
    if len(value) > max_chars:
        raise HTTPException(400, f"{name} has {len(value)} characters; at most {max_chars} are allowed")
    return value


def serve(app: FastAPI, *, host: str = "127.0.0.1", port: int = 8000, open_browser: bool = False,
          log_level: str = "info") -> None:
    """Run ``app`` with uvicorn until interrupted; by default reachable only from this machine."""
    import uvicorn

    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/"
    if open_browser:
        threading.Timer(1.0, webbrowser.open, args=[url]).start()
    logger.info("attnlab explorer on %s", url)
    uvicorn.run(app, host=host, port=port, log_level=log_level)



@contextmanager
def background_server(app: FastAPI, *, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run ``app`` with uvicorn in a daemon thread and yield its base URL; stop it on exit.

    ``port=0`` picks a free port. Meant for tests and notebooks:

    >>> with background_server(app) as url:
    ...     httpx.get(url + "api/info")
    """
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", backlog=1024))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(500):  # wait up to ~10 s for startup
            if server.started or not thread.is_alive():
                break
            threading.Event().wait(0.02)
        if not server.started:
            raise RuntimeError("the explorer server did not start")
        yield f"http://{host}:{sock.getsockname()[1]}/"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()

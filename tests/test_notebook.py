"""Claims about attention in a notebook: attnlab.show(...) and the example notebooks.

show() puts the very page attention.html is (render_page's output, byte for byte) into an
<iframe srcdoc>. The slow tests execute notebooks with nbclient in this venv's kernel, convert
them with nbconvert and open the HTML in headless Chromium, recording every request.
"""

import json
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import REPO_ROOT
from tiny_runs import tiny_run

import attnlab
from attnlab.document import synthetic_attention_doc
from attnlab.inspection.inference import Translator
from attnlab.viz.html import embed_json, render_attention_html
from attnlab.viz.outputs import write_attention_outputs

EXAMPLES = sorted((REPO_ROOT / "examples").glob("*.ipynb"))
SEQUENCE = "3 1 4 1 5 9 2"


class Frames(HTMLParser):
    """The srcdoc of every iframe in an HTML fragment, unescaped (what the browser loads)."""

    def __init__(self, text):
        super().__init__()
        self.srcdocs, self.ids = [], []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        if tag == "iframe":
            attrs = dict(attrs)
            self.srcdocs.append(attrs.get("srcdoc"))
            self.ids.append(attrs.get("id"))


def doc_of(seed=0):
    return synthetic_attention_doc(["the", "cat", "sat", "<eos>"], ["<bos>", "le", "chat"], num_layers=2,
                                   num_heads=2, seed=seed)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return tiny_run(tmp_path_factory.mktemp("runs") / "reverse", steps=20)


# --------------------------------------------------------------------------- show(), without a browser


def test_show_puts_the_attention_html_page_itself_in_an_iframe():
    doc = doc_of()
    view = attnlab.show(doc, title="two cats")
    bundle = view._repr_mimebundle_()
    assert set(bundle) == {"text/html", "text/plain"} and bundle["text/html"] == view._repr_html_()
    frames = Frames(bundle["text/html"])
    assert frames.srcdocs == [render_attention_html(doc, title="two cats")]  # the same page, not a copy
    assert "require" not in bundle["text/html"] and "<script src" not in frames.srcdocs[0]
    assert "http:" not in bundle["text/html"] and "https:" not in bundle["text/html"]
    assert "AttentionView(4 source, 3 target tokens" in bundle["text/plain"]


def test_two_views_are_two_documents_with_their_own_ids(tmp_path):
    first, second = attnlab.show(doc_of(1)), attnlab.show(doc_of(2))
    assert Frames(first._repr_html_()).ids != Frames(second._repr_html_()).ids
    assert first.page != second.page
    saved = first.save(tmp_path / "view.html")
    assert saved.read_text(encoding="utf-8") == first.page


def test_show_reads_a_run_a_translator_and_an_attention_json(run, tmp_path):
    from_run = attnlab.show(run, SEQUENCE, beam=2)
    assert from_run.data["decoding"]["strategy"] == "beam" and from_run.data["source_text"] == SEQUENCE
    translator = Translator.load(run)
    from_translator = attnlab.show(translator, SEQUENCE, beam=2)
    assert from_translator.data == from_run.data
    written = write_attention_outputs(from_run.data, tmp_path / "attn")
    from_file = attnlab.show(written.json)
    assert from_file.data == json.loads(written.json.read_text())
    forced = attnlab.show(translator, SEQUENCE, target="2 9 5")
    assert forced.data["target_tokens"] == ["<bos>", "2", "9", "5"]


@pytest.mark.parametrize("call, message", [
    (lambda run: attnlab.show(run), "show\\(\\) needs the sentence"),
    (lambda run: attnlab.show(object(), "x"), "show\\(\\) cannot read a object"),
    (lambda run: attnlab.show((run, run, run), "x"), "compares two runs; got 3"),
    (lambda run: attnlab.show({"source_tokens": ["a"], "attention": []}), "attention must be a non-empty list"),
    (lambda run: attnlab.show(Translator.load(run).model, "x"), "a bare model has no tokenizer"),
])
def test_show_refuses_what_it_cannot_draw(run, call, message):
    with pytest.raises(ValueError, match=message):
        call(run)


def test_show_of_two_runs_is_the_compare_page(run):
    view = attnlab.show((run, run), SEQUENCE)
    assert view.data["level"] == "token" and len(view.data["docs"]) == 2
    page = Frames(view._repr_html_()).srcdocs[0]
    assert embed_json({"compare": view.data, "explorer": None}) in page  # the page's data: the compare payload


# --------------------------------------------------------------------------- notebooks in Chromium


@pytest.fixture
def kernel(tmp_path, monkeypatch):
    """A kernel spec for this very Python (the project's venv), found through JUPYTER_PATH."""
    spec = tmp_path / "jupyter" / "kernels" / "attnlab-venv"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "attnlab (venv)", "language": "python",
        "env": {"ATTNLAB_EXAMPLE_STEPS": "5", "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return "attnlab-venv"


def execute(notebook, kernel, workdir):
    """Run every cell (a failing cell raises CellExecutionError) and return the notebook."""
    from nbclient import NotebookClient

    NotebookClient(notebook, kernel_name=kernel, timeout=900, resources={"metadata": {"path": str(workdir)}}).execute()
    return notebook


def to_html(notebook, path):
    """nbconvert's HTML, without its MathJax and require.js script tags (nbconvert's, not attnlab's: CDN URLs)."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter(mathjax_url="", require_js_url="").from_notebook_node(notebook)
    path.write_text(body, encoding="utf-8")
    return path


def attnlab_outputs(notebook):
    return [output["data"]["text/html"] for cell in notebook.cells if cell.cell_type == "code"
            for output in cell.outputs if "attnlab-view" in output.get("data", {}).get("text/html", "")]


def open_offline(browser, path):
    """Open ``path`` recording every request; anything not on this machine is recorded and refused."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.requested, page.errors = [], []
    page.on("pageerror", lambda error: page.errors.append(str(error)))

    def route(route):
        page.requested.append(route.request.url)
        local = route.request.url.split(":", 1)[0] in ("file", "data", "about", "blob")
        route.continue_() if local else route.abort()

    page.route("**/*", route)
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page


def views(page):
    return [frame for frame in page.frames if frame != page.main_frame]


def check_offline(page):
    outside = [url for url in page.requested if url.split(":", 1)[0] not in ("file", "data", "about", "blob")]
    assert page.requested and outside == [], f"requests left the machine: {outside}"
    assert page.errors == [], f"script errors: {page.errors}"


@pytest.mark.slow
@pytest.mark.browser
def test_two_views_in_one_notebook_both_respond_to_hover(browser, kernel, tmp_path):
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    setup = ("import attnlab\nfrom attnlab.document import synthetic_attention_doc\n"
             "doc = lambda seed: synthetic_attention_doc(['the', 'cat', 'sat', '<eos>'], ['<bos>', 'le', 'chat'], "
             "num_layers=2, num_heads=2, seed=seed)")
    notebook = execute(new_notebook(cells=[new_code_cell(setup), new_code_cell("attnlab.show(doc(1))"),
                                           new_code_cell("attnlab.show(doc(2))")]), kernel, tmp_path)
    outputs = attnlab_outputs(notebook)
    assert len(outputs) == 2 and all("https:" not in o and "http:" not in o for o in outputs)
    page = open_offline(browser, to_html(nbformat.from_dict(notebook), tmp_path / "two.html"))
    first, second = views(page)
    for frame in (first, second):
        frame.wait_for_selector(".thumb")
        assert frame.locator(".thumb").count() == 2 * 2
    for hovered, other in ((first, second), (second, first)):
        hovered.locator(".token[data-side=query][data-index='1']").hover()
        assert hovered.locator(".link.highlighted").count() > 0
        assert set(hovered.locator(".link.highlighted").evaluate_all("ls => ls.map(l => l.dataset.q)")) == {"1"}
        assert other.locator(".link.highlighted").count() == 0  # the other view did not hear it
    check_offline(page)
    page.close()


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_notebook_runs_and_every_view_renders_offline(browser, kernel, tmp_path, path):
    import nbformat

    notebook = execute(nbformat.read(path, as_version=4), kernel, tmp_path)
    outputs = attnlab_outputs(notebook)
    assert outputs, f"{path.name} shows no attnlab view"
    page = open_offline(browser, to_html(notebook, tmp_path / f"{path.stem}.html"))
    frames = views(page)
    assert len(frames) == sum(o.count("<iframe") for o in outputs)
    for frame in frames:
        frame.wait_for_selector(".thumb", timeout=20_000)  # the model view is drawn
        assert frame.locator("[data-testid=empty]").first.is_hidden()
    check_offline(page)
    page.close()


def test_there_are_example_notebooks_for_each_try_this():
    names = [p.stem for p in EXAMPLES]
    assert names == ["01_attention_heatmaps", "02_encoder_blocks", "03_positional_encodings"]
    for path in EXAMPLES:
        cells = json.loads(Path(path).read_text())["cells"]
        assert all(not cell.get("outputs") for cell in cells if cell["cell_type"] == "code"), \
            f"{path.name} is committed with outputs"
        assert any("attnlab.show(" in "".join(cell["source"]) for cell in cells)

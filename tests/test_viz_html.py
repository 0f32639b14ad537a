"""The attention.html page is self-contained and safe, and attention.json docs are validated."""

import copy
import json
import re

import numpy as np
import pytest

from attnlab.document import synthetic_attention_doc, validate_attention_doc
from attnlab.viz.html import render_attention_html, write_attention_html

HOSTILE = ["<script>alert(1)</script>", "</script>", "<!--", "&amp;", "{{title}}", "\u2028"]


@pytest.fixture
def doc():
    return synthetic_attention_doc("the cat sat on the mat".split(), "le chat est assis".split(),
                                   num_layers=2, num_heads=4)


def embedded_data(page):
    match = re.search(r'<script type="application/json" data-attnlab-data>(.*?)</script>', page, re.S)
    return json.loads(match.group(1))


def test_page_references_no_url_at_all(doc):
    page = render_attention_html(doc)
    assert not re.search(r"https?:", page, re.I)
    assert not re.search(r"""(src|href)\s*=""", page, re.I)  # nothing to load
    assert "default-src 'none'" in page  # and the browser is told so


def test_hostile_tokens_stay_inside_the_json_and_round_trip(doc):
    doc = synthetic_attention_doc(HOSTILE, HOSTILE[::-1], num_layers=1, num_heads=2)
    page = render_attention_html(doc, title="<b>title</b>")
    # Only the two script elements of the template close; no token closed one early.
    assert page.count("</script") == 2
    assert page.count("<!--") == 0
    assert "&lt;b&gt;title&lt;/b&gt;" in page and "<b>title</b>" not in page
    assert embedded_data(page)["doc"] == doc


def test_numpy_weights_are_accepted(doc):
    as_numpy = copy.deepcopy(doc)
    for entry in as_numpy["attention"]:
        entry["weights"] = np.asarray(entry["weights"], dtype=np.float32)
    data = embedded_data(render_attention_html(as_numpy))["doc"]
    assert np.allclose(data["attention"][0]["weights"], doc["attention"][0]["weights"], atol=1e-6)


def test_write_is_atomic_and_leaves_no_temporary_file(doc, tmp_path):
    path = write_attention_html(doc, tmp_path / "out" / "attention.html", title="t")
    assert path.read_text(encoding="utf-8").startswith("<!doctype html>")
    assert [p.name for p in path.parent.iterdir()] == ["attention.html"]


def test_invalid_doc_is_refused_before_anything_is_written(doc, tmp_path):
    doc["attention"][0]["weights"][0][0][0] += 0.5
    with pytest.raises(ValueError, match="sums to"):
        write_attention_html(doc, tmp_path / "attention.html")
    assert not list(tmp_path.iterdir())


def test_a_valid_doc_passes(doc):
    validate_attention_doc(doc)
    validate_attention_doc(synthetic_attention_doc(["only", "source"], None))


def break_doc(doc, how):
    """Return a copy of doc damaged in one named way."""
    doc = copy.deepcopy(doc)
    encoder, decoder = doc["attention"][0], doc["attention"][2]  # encoder_self L0, decoder_self L0
    if how == "kind":
        encoder["kind"] = "self"
    elif how == "shape":
        encoder["weights"] = [row[:-1] for row in encoder["weights"]]
    elif how == "row_sum":
        encoder["weights"][1][2] = [w * 0.9 for w in encoder["weights"][1][2]]
    elif how == "future":
        row = decoder["weights"][3][0]
        row[0], row[2] = 0.5, 0.5
    elif how == "duplicate":
        doc["attention"].append(copy.deepcopy(encoder))
    elif how == "heads":
        doc["attention"][1]["weights"] = doc["attention"][1]["weights"][:3]
    elif how == "token":
        doc["source_tokens"][1] = 7
    elif how == "nan":
        encoder["weights"][0][0][0] = float("nan")
    elif how == "negative":
        encoder["weights"][0][0][0] = -0.2
    elif how == "layer":
        encoder["layer"] = -1
    elif how == "empty":
        doc["attention"] = []
    return doc


@pytest.mark.parametrize("how, message", [
    ("kind", r"attention\[0\]: unknown kind 'self'; expected one of encoder_self, decoder_self, cross"),
    ("shape", r"attention\[0\] \(encoder_self, layer 0\): weights shape \(4, 5, 6\) does not match "
              r"\(heads, 6 source tokens, 6 source tokens\)"),
    ("row_sum", r"attention\[0\] \(encoder_self, layer 0\): row of head 1, query 2 \('sat'\) sums to 0\.9; "
                r"every row must sum to 1 within 1e-05"),
    ("future", r"attention\[2\] \(decoder_self, layer 0\): head 3, query 0 attends to future key 2"),
    ("duplicate", r"attention\[6\] \(encoder_self, layer 0\): duplicate entry"),
    ("heads", r"attention\[1\] \(encoder_self, layer 1\): has 3 heads but earlier encoder_self layers have 4"),
    ("token", r"source_tokens\[1\] must be a string, got int"),
    ("nan", r"NaN or infinity"),
    ("negative", r"negative weight -0\.2 at head 0, query 0, key 0"),
    ("layer", r"layer must be an integer >= 0, got -1"),
    ("empty", r"attention must be a non-empty list"),
])
def test_validation_names_exactly_what_is_wrong(doc, how, message):
    with pytest.raises(ValueError, match=message):
        validate_attention_doc(break_doc(doc, how))


def test_zero_rows_are_accepted_only_when_allowed(doc):
    doc["attention"][1]["weights"][0][3] = [0.0] * 6  # a query whose keys were all masked
    with pytest.raises(ValueError, match="sums to 0"):
        validate_attention_doc(doc)
    validate_attention_doc(doc, allow_zero_rows=True)


def test_not_a_dict_is_refused():
    with pytest.raises(ValueError, match="must be a JSON object, got list"):
        validate_attention_doc([])

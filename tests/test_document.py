"""Claims about the attention document (attnlab.document): one schema, one validator, versions."""

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from attnlab import document
from attnlab.document import (
    build_document,
    document_version,
    read_document,
    synthetic_attention_doc,
    to_json,
    upgrade,
    validate_attention_doc,
)

SOURCE, TARGET = ["the", "cat", "sleeps"], ["<bos>", "le", "chat"]


@pytest.fixture
def doc() -> dict:
    return synthetic_attention_doc(SOURCE, TARGET, num_layers=2, num_heads=2)


def entry(doc: dict, kind: str, layer: int = 0) -> dict:
    return next(e for e in doc["attention"] if e["kind"] == kind and e["layer"] == layer)


def rejected(doc, message: str, **options) -> None:
    with pytest.raises(ValueError, match=message):
        validate_attention_doc(doc, **options)


# --------------------------------------------------------------------------- building


def test_built_document_has_the_current_version_canonical_order_and_rounded_weights():
    third = 1 / 3
    entries = [{"kind": "cross", "layer": 0, "weights": np.full((1, 3, 3), third)},
               {"kind": "decoder_self", "layer": 0, "weights": np.tril(np.ones((1, 3, 3))) / np.arange(1, 4)[:, None]},
               {"kind": "encoder_self", "layer": 1, "weights": np.full((1, 3, 3), third)},
               {"kind": "encoder_self", "layer": 0, "weights": np.full((1, 3, 3), third)}]
    doc = build_document(SOURCE, TARGET, entries, translation="le chat")
    assert doc["version"] == document.VERSION == 2
    assert [(e["kind"], e["layer"]) for e in doc["attention"]] == [
        ("encoder_self", 0), ("encoder_self", 1), ("decoder_self", 0), ("cross", 0)]
    assert doc["attention"][0]["weights"][0][0] == [0.333333] * 3  # DIGITS = 6 decimals
    assert doc["translation"] == "le chat" and "target_tokens" in doc
    assert json.loads(to_json(doc)) == doc  # plain JSON types only


def test_building_refuses_what_the_validator_refuses():
    with pytest.raises(ValueError, match="unknown kind 'self'"):
        build_document(SOURCE, None, [{"kind": "self", "layer": 0, "weights": np.full((1, 3, 3), 1 / 3)}])
    with pytest.raises(ValueError, match="needs target tokens"):
        build_document(SOURCE, None, [{"kind": "cross", "layer": 0, "weights": np.full((1, 3, 3), 1 / 3)}])


def test_uniform_attention_over_many_keys_survives_rounding():
    # 1/300 rounds to 0.003333, so each row sums to 0.9999: off by 1e-4, all of it rounding.
    tokens = [f"t{i}" for i in range(300)]
    uniform = np.full((1, 300, 300), 1 / 300)  # (H, Lq, Lk)
    doc = build_document(tokens, None, [{"kind": "encoder_self", "layer": 0, "weights": uniform}])
    assert abs(sum(doc["attention"][0]["weights"][0][0]) - 0.9999) < 1e-9
    validate_attention_doc(doc)
    doc["attention"][0]["weights"][0][0][0] += 0.01  # a real error is still one
    rejected(doc, "row of head 0, query 0")


def test_document_module_does_not_import_torch():
    path = Path(document.__file__)
    code = ("import importlib.util, sys\n"
            f"spec = importlib.util.spec_from_file_location('doc_alone', {str(path)!r})\n"
            "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
            "module.validate_attention_doc(module.synthetic_attention_doc(['a', 'b'], ['x']))\n"
            "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# --------------------------------------------------------------------------- versions


def test_a_document_without_version_is_version_1_and_still_loads(doc, tmp_path):
    old = {key: value for key, value in doc.items() if key != "version"}
    assert document_version(old) == 1
    validate_attention_doc(old)
    path = tmp_path / "attention.json"
    path.write_text(json.dumps(old), encoding="utf-8")
    loaded = read_document(path)
    assert loaded["version"] == 2 and loaded["attention"] == old["attention"]  # upgraded: v2 only adds fields
    assert "version" not in old  # upgrade copies, never edits the caller's dict
    assert upgrade(old) == {**old, "version": 2}


def test_unknown_version_is_refused_by_name(doc):
    rejected({**doc, "version": 99}, r"unknown attention document version 99; this attnlab reads versions 1 to 2")


@pytest.mark.parametrize("version", ["1", 1.0, True, None])
def test_version_must_be_an_integer(doc, version):
    rejected({**doc, "version": version}, "version must be an integer")


def test_read_document_names_the_file_and_the_fault(doc, tmp_path):
    bad = tmp_path / "attention.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="attention.json is not JSON"):
        read_document(bad)
    entry(doc, "cross")["layer"] = "0"
    bad.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(ValueError, match=r"attention.json: attention\[\d\] \(cross\): layer must be an integer"):
        read_document(bad)


def test_optional_fields_have_their_type_and_unregistered_fields_are_kept(doc):
    rejected({**doc, "translation": 3}, "translation must be a string, got int")
    rejected({**doc, "source_text": ["the"]}, "source_text must be a string, got list")
    validate_attention_doc({**doc, "annotated_by": "a notebook"})


def test_a_field_of_a_later_version_is_refused_in_an_earlier_one(doc):
    validate_attention_doc({**doc, "explanations": []})
    rejected({**doc, "version": 1, "explanations": []},
             "explanations belongs to version 2 documents, but this one is version 1")


# --------------------------------------------------------------------------- one malformed field at a time


def test_missing_source_tokens_are_refused(doc):
    del doc["source_tokens"]
    rejected(doc, "source_tokens is missing")


def test_tokens_that_are_not_strings_are_refused(doc):
    doc["target_tokens"][2] = 7
    rejected(doc, r"target_tokens\[2\] must be a string, got int")
    doc["target_tokens"] = "le chat"
    rejected(doc, "target_tokens must be a list of strings, got str")


def test_a_target_kind_without_target_tokens_is_refused(doc):
    del doc["target_tokens"]
    rejected(doc, r"\(decoder_self, layer 0\): decoder_self needs target tokens, but target_tokens is empty")


def test_wrong_kind_is_refused(doc):
    entry(doc, "cross")["kind"] = "encoder_decoder"
    rejected(doc, r"unknown kind 'encoder_decoder'; expected one of encoder_self, decoder_self, cross")


@pytest.mark.parametrize("layer", ["0", 1.5, None, True, -1])
def test_layer_that_is_not_an_integer_from_0_is_refused(doc, layer):
    entry(doc, "encoder_self", 1)["layer"] = layer
    rejected(doc, rf"\(encoder_self\): layer must be an integer >= 0, got {layer!r}")


def test_ragged_weights_are_refused(doc):
    entry(doc, "encoder_self")["weights"][0][1] = [0.5, 0.5]  # one row of 2 keys among rows of 3
    rejected(doc, r"\(encoder_self, layer 0\): weights must be a numeric \[head\]\[query\]\[key\] array with rows "
                  "of equal length")


def test_weights_that_are_not_numbers_are_refused(doc):
    entry(doc, "encoder_self")["weights"][0][1][0] = "0.5"
    entry(doc, "encoder_self")["weights"][0][1][1] = {"w": 1}
    rejected(doc, r"weights must be a numeric \[head\]\[query\]\[key\] array")


def test_missing_weights_are_refused(doc):
    del entry(doc, "cross")["weights"]
    rejected(doc, r"\(cross, layer 0\): weights are missing")


def test_weights_whose_shape_does_not_match_the_token_counts_are_refused(doc):
    entry(doc, "cross")["weights"] = np.full((2, 3, 4), 0.25).tolist()  # 4 keys for 3 source tokens
    rejected(doc, r"\(cross, layer 0\): weights shape \(2, 3, 4\) does not match \(heads, 3 target tokens, "
                  r"3 source tokens\)")
    entry(doc, "cross")["weights"] = [[0.5, 0.5]]  # two dimensions, not three
    rejected(doc, r"weights shape \(1, 2\) does not match")


def test_rows_that_do_not_sum_to_1_are_refused(doc):
    row = entry(doc, "decoder_self", 1)["weights"][1][2]
    row[:] = [value * 0.8 for value in row]
    rejected(doc, r"\(decoder_self, layer 1\): row of head 1, query 2 \('chat'\) sums to 0\.8; "
                  r"every row must sum to 1 within 1e-05")


def test_all_zero_rows_need_permission(doc):
    entry(doc, "encoder_self")["weights"][0][2] = [0.0, 0.0, 0.0]
    rejected(doc, "sums to 0;")
    validate_attention_doc(doc, allow_zero_rows=True)


def test_negative_weights_are_refused(doc):
    entry(doc, "encoder_self")["weights"][1][0] = [1.25, -0.25, 0.0]
    rejected(doc, r"negative weight -0\.25 at head 1, query 0, key 1")


def test_nan_weights_are_refused(doc):
    entry(doc, "cross")["weights"][0][0][0] = float("nan")
    rejected(doc, "NaN or infinity")


def test_decoder_self_attention_to_the_future_is_refused(doc):
    entry(doc, "decoder_self")["weights"][0][0] = [0.5, 0.5, 0.0]
    rejected(doc, r"head 0, query 0 attends to future key 1")


def test_duplicate_layers_and_uneven_heads_are_refused(doc):
    duplicated = copy.deepcopy(doc)
    duplicated["attention"].append(copy.deepcopy(entry(doc, "cross")))
    rejected(duplicated, "duplicate entry for this kind and layer")
    entry(doc, "cross", 1)["weights"] = entry(doc, "cross", 1)["weights"][:1]
    rejected(doc, r"\(cross, layer 1\): has 1 heads but earlier cross layers have 2")


def test_attention_must_be_a_non_empty_list_of_objects(doc):
    rejected({**doc, "attention": []}, "attention must be a non-empty list")
    rejected({**doc, "attention": ["cross"]}, r"attention\[0\] must be an object, got str")
    rejected([doc], "must be a JSON object, got list")

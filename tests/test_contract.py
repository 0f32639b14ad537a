"""The helpers in contract.py can fail: each check rejects what breaks the contract it names."""

import sys

import pytest
import torch

from contract import check_bad_input, randomized, require_reference


def test_the_bad_input_check_accepts_one_error_line_and_nothing_written(tmp_path):
    assert check_bad_input(lambda: (2, "error: --steps must not be negative\n"), "--steps",
                           watch=[tmp_path, tmp_path / "absent"]) == "error: --steps must not be negative"


@pytest.mark.parametrize("code, err, why", [
    (1, "error: --steps must not be negative\n", "exit status 1"),
    (2, "error: --steps must not be negative\nTry --help.\n", "exactly one line"),
    (2, "\nerror: --steps must not be negative\n", "exactly one line"),
    (2, "error: --steps must not be negative", "exactly one line"),  # no newline: not a line
    (2, "warning: --steps must not be negative\n", "must start with 'error: '"),
    (2, "error: something else\n", "not in"),
    (2, "Traceback (most recent call last):\n", "traceback"),
])
def test_the_bad_input_check_rejects_every_other_output(code, err, why):
    with pytest.raises(AssertionError, match=why):
        check_bad_input(lambda: (code, err), "--steps")


@pytest.mark.parametrize("damage", ["create", "change", "remove", "mkdir"])
def test_the_bad_input_check_sees_any_file_written_changed_or_removed(tmp_path, damage):
    (tmp_path / "kept.txt").write_text("before")

    def run():
        if damage == "create":
            (tmp_path / "new.txt").write_text("")
        elif damage == "change":
            (tmp_path / "kept.txt").write_text("after!")
        elif damage == "remove":
            (tmp_path / "kept.txt").unlink()
        else:
            (tmp_path / "run").mkdir()  # an empty directory left behind counts too
        return 2, "error: bad\n"

    with pytest.raises(AssertionError, match="wrote, changed or removed"):
        check_bad_input(run, "bad", watch=[tmp_path])


def test_a_missing_reference_skips_locally_and_fails_in_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        require_reference("attnlab_no_such_reference")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        require_reference("attnlab_no_such_reference")
    assert require_reference("json") is sys.modules["json"]


def test_randomized_parameters_are_far_from_torchs_defaults_and_differ_between_calls():
    first, second = randomized(torch.nn.LayerNorm(64)), randomized(torch.nn.LayerNorm(64))
    assert (first.weight - 1).abs().mean() > 0.1 and first.bias.abs().mean() > 0.1
    assert not torch.equal(first.weight, second.weight)

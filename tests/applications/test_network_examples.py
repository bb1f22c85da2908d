"""The examples run and reach what they promise."""
import os
import runpy

import pytest

import fastnet as fn

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "examples")


def test_perceptron_logic_example(capsys):
    runpy.run_path(os.path.join(EXAMPLES, "perceptron_logic.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "perceptron_and=1" in out and "perceptron_xor=0.5" in out and "network_xor=1" in out


def test_digits_example_reaches_97_percent(tmp_path, capsys):
    pytest.importorskip("sklearn")
    digits = runpy.run_path(os.path.join(EXAMPLES, "digits.py"))
    accuracy = digits["main"](["--no-sklearn-baseline", "--save", str(tmp_path / "digits.fastnet")])
    assert accuracy >= 0.97
    assert "test accuracy" in capsys.readouterr().out
    assert fn.load(tmp_path / "digits.fastnet").n_features == 64

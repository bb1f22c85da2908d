"""The demo's last part: a pixel decoder trained on a Translator's representation, drawn and plotted."""
import os

import pytest

import fastnet
from fastnet.datasets import toy_pictures
from fastnet.demo import demo_pictures


def _translator(pictures):
    return fastnet.Translator.build(pictures.texts, {"sv": pictures.sv}, d_model=16, n_heads=2, n_layers=1,
                                    d_ff=32, tokenizer="word", seed=0)


def test_demo_pictures_saves_plots_and_reports_the_error(tmp_path):
    pytest.importorskip("matplotlib")
    lines = []
    tr = _translator(toy_pictures(96, seed=0, size=32))
    result = demo_pictures(print=lines.append, out_dir=tmp_path / "pics", translator=tr,
                           minutes=0.001, n_train=120, n_test=24, n_drawn=4)
    for key in ("pictures", "representations", "representations_csv", "history_plot"):
        assert os.path.getsize(result[key]) > 100
        assert any(result[key] in line for line in lines)
    assert open(result["pictures"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert 0 < result["mse"] and 0 < result["baseline_mse"]
    assert result["ratio"] == pytest.approx(result["mse"] / result["baseline_mse"])
    assert "pixels" in tr.trained


def test_the_old_name_still_works_with_a_deprecation_warning():
    with pytest.warns(DeprecationWarning, match="fastnet.demo.demo_pictures"):
        assert fastnet.image.demo_pictures is demo_pictures

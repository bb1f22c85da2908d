"""Real text: the example story and multi-file training on small slices of both Tatoeba files
(skipped where ../shared/data, or $FASTNET_DATA, lacks them)."""
import os
import runpy

import pytest

import fastnet as fn

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.environ.get("FASTNET_DATA", os.path.join(ROOT, "..", "shared", "data"))
SWEDISH = os.path.join(DATA, "tatoeba-eng-swe.tsv")
SPANISH = os.path.join(DATA, "tatoeba-eng-spa.tsv")

pytestmark = pytest.mark.skipif(not (os.path.exists(SWEDISH) and os.path.exists(SPANISH)),
                                reason="the Tatoeba pair files are not in ../shared/data")


def test_story_example_trains_both_decoders_on_slices_of_both_files(tmp_path, capsys):
    pytest.importorskip("sacrebleu")
    story = runpy.run_path(os.path.join(ROOT, "examples", "real_text_story.py"))
    with fn.threads(1):
        out = story["main"](["--minutes", "0.4", "--max-pairs", "1500", "--out", str(tmp_path)])
    result = out["result"]
    assert set(result["languages"]) == {"sv", "es"}
    for lang, scores in result["languages"].items():
        assert 700 < scores["n_train"] < 2000 and scores["n_test"] > 50, (lang, scores["n_train"])
        assert 0.0 <= scores["chrf"] <= 100.0
    tr = fn.load(out["model"])
    assert tr.languages == ["sv", "es"] and tr.trained == {"sv", "es"}
    for lang in ("sv", "es"):
        assert all(isinstance(t, str) and "<unk>" not in t for t in out["translations"][lang])
    assert len(out["options"]) == 3
    text = capsys.readouterr().out
    assert "held-out sv: chrF" in text and "held-out es: chrF" in text and "sv: " in text and "es: " in text
    pytest.importorskip("matplotlib")
    assert os.path.getsize(out["plot"]) > 1000

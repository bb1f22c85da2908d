"""Fixtures the application tests share: the small translator the service tests serve."""
import pytest

import fastnet


@pytest.fixture(scope="session")
def model_path(tmp_path_factory):
    """A tiny English -> sv/es translator (about 2 s on one thread), trained once per session and saved."""
    from fastnet.datasets import toy_translations
    from fastnet.seq2seq import Translator

    data = toy_translations(400, seed=0, split="train")
    targets = {"sv": data.sv, "es": data.es}
    tr = Translator.build(data.en, targets, seed=0, d_model=32, n_heads=2, n_layers=1, d_ff=64, dropout=0.0,
                          tokenizer="word")
    with fastnet.threads(1):  # multi-threaded regions stall on a loaded machine; this model is too small to gain
        tr.fit(data.en, targets, epochs=20, batch_size=32, lr=5e-3, verbose=0)
    path = tmp_path_factory.mktemp("serve") / "translator.safetensors"
    tr.save(path)
    return path


@pytest.fixture(scope="session")
def reference(model_path):
    """The same saved model loaded in the test process: what the service must answer."""
    return fastnet.load(model_path)

"""The service's model process: the same translations as the model in-process, a child that dies
is replaced, a child that cannot load is a clear error, and no child outlives its server."""
import os
import signal

import pytest

import fastnet

pytest.importorskip("starlette", reason="the serve extra (starlette) is not installed")
pytest.importorskip("uvicorn", reason="the serve extra (uvicorn) is not installed")
httpx = pytest.importorskip("httpx", reason="httpx (the test client) is not installed")

from fastnet.serve.model_process import InProcessModel, ModelProcess, ModelProcessError  # noqa: E402
from helpers import process_ended  # noqa: E402
from test_serve import SENTENCES, TIMEOUT, expected, post, serving  # noqa: E402


@pytest.fixture(scope="module")
def quantized(model_path):
    tr = fastnet.load(model_path)
    tr.quantize("int8")
    return tr


@pytest.mark.parametrize("kind", ["float32", "int8"])
def test_the_model_process_translates_as_the_translator_does(model_path, quantized, kind):
    """Greedy, beam and n-best lists, float32 and quantised: the child's model is the parent's, bit for bit."""
    translator = fastnet.load(model_path) if kind == "float32" else quantized
    model = ModelProcess(translator, threads=1)
    here = InProcessModel(translator)
    try:
        with fastnet.threads(1):
            for to, beam, n_best in (("sv", 1, 1), ("es", 1, 1), ("sv", 3, 1), ("es", 4, 3)):
                assert model.translate(SENTENCES, to, beam, n_best) == here.translate(SENTENCES, to, beam, n_best)
        pid = model.pid
    finally:
        model.close()
    assert process_ended(pid, TIMEOUT) and model.pid is None


def test_an_untranslatable_call_is_a_value_error_and_the_process_goes_on(model_path):
    model = ModelProcess(fastnet.load(model_path), threads=1)
    try:
        with pytest.raises(ValueError, match="max_len"):
            model.translate(["cats are cute " * 200], "sv")
        pid = model.pid
        assert model.translate(["cats are cute"], "sv") and model.pid == pid
    finally:
        model.close()


def test_a_model_process_that_cannot_load_is_a_clear_error(tmp_path):
    class NotAModel:
        def save(self, path):
            with open(path, "wb") as f:
                f.write(b"not a model file")
            return path

    model = ModelProcess(NotAModel(), threads=1)
    with pytest.raises(ModelProcessError, match="could not load the model"):
        model.wait_ready()
    model.close()
    with pytest.raises(ModelProcessError, match="closed"):
        model.translate(["cats are cute"], "sv")


def decoy_fastnet(folder):
    """A `fastnet` package in `folder` that cannot be imported, like a source checkout whose
    extension was never built (pip installed fastnet elsewhere); returns the folder."""
    (folder / "fastnet").mkdir(parents=True)
    (folder / "fastnet" / "__init__.py").write_text('raise ImportError("the fastnet of the working directory")\n')
    return folder


def test_the_model_process_imports_this_fastnet_whatever_its_working_directory_holds(model_path, monkeypatch,
                                                                                     tmp_path):
    """`python -c` puts the working directory first on sys.path: `fastnet serve` run from inside a
    source checkout started a child that imported the unbuilt checkout instead."""
    translator = fastnet.load(model_path)
    monkeypatch.chdir(decoy_fastnet(tmp_path))
    model = ModelProcess(translator, threads=1)
    try:
        with fastnet.threads(1):
            assert model.translate(SENTENCES, "sv") == InProcessModel(translator).translate(SENTENCES, "sv")
    finally:
        model.close()


def test_the_model_file_handed_to_the_child_is_deleted_once_loaded(model_path, monkeypatch, tmp_path):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    model = ModelProcess(fastnet.load(model_path), threads=1)
    try:
        model.wait_ready()
        assert list(tmp_path.iterdir()) == []
    finally:
        model.close()


def test_a_killed_model_process_is_replaced_and_the_server_keeps_translating(model_path, reference):
    with serving(model_path) as (url, server):
        model = server.config.app.state.service._model
        first = model.pid
        os.kill(first, signal.SIGKILL)
        assert process_ended(first, TIMEOUT)
        reply = post(url, {"texts": ["cats are cute"], "to": "sv"})  # found dead between calls: replaced first
        assert reply.status_code == 200
        assert reply.json()["translations"] == expected(reference, ["cats are cute"], "sv")
        assert model.pid not in (None, first)


def test_a_model_process_killed_while_translating_fails_that_batch_with_500_only(model_path, reference):
    translator = fastnet.load(model_path)
    model = ModelProcess(translator, threads=1)
    try:
        model.wait_ready()
        model._conn.send((SENTENCES, "sv", 1, 1))  # a call in progress, as the service makes it
        os.kill(model.pid, signal.SIGKILL)
        with pytest.raises(ModelProcessError, match=r"stopped \(exit status -9\) while translating"):
            model._receive("while translating")
        assert model.translate(["cats are cute"], "sv") == expected(reference, ["cats are cute"], "sv")
    finally:
        model.close()


def test_the_model_process_ignores_sigterm_until_its_server_has_stopped(model_path, reference):
    """A graceful shutdown still needs the model: the child leaves when the server closes it, not before."""
    with serving(model_path) as (url, server):
        pid = server.config.app.state.service._model.pid
        os.kill(pid, signal.SIGTERM)
        os.kill(pid, signal.SIGINT)
        reply = post(url, {"texts": ["dogs are big"], "to": "es"})
        assert reply.status_code == 200 and server.config.app.state.service._model.pid == pid
        assert reply.json()["translations"] == expected(reference, ["dogs are big"], "es")
    assert process_ended(pid, TIMEOUT)


def test_with_model_thread_the_server_runs_no_model_process(model_path, reference):
    with serving(model_path, model_process=False) as (url, server):
        assert isinstance(server.config.app.state.service._model, InProcessModel)
        reply = post(url, {"texts": ["birds are small"], "to": "sv"})
        assert reply.json()["translations"] == expected(reference, ["birds are small"], "sv")

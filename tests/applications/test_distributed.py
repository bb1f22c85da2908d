"""Data-parallel training on MPI: 2 ranks with global batch B update like 1 rank with batch B."""
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastnet

pytest.importorskip("mpi4py", reason="mpi4py is not installed (pip install 'fastnet[mpi]')")

TIMEOUT = 90.0
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fastnet.__file__)))

TRAIN = textwrap.dedent("""
    import os, sys
    import numpy as np
    import fastnet as fn
    from fastnet import distributed

    out, optimizer, die_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rng = np.random.default_rng(0)
    X = rng.standard_normal((203, 12)).astype(np.float32)
    y = (X[:, :3].sum(axis=1) > 0).astype(np.int64) + (X[:, 3] > 1)
    opt = fn.Adam(1e-2) if optimizer == "adam" else fn.SGD(0.1)
    rank, size = distributed.rank_and_size()
    # each rank builds its own initial weights: the broadcast must replace them with rank 0's
    net = fn.Network([fn.Dense(12, 16, activation="relu"), fn.Dense(16, 3)], loss="softmax_cross_entropy",
                     optimizer=opt, seed=rank)
    if die_at >= 0 and rank == size - 1:
        step = net.optimizer.step
        calls = [0]
        def dying_step(*args):
            calls[0] += 1
            if calls[0] > die_at:
                os._exit(7)  # a rank that dies without a word
            return step(*args)
        net.optimizer.step = dying_step
    with fn.threads(1):
        losses = distributed.fit(net, X, y, epochs=3, batch_size=32, seed=5, checkpoint=out + ".ckpt", verbose=1)
    np.save(out + f".rank{rank}.npy", net.store.data)
    print("losses", losses, flush=True)
""")


TRAIN_TRANSLATOR = textwrap.dedent("""
    import sys
    import numpy as np
    import fastnet as fn
    from fastnet import distributed
    from fastnet.datasets import toy_translations
    from fastnet.seq2seq.translator import Translator

    out, optimizer = sys.argv[1], sys.argv[2]
    rank, size = distributed.rank_and_size()
    data = toy_translations(120, seed=0, split="train")
    targets = {"sv": data.sv, "es": data.es}
    tr = Translator.build(data.en, targets, seed=rank, d_model=16, n_heads=2, n_layers=1, d_ff=32, dropout=0.0,
                          tokenizer="word")
    with fn.threads(1):
        distributed.fit_translator(tr, data.en, targets, epochs=2, batch_size=16, lr=3e-3, warmup=10, seed=3,
                                   optimizer=fn.SGD(0.2) if optimizer == "sgd" else None, checkpoint=out + ".ckpt")
    np.save(out + f".rank{rank}.npy", tr.store.data)
""")


TRAIN_IMAGE_DECODER = textwrap.dedent("""
    import sys
    import numpy as np
    import fastnet as fn
    from fastnet import distributed
    from fastnet.image import ImageDecoder

    out, optimizer = sys.argv[1], sys.argv[2]
    rank, size = distributed.rank_and_size()
    rng = np.random.default_rng(0)
    reps = rng.standard_normal((70, 8)).astype(np.float32)
    pictures = rng.integers(0, 256, (70, 4, 4, 3), dtype=np.uint8)
    dec = ImageDecoder(d_model=8, size=4, hidden=(16,), seed=rank)  # rank 0's weights are broadcast
    opt = fn.SGD(0.5) if optimizer == "sgd" else fn.Adam(1e-2)
    with fn.threads(1):
        distributed.fit(dec, reps, pictures, epochs=3, batch_size=16, seed=2, optimizer=opt,
                        checkpoint=out + ".ckpt")
    np.save(out + f".rank{rank}.npy", dec.store.data)
""")


TRAIN_TRANSLATOR_WITH_PIXELS = textwrap.dedent("""
    import sys
    import numpy as np
    import fastnet as fn
    from fastnet import distributed
    from fastnet.datasets import toy_translations
    from fastnet.image import ImageDecoder
    from fastnet.seq2seq.translator import Translator

    out, optimizer = sys.argv[1], sys.argv[2]
    rank, size = distributed.rank_and_size()
    data = toy_translations(90, seed=0, split="train")
    pictures = np.random.default_rng(1).integers(0, 256, (len(data.en), 4, 4, 3), dtype=np.uint8)
    tr = Translator.build(data.en, {"sv": data.sv}, seed=rank, d_model=16, n_heads=2, n_layers=1, d_ff=32,
                          dropout=0.0, tokenizer="word")
    tr.add_decoder("pixels", ImageDecoder(d_model=16, size=4, hidden=(8,), seed=rank), freeze_encoder=False)
    with fn.threads(1):
        distributed.fit_translator(tr, data.en, {"sv": data.sv, "pixels": pictures}, epochs=2, batch_size=16,
                                   seed=3, optimizer=fn.SGD(0.2) if optimizer == "sgd" else None,
                                   checkpoint=out + ".ckpt")
    np.save(out + f".rank{rank}.npy", tr.store.data)
""")


def _mpiexec():
    local = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return local if os.access(local, os.X_OK) else shutil.which("mpiexec")


def _train(tmp_path, name, ranks, optimizer="adam", die_at=-1, script_text=TRAIN):
    out = str(tmp_path / name)
    launcher = []
    if ranks > 1:
        mpiexec = _mpiexec()
        if mpiexec is None:
            pytest.skip("no mpiexec found (the mpich wheel provides one)")
        launcher = [mpiexec, "-n", str(ranks)]
    script_args = [out, optimizer, str(die_at)]
    script = tmp_path / "train.py"
    script.write_text(script_text)
    returncode, output = _run_script([*launcher, sys.executable, str(script), *script_args],
                                     "training (a rank hangs?)")
    return returncode, output, out


def _run_script(cmd, what):
    """(exit status, combined output) of cmd (one thread per process, this tree importable); the
    whole process group is killed and the test fails if it runs past TIMEOUT."""
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate(timeout=10)
        pytest.fail(f"{what} did not finish within {TIMEOUT} s:\n{output}")
    return proc.returncode, output


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_two_ranks_update_like_one_rank_with_the_whole_batch(tmp_path, optimizer):
    code1, log1, out1 = _train(tmp_path, "one", 1, optimizer)
    assert code1 == 0, log1
    code2, log2, out2 = _train(tmp_path, "two", 2, optimizer)
    assert code2 == 0, log2
    one = np.load(out1 + ".rank0.npy")
    two0, two1 = np.load(out2 + ".rank0.npy"), np.load(out2 + ".rank1.npy")
    np.testing.assert_array_equal(two0, two1)  # the ranks never drift apart
    np.testing.assert_allclose(two0, one, rtol=1e-4, atol=2e-5)
    assert not np.allclose(one, fastnet.Network([fastnet.Dense(12, 16, activation="relu"), fastnet.Dense(16, 3)],
                                                seed=0).store.data)  # it trained
    saved = fastnet.load(out2 + ".ckpt")  # rank 0 wrote the checkpoint
    np.testing.assert_array_equal(saved.store.data, two0)
    assert log2.count("epoch 3/3") == 1 and "2 rank(s)" in log2  # only rank 0 logs


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_translator_on_two_ranks_trains_like_on_one(tmp_path, optimizer):
    code1, log1, out1 = _train(tmp_path, "tr1", 1, optimizer, script_text=TRAIN_TRANSLATOR)
    assert code1 == 0, log1
    code2, log2, out2 = _train(tmp_path, "tr2", 2, optimizer, script_text=TRAIN_TRANSLATOR)
    assert code2 == 0, log2
    one = np.load(out1 + ".rank0.npy")
    two0, two1 = np.load(out2 + ".rank0.npy"), np.load(out2 + ".rank1.npy")
    np.testing.assert_array_equal(two0, two1)
    if optimizer == "sgd":
        np.testing.assert_allclose(two0, one, rtol=1e-4, atol=1e-5)
    else:
        # Adam turns rounding noise into steps of ~lr where the true gradient is exactly zero
        # (the attention key bias: softmax ignores a constant added to every key); elsewhere it agrees
        close = np.isclose(two0, one, rtol=1e-3, atol=1e-4)
        assert close.mean() > 0.99 and np.abs(two0 - one).max() < 2 * 3e-3 * 2
    saved = fastnet.load(out2 + ".ckpt")
    np.testing.assert_array_equal(saved.store.data, two0)
    assert saved.epochs_trained == 2 and log2.count("epoch 2/2") == 1


def _one_and_two_ranks(tmp_path, name, optimizer, script_text):
    code1, log1, out1 = _train(tmp_path, name + "1", 1, optimizer, script_text=script_text)
    assert code1 == 0, log1
    code2, log2, out2 = _train(tmp_path, name + "2", 2, optimizer, script_text=script_text)
    assert code2 == 0, log2
    two0, two1 = np.load(out2 + ".rank0.npy"), np.load(out2 + ".rank1.npy")
    np.testing.assert_array_equal(two0, two1)  # the ranks never drift apart
    return np.load(out1 + ".rank0.npy"), two0, out2


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_an_image_decoder_on_two_ranks_trains_like_on_one(tmp_path, optimizer):
    from fastnet.image import ImageDecoder

    one, two, out2 = _one_and_two_ranks(tmp_path, "img", optimizer, TRAIN_IMAGE_DECODER)
    np.testing.assert_allclose(two, one, rtol=1e-4, atol=2e-5)
    fresh = ImageDecoder(d_model=8, size=4, hidden=(16,), seed=0).store.data
    assert not np.allclose(one, fresh)  # it trained
    saved = fastnet.load(out2 + ".ckpt")
    assert isinstance(saved, ImageDecoder)
    np.testing.assert_array_equal(saved.store.data, two)


def test_a_translator_with_a_pixel_decoder_on_two_ranks_trains_like_on_one(tmp_path):
    one, two, out2 = _one_and_two_ranks(tmp_path, "trpix", "sgd", TRAIN_TRANSLATOR_WITH_PIXELS)
    np.testing.assert_allclose(two, one, rtol=1e-4, atol=1e-5)
    saved = fastnet.load(out2 + ".ckpt")
    assert sorted(saved.trained) == ["pixels", "sv"] and saved.epochs_trained == 2
    np.testing.assert_array_equal(saved.store.data, two)
    assert saved.draw("a cat").shape == (4, 4, 3)


def test_a_non_finite_translator_loss_applies_no_step(monkeypatch):
    from fastnet import distributed
    from fastnet.datasets import toy_translations
    from fastnet.seq2seq.translator import Translator

    data = toy_translations(32, seed=0, split="train")
    tr = Translator.build(data.en, {"sv": data.sv}, seed=0, d_model=8, n_heads=2, n_layers=1, d_ff=16,
                          dropout=0.0, tokenizer="word")
    real_forward_loss = tr.forward_loss

    def diverged(*args, **kwargs):
        _, stats = real_forward_loss(*args, **kwargs)  # gradients as usual, but the loss overflowed
        return float("inf"), stats

    monkeypatch.setattr(tr, "forward_loss", diverged)
    before = tr.store.data.copy()
    with pytest.raises(FloatingPointError, match="loss became inf.*not applied"):
        distributed.fit_translator(tr, data.en, {"sv": data.sv}, epochs=1, batch_size=16, verbose=0)
    np.testing.assert_array_equal(tr.store.data, before)


PAIRS_SCRIPT = textwrap.dedent("""
    import sys
    from fastnet import distributed
    scores = distributed.train_on_pairs(sys.argv[1], sys.argv[2], minutes=2, epochs=2, batch_size=16, lr=3e-3,
                                        d_model=16, n_heads=2, n_layers=1, d_ff=32, dropout=0.0)
    # one write per line: mpiexec merges the ranks' output, and print() writes its pieces separately
    sys.stdout.write(f"rank {distributed.rank_and_size()[0]} scores {None if scores is None else scores['ranks']}\\n")
    sys.stdout.flush()
""")


def test_train_on_pairs_runs_on_two_ranks_and_rank_0_saves(tmp_path):
    from fastnet.datasets import toy_translations

    data = toy_translations(150, seed=0, split="train")
    pairs = tmp_path / "toy-eng-swe.tsv"
    pairs.write_text("".join(f"{en}\t{sv}\n" for en, sv in zip(data.en, data.sv)), encoding="utf-8")
    script = tmp_path / "pairs.py"
    script.write_text(PAIRS_SCRIPT)
    mpiexec = _mpiexec()
    if mpiexec is None:
        pytest.skip("no mpiexec found (the mpich wheel provides one)")
    model = tmp_path / "model.safetensors"
    returncode, log = _run_script([mpiexec, "-n", "2", sys.executable, str(script), str(pairs), str(model)],
                                  "train_on_pairs")
    assert returncode == 0, log
    assert "rank 0 scores 2" in log and "rank 1 scores None" in log
    assert log.count("held-out sv") == 1 and log.count("epoch 2/2") == 1
    tr = fastnet.load(model)
    assert tr.languages == ["sv"] and tr.epochs_trained == 2
    assert isinstance(tr.translate("cats are cute", to="sv"), str)


def test_launched_by_mpi_reads_the_launchers_environment(monkeypatch):
    from fastnet import distributed

    for name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"):
        monkeypatch.delenv(name, raising=False)
    assert not distributed.launched_by_mpi()
    monkeypatch.setenv("PMI_SIZE", "1")
    assert not distributed.launched_by_mpi()
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    assert distributed.launched_by_mpi()


def test_a_dying_rank_ends_the_run_with_an_error_instead_of_a_hang(tmp_path):
    code, log, _ = _train(tmp_path, "dies", 2, die_at=2)
    # The launcher ends the surviving rank and exits with the status of the first rank it reaps:
    # the dead one's 7, or (a race seen in CI) 9 for the survivor it has just killed with SIGKILL.
    assert code in (7, 9), log
    assert "losses" not in log


def test_bad_arguments_are_refused():
    from fastnet import distributed

    net = fastnet.Network([fastnet.Dense(2, 2)], loss="mse", seed=0)
    X, y = np.zeros((4, 2), np.float32), np.zeros((4, 2), np.float32)
    with pytest.raises(ValueError, match="batch_size"):
        distributed.fit(net, X, y, batch_size=0)
    with pytest.raises(ValueError, match="epochs"):
        distributed.fit(net, X, y, epochs=-1)


def test_an_optimizer_without_gradients_is_refused_and_leaves_the_model_as_it_was():
    from fastnet import distributed

    X, y = np.zeros((4, 2), np.float32), np.zeros((4, 2), np.float32)
    net = fastnet.Network([fastnet.Dense(2, 2)], loss="mse", optimizer=fastnet.SGD(0.1), seed=0)
    with pytest.raises(ValueError, match="RandomSearch needs a loss closure"):
        distributed.fit(net, X, y, optimizer=fastnet.RandomSearch(0.1))
    assert isinstance(net.optimizer, fastnet.SGD)
    net = fastnet.Network([fastnet.Dense(2, 2)], loss="mse", optimizer=fastnet.RandomSearch(0.1), seed=0)
    with pytest.raises(ValueError, match="needs a loss closure"):
        distributed.fit(net, X, y)


def test_the_time_budget_stops_training_after_the_step_it_runs_out():
    from fastnet import distributed
    from fastnet.datasets import toy_translations
    from fastnet.seq2seq.translator import Translator

    data = toy_translations(64, seed=0, split="train")
    tr = Translator.build(data.en, {"sv": data.sv}, seed=0, d_model=16, n_heads=2, n_layers=1, d_ff=32,
                          dropout=0.0, tokenizer="word")
    before = tr.store.data.copy()
    with fastnet.threads(1):
        losses = distributed.fit_translator(tr, data.en, {"sv": data.sv}, epochs=5, batch_size=16,
                                            max_minutes=1e-9, verbose=0)
    assert len(losses) == 1 and tr.epochs_trained == 1
    assert not np.array_equal(before, tr.store.data)  # the one step it took did update the weights

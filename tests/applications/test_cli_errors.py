"""The `fastnet` command against user mistakes: one line naming the problem,
exit status 2, no traceback, and no work done before the mistake is found."""
import math
import os
import threading

import numpy as np
import pytest

import fastnet as fn
from fastnet import cli
from fastnet.datasets import toy_translations
from fastnet.seq2seq import Translator


def run(capsys, *argv):
    """(exit status, stdout, stderr) of `fastnet argv...` run in this process."""
    try:
        status = cli.main(list(argv))
    except SystemExit as exit_:
        status = exit_.code
    out, err = capsys.readouterr()
    return status, out, err


def one_line_error(err, *needles):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture(scope="module")
def network_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "net.fastnet"
    fn.Network([fn.Dense(2, 2)], seed=0).save(path)
    return path


@pytest.fixture(scope="module")
def two_language_model(tmp_path_factory):
    pairs = toy_translations(80, seed=0, split="train")
    tr = Translator.build(pairs.en, {"es": pairs.es, "sv": pairs.sv}, seed=0, d_model=16, n_heads=2, n_layers=1,
                          d_ff=32, dropout=0.0, tokenizer="word")
    with fn.threads(1):
        tr.fit(pairs.en, {"es": pairs.es, "sv": pairs.sv}, epochs=1, batch_size=40, verbose=0)
    path = tmp_path_factory.mktemp("cli") / "tr.fastnet"
    tr.save(path)
    return path, tr


@pytest.mark.parametrize("command", ["translate", "serve"])
def test_translate_and_serve_on_a_network_file_name_the_problem(capsys, network_file, command):
    argv = [command, str(network_file)] + (["cats are cute"] if command == "translate" else [])
    status, _, err = run(capsys, *argv)
    assert status == 2
    one_line_error(err, "holds a Network, not a Translator")


@pytest.mark.parametrize("argv, needle", [
    (["serve", "m", "--port", "70000"], "--port: must be a finite number from 0 to 65535, got '70000'"),
    (["serve", "m", "--port", "-1"], "--port: must be a finite number from 0 to 65535, got '-1'"),
    (["serve", "m", "--port", "http"], "--port: 'http' is not an integer"),
    (["serve", "m", "--beam", "0"], "--beam: must be a finite number from 1 to 64, got '0'"),
    (["translate", "m", "x", "--beam", "0"], "--beam: must be a finite number from 1 to 64"),
    (["serve", "m", "--threads", "0"], "--threads: must be a finite number > 0"),
    (["serve", "m", "--max-texts", "0"], "--max-texts: must be a finite number > 0"),
    (["demo", "--minutes", "0"], "--minutes: must be a finite number > 0, got '0'"),
    (["train-translator", "p.tsv", "--out", "m.fn", "--minutes", "-1"], "--minutes: must be a finite number > 0"),
    (["train-translator", "p.tsv", "--out", "m.fn", "--minutes", "nan"], "--minutes: must be a finite number > 0"),
    (["train-translator", "p.tsv", "--out", "m.fn", "--language-temperature", "0.5"],
     "--language-temperature: must be a finite number >= 1, got '0.5'"),
    (["train-translator", "p.tsv", "--out", "m.fn", "--language-temperature", "nan"],
     "--language-temperature: must be a finite number >= 1"),
])
def test_options_are_validated_at_parse_time(capsys, argv, needle):
    status, _, err = run(capsys, *argv)
    assert status == 2
    one_line_error(err, needle)


@pytest.mark.parametrize("given, expected", [([], None), (["--language-temperature", "inf"], math.inf),
                                             (["--language-temperature", "5"], 5.0)])
def test_language_temperature_option(given, expected):
    args = cli.build_parser().parse_args(["train-translator", "p.tsv", "--out", "m.fn", *given])
    assert args.language_temperature == expected  # None: train_on_pairs' default, equal shares


def test_translate_without_to_uses_the_models_first_language(capsys, two_language_model):
    path, tr = two_language_model
    status, out, err = run(capsys, "translate", str(path), "cats are cute")
    assert status == 0, err
    assert out.strip() == tr.translate("cats are cute", to=tr.languages[0])
    status, _, err = run(capsys, "translate", str(path), "cats are cute", "--to", "fi")
    assert status == 2
    one_line_error(err, "--to 'fi'", "es, sv")


@pytest.mark.parametrize("bad_out", ["missing-folder/model.fastnet", "."])
def test_bad_out_is_refused_before_any_training(capsys, tmp_path, monkeypatch, bad_out):
    from fastnet.demo import translation

    def must_not_train(*args, **kwargs):
        raise AssertionError("training started before --out was checked")

    monkeypatch.setattr(translation, "train_on_pairs", must_not_train)
    monkeypatch.chdir(tmp_path)
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("a cat\tkatt\n", encoding="utf-8")
    status, _, err = run(capsys, "train-translator", str(pairs), "--out", bad_out)
    assert status == 2
    one_line_error(err, "--out")
    assert np.all([not p.suffix == ".fastnet" for p in tmp_path.iterdir()])


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX FIFOs")
def test_train_translator_on_a_fifo_nobody_writes_to_fails_at_once(capsys, tmp_path):
    fifo = tmp_path / "pairs.tsv"
    os.mkfifo(fifo)
    outcome = []
    worker = threading.Thread(target=lambda: outcome.append(
        run(capsys, "train-translator", f"sv={fifo}", "--out", str(tmp_path / "m.fastnet"), "--minutes", "0.01")),
        daemon=True)
    worker.start()
    worker.join(30)
    if worker.is_alive():
        with open(fifo, "wb"):  # let the blocked reader go before failing
            pass
        pytest.fail("train-translator blocked on a FIFO")
    status, _, err = outcome[0]
    assert status == 2 and "Traceback" not in err, err
    assert "pairs.tsv" in err and not (tmp_path / "m.fastnet").exists()


def test_train_translator_refuses_a_device_as_pair_file(capsys, tmp_path):
    if not os.path.exists("/dev/zero"):
        pytest.skip("needs /dev/zero")
    status, _, err = run(capsys, "train-translator", "sv=/dev/zero", "--out", str(tmp_path / "m.fastnet"))
    assert status == 2
    one_line_error(err, "device")

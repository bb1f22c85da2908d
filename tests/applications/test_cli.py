"""The `fastnet` command, run as a user would run it."""
import contextlib
import importlib.util
import os
import re
import subprocess
import sys

import pytest

import fastnet
from fastnet import cli
from fastnet.datasets import toy_translations


def run_fastnet(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "fastnet.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_help_lists_every_command():
    out = run_fastnet("--help").stdout
    for command in ("demo", "config", "train-translator", "translate", "draw", "serve"):
        assert command in out


def test_config_shows_the_cpu_path():
    result = run_fastnet("config")
    assert result.returncode == 0
    assert "cpu path" in result.stdout and "openmp" in result.stdout


def test_missing_model_is_a_clear_error_not_a_traceback(tmp_path):
    result = run_fastnet("translate", str(tmp_path / "nope.safetensors"), "cats are cute")
    assert result.returncode == 2
    assert "nope.safetensors" in result.stderr and "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    data = toy_translations(600, seed=3, split="train")
    pairs = folder / "eng-swe.tsv"
    pairs.write_text("".join(f"{en}\t{sv}\tattribution\n" for en, sv in zip(data.en, data.sv)), encoding="utf-8")
    model = folder / "model.safetensors"
    result = run_fastnet("train-translator", str(pairs), "--out", str(model), "--minutes", "0.15")
    assert result.returncode == 0, result.stderr
    assert f"saved {model}" in result.stdout
    samples = result.stdout.split("held-out samples (English -> translation  [reference]):\n")[1].splitlines()
    assert len(samples) >= 3 and all(" -> " in line and line.endswith("]") for line in samples)
    assert {line.strip().split(" -> ")[0] for line in samples} <= set(data.en)  # held-out English, as given
    return model


def test_train_translator_in_bf16_saves_a_float32_file_that_translates_in_bf16(tmp_path):
    data = toy_translations(200, seed=5, split="train")
    pairs = tmp_path / "eng-spa.tsv"
    pairs.write_text("".join(f"{en}\t{es}\n" for en, es in zip(data.en, data.es)), encoding="utf-8")
    model = tmp_path / "bf16.safetensors"
    result = run_fastnet("train-translator", str(pairs), "--out", str(model), "--minutes", "0.05",
                         "--precision", "bf16")
    assert result.returncode == 0, result.stderr
    tr = fastnet.load(model)
    assert tr.precision == "bf16" and tr.languages == ["es"]
    assert {a.dtype.name for a in tr.state_arrays().values()} == {"float32"}
    assert tr.translate("cats are cute", to="es").strip()
    result = run_fastnet("train-translator", str(pairs), "--out", str(model), "--precision", "fp16")
    assert result.returncode == 2 and "--precision: invalid choice: 'fp16'" in result.stderr


_TRAINING_STEPS_FAULTS = """
import resource, sys
import numpy as np
import fastnet as fn
from fastnet import cli
from fastnet.seq2seq import Decoder, Encoder

if sys.argv[1] == "keep":
    assert cli.keep_freed_memory()
arch = dict(d_model=128, n_heads=4, n_layers=2, d_ff=512, max_len=32, dropout=0.1)
enc, dec = Encoder(64, seed=0, **arch), Decoder(64, seed=1, **arch)
store = fn.layers.base.ParameterStore([enc, dec])
opt = fn.Adam(1e-3)
opt.bind(store)
rng = np.random.default_rng(0)
src, tgt = rng.integers(4, 64, (32, 20)), rng.integers(4, 64, (32, 21))
tgt[:, 0] = 1


def step():
    store.zero_grad()
    mask = src == 0
    dec.loss(enc.forward(src, mask, training=True), mask, tgt, training=True, label_smoothing=0.1)
    enc.backward(dec.backward_loss())
    opt.step()


with fn.threads(1):
    for _ in range(3):
        step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or not os.confstr("CS_GNU_LIBC_VERSION"),
                    reason="glibc's malloc")
def test_keep_freed_memory_stops_the_page_faults_of_training_steps():
    # Ten translator training steps (d_model 128, batch 32, length 20): glibc handed their freed
    # temporaries back to the OS and the kernel faulted them in again (3620 page faults here; kept: 491).
    faults = {}
    for mode in ("default", "keep"):
        result = subprocess.run([sys.executable, "-c", _TRAINING_STEPS_FAULTS, mode], capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        faults[mode] = int(result.stdout)
    assert 4 * faults["keep"] < faults["default"], faults


@pytest.mark.parametrize("command", ["demo", "train-translator"])
def test_the_training_commands_keep_freed_memory(command, monkeypatch, capsys, tmp_path):
    def kept():
        raise ValueError("kept freed memory")  # stops the command before it trains

    monkeypatch.setattr(cli, "keep_freed_memory", kept)
    out = str(tmp_path / "out")
    argv = ["demo", "--out", out] if command == "demo" else ["train-translator", "pairs.tsv", "--out", out + ".st"]
    assert cli.main(argv) == 2
    assert "kept freed memory" in capsys.readouterr().err


def test_train_translator_then_translate(trained_model):
    result = run_fastnet("translate", str(trained_model), "cats are cute", "the dog is big")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2 and all(line.strip() for line in lines)


def test_draw_without_a_pixel_decoder_says_so(trained_model, tmp_path):
    result = run_fastnet("draw", str(trained_model), "a big red circle", "-o", str(tmp_path / "x.png"))
    assert result.returncode == 2
    assert "pixel" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "x.png").exists()


def test_demo_tells_the_whole_story(tmp_path, capsys):
    assert cli.main(["demo", "--minutes", "0.1", "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "67 65 84 83 32 65 82 69 32 67 85 84 69" in out  # "CATS ARE CUTE" in ASCII
    for heading in ("1. Text becomes numbers", "2. A perceptron", "3. Training on batches",
                    "4. An Encoder and two Decoders", "5. The same representation"):
        assert heading in out
    assert '"cats are cute" in Swedish' in out and '"cats are cute" in Spanish' in out
    pngs = list((tmp_path / "demo").glob("*.png"))
    assert pngs and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    # The demo leaves its translator, with the Swedish, Spanish and pixel decoders, and says how to serve it.
    model_path = tmp_path / "demo" / "model.safetensors"
    model = fastnet.load(model_path)
    assert list(model.decoders) == ["sv", "es", "pixels"] and model.trained >= {"sv", "es", "pixels"}
    assert model.draw("a big red circle").shape == (32, 32, 3)
    assert f"  fastnet serve {model_path}\n" in out
    if importlib.util.find_spec("uvicorn") is None:
        return
    # The command it prints serves the whole story: both languages and the picture.
    command = next(line.split()[1:] for line in out.splitlines() if line.startswith("  fastnet serve "))
    with serving(command) as (base, health, _):
        assert health["languages"] == ["sv", "es"] and health["has_pictures"] is True
        kind, png = post_json(base + "/draw", {"text": "a big red circle"})
        assert kind == "image/png" and png[:8] == b"\x89PNG\r\n\x1a\n"


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(command):
    """`fastnet serve ...` (command: the arguments after `fastnet`) in its own process; yields (base URL, /health,
    the server's pid)."""
    import json
    import time
    import urllib.request

    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "fastnet.cli", *command, "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                health = json.load(urllib.request.urlopen(base + "/health", timeout=2))
                break
            except OSError:
                assert server.poll() is None, "the server exited"
                assert time.monotonic() < deadline, "the server did not come up within 60 s"
                time.sleep(0.2)
        yield base, health, server.pid
    finally:
        server.terminate()
        server.wait(timeout=30)


def post_json(url, payload):
    import json
    import urllib.request

    request = urllib.request.Request(url, data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as reply:
        return reply.headers.get("Content-Type"), reply.read()


def _child_pids(pid):
    path = f"/proc/{pid}/task/{pid}/children"
    if not os.path.exists(path):
        pytest.skip("needs Linux's /proc to see the server's child processes")
    with open(path) as f:
        return [int(pid) for pid in f.read().split()]


@pytest.mark.parametrize("options, model_processes", [([], 1), (["--model-thread"], 0)])
def test_serve_answers_health_and_translate(trained_model, options, model_processes):
    """By default the model runs in a child process of the server; --model-thread keeps it on a thread."""
    pytest.importorskip("uvicorn")
    import json

    with serving(["serve", str(trained_model), *options]) as (base, health, pid):
        assert health["status"] == "ok"
        _, body = post_json(base + "/translate", {"texts": ["cats are cute"], "to": health["languages"][0]})
        reply = json.loads(body)
        assert len(reply["translations"]) == 1 and reply["translations"][0].strip()
        assert len(_child_pids(pid)) == model_processes


def test_a_model_process_does_not_outlive_its_killed_server(trained_model):
    """SIGKILL gives the server no chance to stop its child: the child sees its connection close and exits."""
    pytest.importorskip("uvicorn")
    import signal

    from helpers import process_ended

    with serving(["serve", str(trained_model)]) as (_, _, pid):
        (child,) = _child_pids(pid)
        os.kill(pid, signal.SIGKILL)
        assert process_ended(child, 30.0), "the model process outlived its server"


def test_mpirun_train_translator_is_data_parallel(tmp_path):
    import shutil
    import signal

    pytest.importorskip("mpi4py")
    local = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    mpiexec = local if os.access(local, os.X_OK) else shutil.which("mpiexec")
    if mpiexec is None:
        pytest.skip("no mpiexec found (the mpich wheel provides one)")
    data = toy_translations(300, seed=4, split="train")
    pairs = tmp_path / "eng-swe.tsv"
    pairs.write_text("".join(f"{en}\t{sv}\n" for en, sv in zip(data.en, data.sv)), encoding="utf-8")
    model = tmp_path / "model.safetensors"
    proc = subprocess.Popen([mpiexec, "-n", "2", sys.executable, "-m", "fastnet.cli", "train-translator", str(pairs),
                             "--out", str(model), "--minutes", "0.1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        output, _ = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("mpirun train-translator did not finish within 300 s")
    assert proc.returncode == 0, output
    assert output.count(f"saved {model}") == 1  # rank 0 alone saves and reports
    import fastnet

    # At least one data-parallel epoch ran; an undertrained model may stop at
    # once (an empty translation), so only the type of the answer is checked.
    assert re.search(r"^epoch 1/\d+: loss \d+\.\d+", output, re.M), output
    assert isinstance(fastnet.load(model).translate(["cats are cute"])[0], str)

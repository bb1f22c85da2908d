"""Model-file fuzzing: truncations, byte flips and metadata edits of a saved
Network, a Translator with word tokenizers and one with SentencePiece models
(stored in its metadata), with hypothesis: a bounded number of cases in CI,
FASTNET_FUZZ_EXAMPLES raises it.

Every case must give ModelFileError or the identical model -- never another
exception, a hang, an allocation beyond a small multiple of the file size
(8x + 24 MiB), or a different model. Edits come two ways: as they are (the
whole-file checksum must catch them), and re-sealed with a valid checksum, as
a deliberate editor would, so the checks behind the checksum (tensor table,
architecture bounds, metadata types, the SentencePiece parser) are exercised
too; a re-sealed edit may load, as the model its metadata now describes, but
still within the same time and memory bounds.
"""
import json
import os
import struct
import time
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastnet as fn
from fastnet import io
from fastnet.datasets import toy_translations
from fastnet.seq2seq import Translator

# 40 cases per test and model kind in CI (480 files in all); FASTNET_FUZZ_EXAMPLES=2500 for a long run.
FUZZ = settings(max_examples=int(os.environ.get("FASTNET_FUZZ_EXAMPLES", "40")), deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
SLACK = 24 << 20  # bytes any load may use beyond a few times the file (interpreter objects, tables)


def _network_bytes(tmp):
    net = fn.Network([fn.Dense(4, 8, activation="relu"), fn.Dense(8, 3)], optimizer=fn.Adam(1e-2), seed=0)
    rng = np.random.default_rng(0)
    net.fit(rng.standard_normal((16, 4)), rng.integers(0, 3, 16), epochs=1, batch_size=8, verbose=0)
    net.save(tmp / "net.fastnet")
    return (tmp / "net.fastnet").read_bytes()


def _translator_bytes(tmp):
    pairs = toy_translations(40, seed=0, split="train")
    tr = Translator.build(pairs.en, {"sv": pairs.sv}, seed=0, d_model=8, n_heads=2, n_layers=1, d_ff=16,
                          dropout=0.0, tokenizer="word")
    tr.save(tmp / "tr.fastnet")
    return (tmp / "tr.fastnet").read_bytes()


def _subword_translator_bytes(tmp):
    """A translator whose tokenizers are SentencePiece models, stored (base64) in the metadata."""
    pairs = toy_translations(200, seed=0, split="train")
    tr = Translator.build(pairs.en, {"sv": pairs.sv}, seed=0, d_model=8, n_heads=2, n_layers=1, d_ff=16,
                          dropout=0.0, tokenizer="subword", vocab_size=320)
    tr.save(tmp / "sw.fastnet")
    return (tmp / "sw.fastnet").read_bytes()


KINDS = {"network": _network_bytes, "translator": _translator_bytes, "subword-translator": _subword_translator_bytes}


@pytest.fixture(scope="module", params=sorted(KINDS))
def saved(request, tmp_path_factory):
    """(file bytes, a fingerprint of the model they hold)."""
    tmp = tmp_path_factory.mktemp("fuzz")
    blob = KINDS[request.param](tmp)
    path = tmp / "original.fastnet"
    path.write_bytes(blob)
    return blob, fingerprint(fn.load(path))


def fingerprint(model):
    """Everything that defines a loaded model: its weights and its configuration."""
    if isinstance(model, Translator):
        arrays, config = model.state_arrays(), model.config()
    else:
        arrays, config = model.store.named_arrays(), model.architecture()
    return json.dumps(config, sort_keys=True), {k: (a.dtype.str, a.shape, a.tobytes()) for k, a in arrays.items()}


def load_bounded(blob, tmp_path):
    """(model or ModelFileError) of blob, checking time and peak memory; other exceptions propagate."""
    path = tmp_path / "case.fastnet"
    path.write_bytes(bytes(blob))
    start = time.perf_counter()
    tracemalloc.start()
    try:
        try:
            result = fn.load(path)
        except io.ModelFileError as exc:
            result = exc
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * len(blob) + SLACK, f"a {len(blob)}-byte file took {peak} bytes to load"
    assert time.perf_counter() - start < 20, "loading took too long"
    return result


def assert_error_or_identical(result, original):
    if not isinstance(result, io.ModelFileError):
        assert fingerprint(result) == original, "a damaged file loaded as a different model"


# ---- the file split into header and metadata, and put back together -------------------------

def split(blob):
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    return header, json.loads(header["__metadata__"]["fastnet"]), bytes(blob[8 + n:])


def join(header, meta, data, reseal):
    header = json.loads(json.dumps(header))
    header["__metadata__"]["fastnet"] = json.dumps(meta, sort_keys=True)
    if reseal:
        header["__metadata__"]["fastnet_file_sha256"] = "0" * 64
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    blob = bytearray(struct.pack("<Q", len(raw)) + raw + data)
    return io._seal(blob) if reseal else blob


def leaves(node, path=()):
    """Every (path, value) in a JSON tree, containers included."""
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from leaves(value, path + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from leaves(value, path + (i,))


INTERESTING_INTS = st.sampled_from([-(2**63), -1, 0, 1, 2, 3, 7, 3000, 10**6, 10**12, 2**31, 2**63 - 1, 2**64])
DTYPE_NAMES = st.sampled_from(["F16", "F32", "F64", "BF16", "I8", "U8", "I64", "BOOL", "float16", "float64",
                               "int8", "complex64", "object", "", "F32 "])


def mutate(draw, tree):
    """Change one node of a JSON tree in place: numbers (sizes, shapes, n_layers), strings
    (vocabulary entries, dtypes, names), lists (shapes, vocabularies) and objects (keys)."""
    nodes = [(p, v) for p, v in leaves(tree) if p]
    path, value = draw(st.sampled_from(nodes))
    parent = tree
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    if isinstance(value, bool):
        parent[key] = draw(st.sampled_from([not value, 0, None, "true"]))
    elif isinstance(value, int):
        parent[key] = draw(st.one_of(INTERESTING_INTS, st.integers(value - 3, value + 3), st.just(float(value) + 0.5)))
    elif isinstance(value, float):
        parent[key] = draw(st.sampled_from([0.0, -1.0, 1e308, value * 2, "x"]))
    elif isinstance(value, str):
        options = [DTYPE_NAMES, st.text(max_size=8), st.just(value[::-1])]
        if len(value) > 16:  # one character of a long string (a base64 SentencePiece model, say) changed
            at = draw(st.integers(0, len(value) - 1))
            options.append(st.sampled_from("AQgw+/09=").map(lambda c: value[:at] + c + value[at + 1:]))
        parent[key] = draw(st.one_of(*options))
    elif isinstance(value, list):
        parent[key] = draw(st.sampled_from([value[:-1], value + value[-1:], value[::-1], [], None, {}]))
    elif isinstance(value, dict):
        if value and draw(st.booleans()):
            del value[draw(st.sampled_from(sorted(value)))]
        else:
            parent[key] = draw(st.sampled_from([[], None, "x", 0]))
    else:
        parent[key] = draw(st.sampled_from([0, "x", [], {}]))


# ---- the cases -----------------------------------------------------------------------------

@FUZZ
@given(data=st.data())
def test_truncated_files_give_model_file_error(saved, tmp_path, data):
    blob, original = saved
    keep = data.draw(st.integers(0, len(blob) - 1))
    assert isinstance(load_bounded(blob[:keep], tmp_path), io.ModelFileError)


@FUZZ
@given(data=st.data())
def test_flipped_bytes_give_model_file_error_or_the_same_model(saved, tmp_path, data):
    blob, original = saved
    damaged = bytearray(blob)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(blob) - 1))
        damaged[at] ^= data.draw(st.integers(1, 255))
    assert_error_or_identical(load_bounded(damaged, tmp_path), original)


@FUZZ
@given(data=st.data(), reseal=st.booleans())
def test_metadata_edits_give_model_file_error_or_load_within_bounds(saved, tmp_path, data, reseal):
    blob, original = saved
    header, meta, body = split(blob)
    mutate(data.draw, meta)
    result = load_bounded(join(header, meta, body, reseal), tmp_path)
    if not reseal:
        assert_error_or_identical(result, original)


@FUZZ
@given(data=st.data(), reseal=st.booleans())
def test_tensor_table_edits_give_model_file_error_or_the_same_model(saved, tmp_path, data, reseal):
    """Shapes, dtypes and offsets of the tensors: even re-sealed, they never load another model."""
    blob, original = saved
    header, meta, body = split(blob)
    table = {name: entry for name, entry in header.items() if name != "__metadata__"}
    mutate(data.draw, table)
    header = {"__metadata__": header["__metadata__"], **table}
    assert_error_or_identical(load_bounded(join(header, meta, body, reseal), tmp_path), original)

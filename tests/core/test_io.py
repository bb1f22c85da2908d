"""Model files: atomic writes, clear errors for missing, truncated, corrupted and mismatched files."""
import json
import os
import struct

import numpy as np
import pytest

import fastnet as fn
from fastnet import io


def tensors():
    return {"a": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.array([1, 2, 3], dtype=np.int64)}


def test_round_trip_keeps_tensors_and_metadata(tmp_path):
    path = tmp_path / "m.safetensors"
    io.save_safetensors_atomic(path, tensors(), {"fastnet_kind": "test", "nested": {"x": [1, 2.5]}})
    loaded, meta = io.load_safetensors_checked(path)
    assert meta == {"fastnet_kind": "test", "nested": {"x": [1, 2.5]}}
    for name, arr in tensors().items():
        assert loaded[name].dtype == arr.dtype
        np.testing.assert_array_equal(loaded[name], arr)
    assert os.listdir(tmp_path) == ["m.safetensors"]  # no temporary file left behind


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_saved_file_has_ordinary_permissions(tmp_path):
    path = tmp_path / "m.fn"
    umask = os.umask(0o022)
    try:
        io.save_safetensors_atomic(path, tensors(), {})
        assert path.stat().st_mode & 0o777 == 0o644          # not mkstemp's owner-only 0600
        path.chmod(0o640)
        io.save_safetensors_atomic(path, tensors(), {})
        assert path.stat().st_mode & 0o777 == 0o640          # replacing a file keeps its permissions
    finally:
        os.umask(umask)


def test_empty_scalar_and_bool_tensors(tmp_path):
    path = tmp_path / "m.fn"
    odd = {"empty": np.zeros((0, 3), np.float32), "scalar": np.array(3.5), "flags": np.array([True, False])}
    io.save_safetensors_atomic(path, odd, {})
    loaded, _ = io.load_safetensors_checked(path)
    for name, arr in odd.items():
        assert loaded[name].shape == arr.shape and loaded[name].dtype == arr.dtype
        np.testing.assert_array_equal(loaded[name], arr)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.fn.*does not exist"):
        io.load_safetensors_checked(tmp_path / "nope.fn")
    with pytest.raises(IsADirectoryError, match="is a directory"):
        io.load_safetensors_checked(tmp_path)
    with pytest.raises(FileNotFoundError, match="directory .* does not exist"):
        io.save_safetensors_atomic(tmp_path / "sub" / "m.fn", tensors(), {})


@pytest.mark.parametrize("keep", [0, 5, 8, 20, -1])
def test_truncated_file_names_file_and_fault(tmp_path, keep):
    path = tmp_path / "m.fn"
    io.save_safetensors_atomic(path, tensors(), {"fastnet_kind": "test"})
    blob = path.read_bytes()
    path.write_bytes(blob[:keep] if keep >= 0 else blob[:-7])
    with pytest.raises(io.ModelFileError, match=r"m\.fn.*truncated"):
        io.load_safetensors_checked(path)


def test_corrupted_header_and_data(tmp_path):
    path = tmp_path / "m.fn"
    io.save_safetensors_atomic(path, tensors(), {"fastnet_kind": "test"})
    blob = bytearray(path.read_bytes())
    header_len = struct.unpack("<Q", blob[:8])[0]
    broken = bytearray(blob)
    broken[8] = ord("!")
    path.write_bytes(bytes(broken))
    with pytest.raises(io.ModelFileError, match="header is not valid JSON"):
        io.load_safetensors_checked(path)
    flipped = bytearray(blob)
    flipped[8 + header_len + 5] ^= 0xFF  # one bit pattern inside tensor 'a'
    path.write_bytes(bytes(flipped))
    with pytest.raises(io.ModelFileError, match="do not match the checksum"):
        io.load_safetensors_checked(path)
    path.write_bytes(b"this is not a model file at all, just text")
    with pytest.raises(io.ModelFileError, match="truncated or not a safetensors file"):
        io.load_safetensors_checked(path)


def test_foreign_safetensors_file_is_refused(tmp_path):
    import safetensors.numpy

    path = tmp_path / "other.safetensors"
    safetensors.numpy.save_file({"x": np.zeros(3, dtype=np.float32)}, str(path))
    with pytest.raises(io.ModelFileError, match="not a fastnet model file"):
        io.load_safetensors_checked(path)


def test_interrupted_save_leaves_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "m.fn"
    io.save_safetensors_atomic(path, tensors(), {"fastnet_kind": "test", "version": 1})
    before = path.read_bytes()

    def write_half_then_fail(fileobj, data):
        fileobj.write(bytes(data[: len(data) // 2]))
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(io, "_write_bytes", write_half_then_fail)
    bigger = {"a": np.ones((300, 300), dtype=np.float32)}
    with pytest.raises(OSError, match="disk full"):
        io.save_safetensors_atomic(path, bigger, {"fastnet_kind": "test", "version": 2})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.fn"]
    assert io.load_safetensors_checked(path)[1]["version"] == 1


def test_failed_fsync_leaves_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "m.fn"
    io.save_safetensors_atomic(path, tensors(), {"v": 1})
    before = path.read_bytes()

    def fail(fd):
        raise OSError("I/O error (simulated)")

    monkeypatch.setattr(io.os, "fsync", fail)
    with pytest.raises(OSError, match="simulated"):
        io.save_safetensors_atomic(path, tensors(), {"v": 2})
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["m.fn"]


def test_metadata_must_be_json(tmp_path):
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        io.save_safetensors_atomic(tmp_path / "m.fn", tensors(), {"bad": float("nan")})
    with pytest.raises(TypeError, match="must be a numpy array"):
        io.save_safetensors_atomic(tmp_path / "m.fn", {"a": [1, 2]}, {})


def test_check_tensors_names_the_mismatch(tmp_path):
    expected = {"w": ((2, 3), np.float32), "b": ((3,), np.float32)}
    good = {"w": np.zeros((2, 3), np.float32), "b": np.zeros(3, np.float32)}
    io.check_tensors("m.fn", good, expected)
    with pytest.raises(io.ModelFileError, match=r"lacks tensor 'b' \(expected float32 \(3,\)\)"):
        io.check_tensors("m.fn", {"w": good["w"]}, expected)
    with pytest.raises(io.ModelFileError, match="tensor 'w' has shape \\(3, 2\\), the architecture expects \\(2, 3\\)"):
        io.check_tensors("m.fn", {**good, "w": np.zeros((3, 2), np.float32)}, expected)
    with pytest.raises(io.ModelFileError, match="tensor 'b' has dtype float64"):
        io.check_tensors("m.fn", {**good, "b": np.zeros(3)}, expected)
    with pytest.raises(io.ModelFileError, match="holds tensor 'extra'"):
        io.check_tensors("m.fn", {**good, "extra": np.zeros(1)}, expected)


def test_load_dispatches_on_kind(tmp_path):
    path = tmp_path / "m.fn"
    io.save_safetensors_atomic(path, tensors(), {"fastnet_kind": "toy-kind-for-test"})
    with pytest.raises(io.ModelFileError, match="kind 'toy-kind-for-test', which no loader handles"):
        fn.load(path)
    io.register_loader("toy-kind-for-test", lambda t, meta, p: ("loaded", sorted(t), p))
    try:
        assert fn.load(path) == ("loaded", ["a", "b"], str(path))
    finally:
        io._LOADERS.pop("toy-kind-for-test")


def test_no_pickle_in_model_files(tmp_path):
    path = tmp_path / "m.fn"
    net = fn.Network([fn.Dense(2, 3), fn.Dense(3, 2)])
    net.save(path)
    header_len = struct.unpack("<Q", path.read_bytes()[:8])[0]
    header = json.loads(path.read_bytes()[8:8 + header_len])
    assert json.loads(header["__metadata__"]["fastnet"])["fastnet_kind"] == "network"
    assert b"\x80\x04" not in path.read_bytes()[:8 + header_len]  # no pickle protocol marker in the header


# ---- check_writable: fail before the work, naming the reason ----------------------------------
def test_check_writable_returns_the_path_as_a_string(tmp_path):
    assert io.check_writable(tmp_path / "out.png") == os.fspath(tmp_path / "out.png")


def test_check_writable_names_what_is_wrong(tmp_path, monkeypatch):
    with pytest.raises(IsADirectoryError, match="is a directory"):
        io.check_writable(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        io.check_writable(tmp_path / "missing" / "out.png")
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # root may write anywhere: ask access to say no
    with pytest.raises(PermissionError, match="is not writable"):
        io.check_writable(tmp_path / "out.png")


@pytest.mark.parametrize("name", ["save_safetensors_atomic", "atomic_write", "load_safetensors_checked",
                                  "check_tensors", "check_writable", "register_loader", "load", "load_with"])
def test_the_public_functions_carry_type_hints_that_resolve(name):
    import inspect
    import typing

    function = getattr(io, name)
    hints = typing.get_type_hints(function)
    assert set(inspect.signature(function).parameters) <= set(hints) and "return" in hints, hints

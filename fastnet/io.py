"""Model files: safetensors weights with JSON metadata, written atomically, loaded with checks.

No pickle anywhere: a model file is a safetensors file whose tensors are the
weights (and optimizer state) and whose metadata holds one JSON document
describing the architecture and training state, plus a SHA-256 of the
tensor bytes so silent corruption is caught.

`fn.load(path)` reads metadata["fastnet_kind"] and hands the file to the
loader registered for that kind (`register_loader`).
"""
import hashlib
import json
import contextlib
import os
import struct
import tempfile

import numpy as np

_META_KEY = "fastnet"
_CHECKSUM_KEY = "fastnet_sha256"
_HEADER_LIMIT = 100 * 1024 * 1024  # safetensors' own cap on the JSON header
_DTYPES = {"F16": np.float16, "F32": np.float32, "F64": np.float64, "I8": np.int8, "I16": np.int16,
           "I32": np.int32, "I64": np.int64, "U8": np.uint8, "U16": np.uint16, "U32": np.uint32,
           "U64": np.uint64, "BOOL": np.bool_}
_LOADERS = {}


class ModelFileError(ValueError):
    """A model file is missing pieces, truncated, corrupted, or does not match the architecture."""


# ---- writing ---------------------------------------------------------------
def _c_order(arr):
    """arr in C order (np.ascontiguousarray would turn a 0-d array into shape (1,))."""
    return arr if arr.flags.c_contiguous else arr.copy(order="C")


def _checksum(tensors):
    digest = hashlib.sha256()
    for name in sorted(tensors):
        arr = _c_order(tensors[name])
        digest.update(name.encode())
        digest.update(str(arr.dtype.str).encode())
        digest.update(repr(arr.shape).encode())
        digest.update(arr.reshape(-1).view(np.uint8).data)  # raw bytes; also fine for empty and 0-d arrays
    return digest.hexdigest()


def _serialize(tensors, metadata):
    import safetensors.numpy

    for name, arr in tensors.items():
        if not isinstance(name, str):
            raise TypeError(f"tensor names must be strings, got {name!r}")
        if not isinstance(arr, np.ndarray):
            raise TypeError(f"tensor {name!r} must be a numpy array, got {type(arr).__name__}")
    tensors = {name: _c_order(arr) for name, arr in tensors.items()}
    header = {_META_KEY: json.dumps(metadata, allow_nan=False, sort_keys=True), _CHECKSUM_KEY: _checksum(tensors)}
    return safetensors.numpy.save(tensors, metadata=header)


def _write_bytes(fileobj, data):
    """Write all of `data` (a separate function so tests can make a write fail midway)."""
    view = memoryview(data)
    chunk = 1 << 20
    for start in range(0, len(view), chunk):
        fileobj.write(view[start:start + chunk])


def _fsync_directory(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # not possible on every platform; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _new_file_mode(path):
    """The permissions a plainly created file would get (or the old file's, when replacing one).

    mkstemp creates its file owner-only (0600); a model file should be as
    readable as any other file the user writes.
    """
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def save_safetensors_atomic(path, tensors, metadata):
    """Write `tensors` (name -> array) and JSON-able `metadata` to `path` atomically.

    The bytes go to a temporary file in the same directory, are fsynced, and
    then renamed over `path`: a crash or error midway leaves any old file intact.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"cannot save {path!r}: directory {directory!r} does not exist")
    try:
        data = _serialize(tensors, metadata)
    except ValueError as exc:
        raise ValueError(f"cannot save {path!r}: metadata is not JSON-serialisable ({exc})") from exc
    with atomic_write(path) as f:
        _write_bytes(f, data)


@contextlib.contextmanager
def atomic_write(path, mode="wb", **open_kwargs):
    """Write `path` all or nothing: yield a temporary file beside it, then fsync and rename it over `path`.

    A failure anywhere (an exception in the block, a full disk, a crash before
    the rename) leaves the old file, if any, untouched and no temporary file
    behind. The new file gets the permissions a plain open() would give it.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"cannot write {path!r}: directory {directory!r} does not exist")
    file_mode = _new_file_mode(path)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        os.chmod(tmp, file_mode)
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_directory(directory)


# ---- reading ---------------------------------------------------------------
def _read_file(path):
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"model file {path!r} does not exist")
    if os.path.isdir(path):
        raise IsADirectoryError(f"model file {path!r} is a directory, not a file")
    with open(path, "rb") as f:
        return f.read()


def _parse_header(path, blob):
    if len(blob) < 8:
        raise ModelFileError(f"{path!r} is truncated or not a safetensors file: it has {len(blob)} bytes, "
                             f"fewer than the 8-byte header length")
    (header_len,) = struct.unpack("<Q", blob[:8])
    if header_len > _HEADER_LIMIT or 8 + header_len > len(blob):
        raise ModelFileError(f"{path!r} is truncated or not a safetensors file: the header claims {header_len} "
                             f"bytes but only {len(blob) - 8} follow")
    try:
        header = json.loads(blob[8:8 + header_len].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path!r} is corrupted: its header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{path!r} is corrupted: its header is not a JSON object")
    return header, 8 + header_len


def _check_layout(path, header, n_data):
    """Every tensor's byte range must lie inside the data section, which they must fill exactly."""
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = np.dtype(_DTYPES[info["dtype"]])
            shape = tuple(int(d) for d in info["shape"])
            start, stop = (int(o) for o in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise ModelFileError(f"{path!r} is corrupted: the header entry of tensor {name!r} is malformed "
                                 f"({info!r})") from None
        if stop > n_data:
            raise ModelFileError(f"{path!r} is truncated: tensor {name!r} needs bytes {start}..{stop} of the data "
                                 f"section, which holds only {n_data} bytes")
        if stop - start != dtype.itemsize * int(np.prod(shape, dtype=np.int64)) or start > stop:
            raise ModelFileError(f"{path!r} is corrupted: tensor {name!r} has shape {shape} {dtype} but "
                                 f"{stop - start} bytes")
        end = max(end, stop)
    if end != n_data:
        raise ModelFileError(f"{path!r} is corrupted: the data section holds {n_data} bytes, the tensors "
                             f"describe {end}")


def load_safetensors_checked(path):
    """(tensors, metadata) from a file written by `save_safetensors_atomic`, with clear errors.

    Raises FileNotFoundError for a missing file and ModelFileError naming the
    file and the fault for truncated, corrupted or foreign files.
    """
    import safetensors.numpy

    blob = _read_file(path)
    header, data_start = _parse_header(path, blob)
    _check_layout(path, header, len(blob) - data_start)
    raw_meta = header.get("__metadata__") or {}
    if _META_KEY not in raw_meta:
        raise ModelFileError(f"{path!r} is a safetensors file but not a fastnet model file (no {_META_KEY!r} "
                             f"metadata)")
    try:
        metadata = json.loads(raw_meta[_META_KEY])
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{path!r} is corrupted: its fastnet metadata is not valid JSON ({exc})") from None
    try:
        tensors = safetensors.numpy.load(blob)
    except Exception as exc:  # the library's own error type varies between versions
        raise ModelFileError(f"{path!r} is corrupted: {exc}") from None
    expected_sum = raw_meta.get(_CHECKSUM_KEY)
    if expected_sum is not None and _checksum(tensors) != expected_sum:
        raise ModelFileError(f"{path!r} is corrupted: the tensor bytes do not match the checksum stored in "
                             f"the file")
    return tensors, metadata


def check_tensors(path, tensors, expected):
    """Compare loaded tensors with `expected` {name: (shape, dtype)}; raise ModelFileError naming the mismatch."""
    missing = [name for name in expected if name not in tensors]
    if missing:
        shape, dtype = expected[missing[0]]
        raise ModelFileError(f"{path!r} lacks tensor {missing[0]!r} (expected {np.dtype(dtype).name} "
                             f"{tuple(shape)}); {len(missing)} tensor(s) missing in total")
    extra = sorted(name for name in tensors if name not in expected)
    if extra:
        raise ModelFileError(f"{path!r} holds tensor {extra[0]!r} that the architecture does not have")
    for name, (shape, dtype) in expected.items():
        arr = tensors[name]
        if tuple(arr.shape) != tuple(shape):
            raise ModelFileError(f"{path!r}: tensor {name!r} has shape {tuple(arr.shape)}, the architecture "
                                 f"expects {tuple(shape)}")
        if arr.dtype != np.dtype(dtype):
            raise ModelFileError(f"{path!r}: tensor {name!r} has dtype {arr.dtype}, the architecture expects "
                                 f"{np.dtype(dtype).name}")


# ---- dispatch on the kind of model ---------------------------------------
def register_loader(kind, loader):
    """Make `fn.load` call `loader(tensors, metadata, path)` for files whose fastnet_kind is `kind`."""
    if not callable(loader):
        raise TypeError(f"loader for {kind!r} must be callable")
    _LOADERS[kind] = loader


def load(path):
    """Load any fastnet model file (a Network, a Translator, ...)."""
    tensors, metadata = load_safetensors_checked(path)
    kind = metadata.get("fastnet_kind") if isinstance(metadata, dict) else None
    if kind not in _LOADERS:
        known = ", ".join(sorted(_LOADERS)) or "none"
        raise ModelFileError(f"{os.fspath(path)!r} holds a model of kind {kind!r}, which no loader handles "
                             f"(known kinds: {known})")
    return _LOADERS[kind](tensors, metadata, os.fspath(path))

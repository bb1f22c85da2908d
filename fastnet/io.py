"""Model files: safetensors weights with JSON metadata, written atomically, loaded with checks.

No pickle anywhere: a model file is a safetensors file whose tensors are the
weights (and optimizer state) and whose metadata holds one JSON document
describing the architecture and training state.

Every byte is checked. The header carries a SHA-256 of the whole file, taken
with its own 64 hex digits set to "0"; so the architecture, the vocabularies,
the tensor table and the tensor bytes are all covered, whatever a model kind
stores, and a single changed byte anywhere gives ModelFileError. Files
written before that checksum existed (only the tensor-bytes SHA-256,
`fastnet_sha256`, whose metadata is unprotected) still load, with a
LegacyModelFileWarning; saving them again protects them. A file whose
whole-file checksum key is damaged is not mistaken for an old one: an old
file has exactly the two old metadata keys.

Reading is bounded: the file type is checked before reading (a FIFO or a
device is refused without blocking), then the 8-byte length, the header, and
only the data the header declares. Building the model from the metadata runs
under an allocation budget (`fastnet.layers.base.allocation_budget`) of a few
times the file's tensor bytes, so edited architecture numbers cannot make a
small file allocate gigabytes before the tensors are compared.

`fn.load(path)` reads metadata["fastnet_kind"] and hands the file to the
loader registered for that kind (`register_loader`); the built-in kinds'
modules are imported on first need.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import math
import os
import re
import stat
import struct
import tempfile
import warnings
from typing import IO, Any, Callable, Dict, Iterator, Mapping, Optional, Tuple, Union

import numpy as np

PathLike = Union[str, "os.PathLike[str]"]
Tensors = Mapping[str, np.ndarray]
# A loader builds a model from (tensors, metadata, path) of a checked file.
Loader = Callable[[Dict[str, np.ndarray], Dict[str, Any], str], Any]

_META_KEY = "fastnet"
_CHECKSUM_KEY = "fastnet_sha256"            # tensor bytes only (every version writes it)
_FILE_CHECKSUM_KEY = "fastnet_file_sha256"  # every byte of the file
_LEGACY_METADATA_KEYS = {_META_KEY, _CHECKSUM_KEY}
_PLACEHOLDER = b"0" * 64
_FILE_CHECKSUM_FIELD = re.compile(rb'"' + _FILE_CHECKSUM_KEY.encode() + rb'":"([0-9a-f]{64})"')
_HEADER_LIMIT = 100 * 1024 * 1024  # safetensors' own cap on the JSON header
# Loading may allocate this many times the file's tensor bytes (plus the
# slack) while the model is built: the weights, their gradients, an
# optimizer's state and small tables such as positional encodings.
_LOAD_ALLOCATION_FACTOR = 8
_LOAD_ALLOCATION_SLACK = 16 << 20
_DTYPES = {"F16": np.float16, "F32": np.float32, "F64": np.float64, "I8": np.int8, "I16": np.int16,
           "I32": np.int32, "I64": np.int64, "U8": np.uint8, "U16": np.uint16, "U32": np.uint32,
           "U64": np.uint64, "BOOL": np.bool_}
_LOADERS = {}
# The modules whose import registers the loader of a built-in kind. `import fastnet` loads none of
# the model families it does not need; `load` imports the one a file asks for (named, not imported,
# here: io sits below the models).
_BUILTIN_LOADERS = {"network": "fastnet.network", "translator": "fastnet.seq2seq.translator",
                    "image_decoder": "fastnet.image.decoder"}


class ModelFileError(ValueError):
    """A model file is missing pieces, truncated, corrupted, or does not match the architecture."""


class LegacyModelFileWarning(UserWarning):
    """A model file from before the whole-file checksum: its metadata is not protected."""


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
    header = {_META_KEY: json.dumps(metadata, allow_nan=False, sort_keys=True), _CHECKSUM_KEY: _checksum(tensors),
              _FILE_CHECKSUM_KEY: _PLACEHOLDER.decode()}
    return _seal(bytearray(safetensors.numpy.save(tensors, metadata=header)))


def _file_digest(blob, field_start):
    """SHA-256 of blob with the 64 checksum digits at field_start read as zeros."""
    view = memoryview(blob)
    digest = hashlib.sha256(view[:field_start])
    digest.update(_PLACEHOLDER)
    digest.update(view[field_start + 64:])
    return digest.hexdigest()


def _seal(blob):
    """Write the whole-file checksum into its placeholder (same length: no offset moves)."""
    header_len = struct.unpack("<Q", blob[:8])[0]
    fields = list(_FILE_CHECKSUM_FIELD.finditer(blob, 8, 8 + header_len))
    if len(fields) != 1:
        raise RuntimeError(f"the serialised header holds {len(fields)} whole-file checksum fields, not 1")
    start = fields[0].start(1)
    blob[start:start + 64] = _file_digest(blob, start).encode()
    return blob


def _check_finite(tensors):
    """Refuse to write NaN or infinite weights: a diverged model must not replace a good file."""
    for name, arr in tensors.items():
        if isinstance(arr, np.ndarray) and arr.dtype.kind == "f" and arr.size and not np.isfinite(arr).all():
            bad = int(np.count_nonzero(~np.isfinite(arr)))
            raise ValueError(f"tensor {name!r} holds {bad} NaN or infinite value(s) of {arr.size}; "
                             f"refusing to save a model that diverged (lower the learning rate, clip gradients, "
                             f"or reload the last good file)")


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


def save_safetensors_atomic(path: PathLike, tensors: Tensors, metadata: Mapping[str, Any]) -> None:
    """Write `tensors` (name -> array) and JSON-able `metadata` to `path` atomically.

    The bytes go to a temporary file in the same directory, are fsynced, and
    then renamed over `path`: a crash or error midway leaves any old file intact.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"cannot save {path!r}: directory {directory!r} does not exist")
    _check_finite(tensors)
    try:
        data = _serialize(tensors, metadata)
    except ValueError as exc:
        raise ValueError(f"cannot save {path!r}: metadata is not JSON-serialisable ({exc})") from exc
    with atomic_write(path) as f:
        _write_bytes(f, data)


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "wb", **open_kwargs: Any) -> Iterator[IO[Any]]:
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
    prefix = "." + os.path.basename(path) + "."
    _remove_stale_temporaries(directory, prefix)
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=directory)
    try:
        _lock(fd)  # held until the file is closed: tells a later save this one is alive
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


# A temporary file of atomic_write: "." + name + "." + mkstemp's random part + ".tmp".
_TEMP_MIDDLE = re.compile(r"[A-Za-z0-9_]{6,16}\.tmp")


def _lock(fd, wait=True):
    """An exclusive advisory lock on fd (released when it is closed or its process dies);
    False when wait is False and someone else holds it. Without fcntl (Windows) always True."""
    try:
        import fcntl
    except ImportError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except OSError:
        return False
    return True


def _remove_stale_temporaries(directory, prefix):
    """Delete temporaries of earlier saves of the same file that died before their rename
    (kill -9, power loss). A save in progress holds a lock on its temporary; that one stays."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if not (name.startswith(prefix) and _TEMP_MIDDLE.fullmatch(name[len(prefix):])):
            continue
        candidate = os.path.join(directory, name)
        try:
            fd = os.open(candidate, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        except OSError:
            continue
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode) and _lock(fd, wait=False):
                os.unlink(candidate)
        except OSError:
            pass
        finally:
            os.close(fd)


def _open_regular(path):
    """(file object, size) of a regular file. The type is checked on the open descriptor
    before any read, and O_NONBLOCK keeps a FIFO from blocking the open itself."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise FileNotFoundError(f"model file {path!r} does not exist") from None
    except IsADirectoryError:
        raise IsADirectoryError(f"model file {path!r} is a directory, not a file") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(f"model file {path!r} is a directory, not a file")
        raise ModelFileError(f"{path!r} is not a regular file (a FIFO, socket or device); a model file must be "
                             f"an ordinary file")
    return os.fdopen(fd, "rb"), info.st_size


def _read_exactly(f, n, path, what):
    data = f.read(n)
    if len(data) != n:
        raise ModelFileError(f"{path!r} is truncated: {what} needs {n} bytes, only {len(data)} could be read")
    return data


def _read_file(path):
    """The bytes of a model file, read header first: (blob, header, data_start).

    Only the 8-byte length is read before it is checked against the file size,
    and only the header before the data section it declares is checked; no
    read is larger than the file the header describes.
    """
    f, size = _open_regular(path)
    with f:
        if size < 8:
            raise ModelFileError(f"{path!r} is truncated or not a safetensors file: it has {size} bytes, "
                                 f"fewer than the 8-byte header length")
        (header_len,) = struct.unpack("<Q", _read_exactly(f, 8, path, "the header length"))
        if header_len > _HEADER_LIMIT or 8 + header_len > size:
            raise ModelFileError(f"{path!r} is truncated or not a safetensors file: the header claims "
                                 f"{header_len} bytes but only {size - 8} follow")
        header_bytes = _read_exactly(f, header_len, path, "the header")
        header = _parse_header(path, header_bytes)
        n_data = size - 8 - header_len
        _check_layout(path, header, n_data)
        data = _read_exactly(f, n_data, path, "the data section")
    return b"".join((struct.pack("<Q", header_len), header_bytes, data)), header, 8 + header_len


def _parse_header(path, header_bytes):
    try:
        header = json.loads(header_bytes.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, a 5000-digit number, deep nesting
        raise ModelFileError(f"{path!r} is corrupted: its header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{path!r} is corrupted: its header is not a JSON object")
    return header


def _check_file_checksum(path, blob, data_start, raw_meta):
    """The whole-file SHA-256, or for an old file the tensor checksum alone (returns False then)."""
    fields = list(_FILE_CHECKSUM_FIELD.finditer(blob, 8, data_start))
    if not fields:
        if set(raw_meta) != _LEGACY_METADATA_KEYS:
            raise ModelFileError(f"{path!r} is corrupted: it has no whole-file checksum, and its metadata keys "
                                 f"{sorted(raw_meta)} are not those of an older fastnet file")
        return False
    if len(fields) > 1 or raw_meta.get(_FILE_CHECKSUM_KEY) != fields[0].group(1).decode():
        raise ModelFileError(f"{path!r} is corrupted: its whole-file checksum field is damaged")
    if _file_digest(blob, fields[0].start(1)) != fields[0].group(1).decode():
        raise ModelFileError(f"{path!r} is corrupted or was edited: its bytes do not match the checksum stored "
                             f"in the file")
    return True


def _tensor_entry(path, name, info):
    """(dtype, shape, start, stop) of one header entry; sizes are exact Python ints, never overflowing."""
    try:
        dtype = np.dtype(_DTYPES[info["dtype"]])
        shape = tuple(info["shape"])
        start, stop = info["data_offsets"]
    except (KeyError, TypeError, ValueError):
        raise ModelFileError(f"{path!r} is corrupted: the header entry of tensor {name!r} is malformed "
                             f"({info!r})") from None
    if not all(type(n) is int and n >= 0 for n in (*shape, start, stop)) or start > stop:
        raise ModelFileError(f"{path!r} is corrupted: tensor {name!r} has shape {list(shape)} and offsets "
                             f"{[start, stop]}, which are not non-negative integers in order")
    return dtype, shape, start, stop


def _check_layout(path, header, n_data):
    """Every tensor's byte range must lie inside the data section, which they must fill exactly."""
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype, shape, start, stop = _tensor_entry(path, name, info)
        if stop > n_data:
            raise ModelFileError(f"{path!r} is truncated: tensor {name!r} needs bytes {start}..{stop} of the data "
                                 f"section, which holds only {n_data} bytes")
        if stop - start != dtype.itemsize * math.prod(shape):
            raise ModelFileError(f"{path!r} is corrupted: tensor {name!r} has shape {shape} {dtype} but "
                                 f"{stop - start} bytes")
        end = max(end, stop)
    if end != n_data:
        raise ModelFileError(f"{path!r} is corrupted: the data section holds {n_data} bytes, the tensors "
                             f"describe {end}")


def load_safetensors_checked(path: PathLike) -> Tuple[Dict[str, np.ndarray], Dict[str, Any]]:
    """(tensors, metadata) from a file written by `save_safetensors_atomic`, with clear errors.

    Raises FileNotFoundError for a missing file and ModelFileError naming the
    file and the fault for truncated, corrupted or foreign files.
    """
    import safetensors.numpy

    path = os.fspath(path)
    blob, header, data_start = _read_file(path)
    raw_meta = header.get("__metadata__") or {}
    if not isinstance(raw_meta, dict) or not isinstance(raw_meta.get(_META_KEY), str):
        raise ModelFileError(f"{path!r} is a safetensors file but not a fastnet model file (no {_META_KEY!r} "
                             f"metadata)")
    whole_file_checked = _check_file_checksum(path, blob, data_start, raw_meta)
    try:
        metadata = json.loads(raw_meta[_META_KEY])
    except (ValueError, RecursionError) as exc:
        raise ModelFileError(f"{path!r} is corrupted: its fastnet metadata is not valid JSON ({exc})") from None
    if not isinstance(metadata, dict):
        raise ModelFileError(f"{path!r} is corrupted: its fastnet metadata is not a JSON object")
    try:
        tensors = safetensors.numpy.load(blob)
    except Exception as exc:  # the library's own error type varies between versions
        raise ModelFileError(f"{path!r} is corrupted: {exc}") from None
    if not whole_file_checked:
        if _checksum(tensors) != raw_meta[_CHECKSUM_KEY]:
            raise ModelFileError(f"{path!r} is corrupted: the tensor bytes do not match the checksum stored in "
                                 f"the file")
        warnings.warn(f"{path!r} was saved by an older fastnet: its tensors are checksummed but its metadata "
                      f"(architecture, vocabularies) is not; save it again to protect every byte",
                      LegacyModelFileWarning, stacklevel=3)
    return tensors, metadata


def check_tensors(path: str, tensors: Tensors, expected: Mapping[str, Tuple[Tuple[int, ...], Any]]) -> None:
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


def check_writable(path: PathLike) -> str:
    """`path` as a string when a file can be written there, else an error saying why; call it before
    spending time on what will be written."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise IsADirectoryError(f"cannot write {path!r}: it is a directory, give a file name")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot write {path!r}: folder {folder!r} does not exist")
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"cannot write {path!r}: folder {folder!r} is not writable")
    return path


# ---- dispatch on the kind of model ---------------------------------------
def register_loader(kind: str, loader: Loader) -> None:
    """Make `fn.load` call `loader(tensors, metadata, path)` for files whose fastnet_kind is `kind`."""
    if not callable(loader):
        raise TypeError(f"loader for {kind!r} must be callable")
    _LOADERS[kind] = loader


def load(path: PathLike) -> Any:
    """Load any fastnet model file (a Network, a Translator, ...)."""
    return load_with(path, None)


def load_with(path: PathLike, loader: Optional[Loader]) -> Any:
    """Read and check `path`, then build its model with `loader(tensors, metadata, path)`, or
    with the loader registered for its fastnet_kind when `loader` is None.

    The build runs under an allocation budget proportional to the file's tensor bytes, and
    any error it raises from malformed metadata (a missing key, a wrong type, a bad RNG
    state) comes out as ModelFileError naming the file.
    """
    from fastnet.layers.base import allocation_budget

    path = os.fspath(path)
    tensors, metadata = load_safetensors_checked(path)
    if loader is None:
        kind = metadata.get("fastnet_kind")
        if isinstance(kind, str) and kind not in _LOADERS and kind in _BUILTIN_LOADERS:
            importlib.import_module(_BUILTIN_LOADERS[kind])
        if not isinstance(kind, str) or kind not in _LOADERS:
            known = ", ".join(sorted(set(_LOADERS) | set(_BUILTIN_LOADERS)))
            raise ModelFileError(f"{path!r} holds a model of kind {kind!r}, which no loader handles "
                                 f"(known kinds: {known})")
        loader = _LOADERS[kind]
    file_bytes = sum(arr.nbytes for arr in tensors.values())
    budget = _LOAD_ALLOCATION_FACTOR * file_bytes + _LOAD_ALLOCATION_SLACK
    try:
        with allocation_budget(budget, f"loading {path!r}"):
            return loader(tensors, metadata, path)
    except ModelFileError:
        raise
    except MemoryError as exc:
        raise ModelFileError(f"{path!r}: its architecture needs more memory than the file justifies ({exc})") from None
    except (KeyError, IndexError, AttributeError, TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise ModelFileError(f"{path!r}: malformed metadata, cannot rebuild the model "
                             f"({type(exc).__name__}: {exc})") from None

"""Files and fingerprints of scans: a safe on-disk format, content hashes, and the scan cache folder.

A saved scan is an ``.npz`` archive of plain numeric arrays plus one ``meta`` entry holding JSON as
bytes; it is read with ``allow_pickle=False``, so loading a file never runs code.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

FORMAT = "neurowidgets-scan"
FORMAT_VERSION = 1


# -- writing files ---------------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A new file beside ``path``, open for writing bytes, renamed over ``path`` when the block ends.

    A reader never sees half a file, and an error (in the block, or while creating or renaming the
    file) leaves no temporary file behind and ``path`` as it was. The new file's mode is the umask's,
    as for any new file. Each call has its own temporary name: threads may write the same path at once
    (the last rename wins).
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as file:
            yield file
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


# -- the file format ------------------------------------------------------------------------------


def write_archive(path: str | os.PathLike, meta: dict, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write ``arrays`` and the JSON ``meta`` to ``path`` (atomically: a reader never sees half a file).

    An ``.npz`` as ``np.savez_compressed`` writes it, except that float16 arrays (kept activation rows:
    nearly incompressible) are stored, not deflated: deflating them tripled the time to save a scan
    for a tenth less space.
    """
    path = Path(path)
    if "meta" in arrays:
        raise ValueError("'meta' is reserved for the metadata entry")
    payload = json.dumps({"format": FORMAT, "version": FORMAT_VERSION, **meta}).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as file, zipfile.ZipFile(file, "w") as archive:
        for name, array in {"meta": np.frombuffer(payload, dtype=np.uint8), **arrays}.items():
            array = np.asanyarray(array)
            entry = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            entry.compress_type = zipfile.ZIP_STORED if array.dtype == np.float16 else zipfile.ZIP_DEFLATED
            with archive.open(entry, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)
    return path


def read_archive(path: str | os.PathLike) -> tuple[dict, dict[str, np.ndarray]]:
    """(meta, arrays) of a file written by :func:`write_archive`."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (zipfile.BadZipFile, ValueError, OSError) as error:
        raise ValueError(f"{path} is not a saved scan: {error}") from error
    if "meta" not in arrays:
        raise ValueError(f"{path} is not a saved scan: it has no metadata entry")
    meta = json.loads(arrays.pop("meta").tobytes().decode())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a saved scan (format {meta.get('format')!r})")
    if meta.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"{path} was saved in scan format version {meta.get('version')}; this neurowidgets reads "
            f"version {FORMAT_VERSION}"
        )
    return meta, arrays


# -- fingerprints -------------------------------------------------------------------------------


def update_with_tensor(digest: Any, tensor: torch.Tensor) -> None:
    """Feed a tensor's dtype, shape and bytes (from any device, of any dtype) to ``digest``."""
    tensor = tensor.detach()
    digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
    if tensor.is_sparse or tensor.layout != torch.strided:
        tensor = tensor.to_dense()
    flat = tensor.cpu().contiguous().reshape(-1)
    if flat.numel():
        digest.update(memoryview(flat.view(torch.uint8).numpy()))


def module_fingerprint(modules: Sequence[torch.nn.Module]) -> str:
    """A hash of the modules' types and of the bytes of every tensor of their ``state_dict``."""
    digest = hashlib.sha256()
    for module in modules:
        digest.update(f"{type(module).__module__}.{type(module).__qualname__}".encode())
        for name, tensor in module.state_dict().items():
            digest.update(name.encode())
            if isinstance(tensor, torch.Tensor):
                update_with_tensor(digest, tensor)
            else:
                digest.update(repr(tensor).encode())
    return digest.hexdigest()


def is_strings(data: Any) -> bool:
    return isinstance(data, (list, tuple)) and len(data) > 0 and all(isinstance(t, str) for t in data)


def data_fingerprint(data: Any) -> str | None:
    """A content hash of data the scan can fingerprint before it runs, else ``None``.

    Tensors and numpy arrays, lists of strings, mappings of tensors, and ``TensorDataset`` are hashed
    by content; other datasets, data loaders and iterators are not (their items are unknown until
    they are read, and may change from one pass to the next).
    """
    from torch.utils.data import TensorDataset

    digest = hashlib.sha256()
    if isinstance(data, np.ndarray):
        data = torch.from_numpy(np.ascontiguousarray(data))
    if isinstance(data, torch.Tensor):
        digest.update(b"tensor")
        update_with_tensor(digest, data)
    elif is_strings(data):
        digest.update(b"strings")
        for text in data:
            encoded = text.encode("utf-8", "surrogatepass")
            digest.update(len(encoded).to_bytes(8, "little"))
            digest.update(encoded)
    elif isinstance(data, Mapping) and data and all(isinstance(v, torch.Tensor) for v in data.values()):
        digest.update(b"mapping")
        for key in sorted(data):
            digest.update(str(key).encode())
            update_with_tensor(digest, data[key])
    elif type(data) is TensorDataset:
        digest.update(b"tensordataset")
        for tensor in data.tensors:
            update_with_tensor(digest, tensor)
    else:
        return None
    return digest.hexdigest()


def function_fingerprint(function: Any) -> str | None:
    """A hash of a plain function's code, or ``None`` when its behaviour cannot be pinned down
    (closures over variables, builtins, callable objects)."""
    code = getattr(function, "__code__", None)
    if code is None:
        if function in (tuple, list, dict):  # the common "feed the whole batch" choices
            return f"builtin:{function.__name__}"
        return None
    if getattr(function, "__closure__", None) or getattr(function, "__defaults__", None):
        return None
    digest = hashlib.sha256()
    digest.update(f"{function.__module__}.{function.__qualname__}".encode())
    digest.update(code.co_code)
    digest.update(repr(code.co_consts).encode())
    digest.update(repr(code.co_names).encode())
    return digest.hexdigest()


def key_of(parts: Mapping[str, Any]) -> str:
    """A short hash of JSON-able parts."""
    text = json.dumps(parts, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


# -- the cache folder ---------------------------------------------------------------------------


def scan_cache_dir() -> Path:
    """Where cached scans live: ``$NEUROWIDGETS_CACHE/scans`` (default ``~/.cache/neurowidgets/scans``)."""
    from ..datasets import cache_dir

    return cache_dir() / "scans"

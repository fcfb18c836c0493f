"""lmz: lossless compression driven by a small language model.

A file made here is byte for byte what the ``lmz`` command and the browser package make of
the same input, and decodes on any of them::

    import lmz

    blob = lmz.compress(b"some text")            # the default compressor, loaded on first use
    assert lmz.decompress(blob) == b"some text"

    c = lmz.Compressor(backend="cpu", threads=2)  # one model per Compressor, loaded once
    blobs = c.compress_many([b"a note", b"another note"])
    lmz.info(blobs[0])                            # what the header says, no model needed

The model pack comes from ``lmz.fetch_model()`` (or ``lmz model fetch``). Errors are
:class:`LmzError` with the library's stable ``code``. ``lmz.ray`` runs the same compressor
over a dataset on a Ray cluster (``python -m lmz.ray compress SRC DST``).
"""

from __future__ import annotations

import threading

from ._errors import ArgumentError, FormatError, GpuError, LmzError, ModelError
from ._lmz import (
    CODES,
    HAS_GPU,
    PACK_FINGERPRINT,
    Compressor,
    __version__,
    default_model_path,
    fetch_model,
    info,
)

__all__ = [
    "ArgumentError",
    "CODES",
    "Compressor",
    "FormatError",
    "GpuError",
    "HAS_GPU",
    "LmzError",
    "ModelError",
    "PACK_FINGERPRINT",
    "__version__",
    "compress",
    "decompress",
    "default_compressor",
    "default_model_path",
    "fetch_model",
    "info",
]

_default: Compressor | None = None
_default_lock = threading.Lock()


def default_compressor() -> Compressor:
    """The compressor behind :func:`compress` and :func:`decompress`: ``Compressor()`` (the
    default model pack, the CPU engine, one thread per core), created on first use and then
    shared (calls on it from several threads run one after the other)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Compressor()
        return _default


def compress(data: bytes) -> bytes:
    """Compresses ``data`` into a .lmz file with the default compressor (like ``zlib.compress``)."""
    return default_compressor().compress(data)


def decompress(data: bytes) -> bytes:
    """Decompresses a .lmz file with the default compressor (like ``zlib.decompress``)."""
    return default_compressor().decompress(data)

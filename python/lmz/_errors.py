"""The exceptions of lmz: one class per group of the library's stable codes.

Every error the library raises is an :class:`LmzError` whose ``code`` is one of
``lmz.CODES`` (``"LMZ_FORMAT_CHECKSUM"``, ...), the same string the CLI prints in
``error [CODE]`` and the browser package puts in ``Error.name``. Catch the group you can
act on::

    try:
        original = lmz.decompress(blob)
    except lmz.FormatError as e:       # damaged or foreign data: e.code says which check failed
        ...
"""

from __future__ import annotations


class LmzError(Exception):
    """An error of lmz, with the library's stable ``code`` (``lmz.CODES`` lists them)."""

    code: str
    message: str

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.message} [{self.code}]"

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        # Pickles as (class, code, message): exceptions cross process boundaries (Ray,
        # multiprocessing) intact.
        return (type(self), (self.code, self.message))


class FormatError(LmzError, ValueError):
    """The data is not a .lmz file this lmz can read, or it is damaged (``LMZ_FORMAT_*``)."""


class ModelError(LmzError):
    """The model pack is missing, damaged or not the pinned one, or cannot be fetched."""


class ArgumentError(LmzError, ValueError):
    """An argument out of range or of the wrong kind (``LMZ_INVALID_ARGUMENT``, ...)."""


class GpuError(LmzError):
    """The GPU engine cannot run: no adapter, one too small, or a GPU failure."""


# Each code of the library (``lmz.CODES``, from the Rust ``Error::CODES``) and its class; the
# tests check that every code is here, so a new code is given a group on purpose. A code this
# table does not know (a newer native module) is a plain LmzError.
CLASSES: dict[str, type[LmzError]] = {
    "LMZ_GGUF": ModelError,
    "LMZ_PACK": ModelError,
    "LMZ_MODEL_MISSING": ModelError,
    "LMZ_HASH_MISMATCH": ModelError,
    "LMZ_FETCH": ModelError,
    "LMZ_TOKENIZER": ModelError,
    "LMZ_CONTEXT_OVERFLOW": ArgumentError,
    "LMZ_INVALID_ARGUMENT": ArgumentError,
    "LMZ_FORMAT_BAD_MAGIC": FormatError,
    "LMZ_FORMAT_UNSUPPORTED_VERSION": FormatError,
    "LMZ_FORMAT_MODEL_MISMATCH": FormatError,
    "LMZ_FORMAT_TRUNCATED": FormatError,
    "LMZ_FORMAT_CHECKSUM": FormatError,
    "LMZ_FORMAT_CORRUPT": FormatError,
    "LMZ_GPU_NO_ADAPTER": GpuError,
    "LMZ_GPU_LIMITS": GpuError,
    "LMZ_GPU": GpuError,
    "LMZ_CANCELLED": LmzError,
    "LMZ_INTERNAL": LmzError,
    "LMZ_IO": LmzError,
}


def _make(code: str, message: str) -> LmzError:
    """The exception for ``code`` (called by the native module)."""
    return CLASSES.get(code, LmzError)(code, message)

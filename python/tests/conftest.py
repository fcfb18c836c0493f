"""What the tests of the Python package need: the real model pack, the CLI (to compare bytes
with), and a few small inputs.

The rule of the whole project (``lmz::tiny::skip_outside_ci``): a test that needs the model
pack or the CLI binary skips with the reason outside CI, and fails in CI (``CI`` set), where
``scripts/test.sh`` has built the CLI and fetched the model — nothing skips there.
"""

from __future__ import annotations

import os
import subprocess
import zlib
from pathlib import Path

import lmz
import pytest

ROOT = Path(__file__).resolve().parents[2]


def skip_outside_ci(why: str) -> None:
    """Skips the test with ``why`` outside CI; fails it in CI."""
    if os.environ.get("CI"):
        pytest.fail(f"{why} (CI is set: nothing may skip)")
    pytest.skip(f"outside CI: {why}")


def cli_path() -> Path | None:
    """The lmz CLI: $LMZ_BIN, else the ci build in $CARGO_TARGET_DIR (scripts/test.sh's)."""
    if os.environ.get("LMZ_BIN"):
        return Path(os.environ["LMZ_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/lmz/target"))
    return target / "ci" / "lmz"


@pytest.fixture(scope="session")
def model_path() -> str:
    path = lmz.default_model_path()
    if not Path(path).is_file():
        skip_outside_ci(f"no model pack at {path}: run lmz.fetch_model() or `lmz model fetch`")
    return path


@pytest.fixture(scope="session")
def compressor(model_path: str) -> lmz.Compressor:
    """One compressor for the session (the model loads once): the CPU engine, as the CLI."""
    return lmz.Compressor(model_path)


class Cli:
    """The lmz command, to compare bytes with."""

    def __init__(self, path: Path, model: str) -> None:
        self.path = path
        self.model = model

    def run(self, args: list[str], data: bytes = b"") -> bytes:
        r = subprocess.run([str(self.path), "--model", self.model, *args], input=data, capture_output=True, check=False)
        if r.returncode != 0:
            raise AssertionError(f"lmz {' '.join(args)} failed ({r.returncode}): {r.stderr.decode(errors='replace')}")
        return r.stdout

    def compress(self, data: bytes, *flags: str) -> bytes:
        """``lmz -c`` of ``data`` (stdin → stdout, the CLI's default options)."""
        return self.run(["-c", "-f", "-q", *flags], data)

    def decompress(self, file: bytes) -> bytes:
        return self.run(["-dc", "-q"], file)

    def compress_files(self, paths: list[Path]) -> None:
        """``lmz -k -f -q FILE…``: FILE.lmz beside each, in one process (the model loads once)."""
        self.run(["-k", "-f", "-q", *map(str, paths)])


@pytest.fixture(scope="session")
def cli(model_path: str) -> Cli:
    path = cli_path()
    if path is None or not path.is_file():
        skip_outside_ci(f"no lmz CLI at {path}: build it (cargo build --profile ci -p lmz-cli) or set LMZ_BIN")
    assert path is not None
    return Cli(path, model_path)


# --- inputs ---

# Written for these tests, so in no corpus: the held-out text of the round trips.
HELD_OUT = (
    b"The lighthouse keeper counted the ships twice each evening, once by lamp and once by memory, "
    b"and wrote both numbers in a ledger that nobody had asked him to keep."
)
UNICODE = "Grüße aus Zürich — 東京の天気は晴れ. Ça va? Ελληνικά, русский, emoji 🚀.\n".encode()
CODE = b"def f(x):\n    return [i * i for i in range(x) if i % 3]\n\nprint(f(10))\n"


def alice_paragraphs(n: int, lo: int = 100, hi: int = 300) -> list[bytes]:
    """The first ``n`` paragraphs of samples/alice29.txt of ``lo``..``hi`` bytes."""
    text = (ROOT / "samples" / "alice29.txt").read_bytes()
    paras = [p.strip() for p in text.replace(b"\r\n", b"\n").split(b"\n\n")]
    out = [p for p in paras if lo <= len(p) <= hi][:n]
    assert len(out) == n, f"only {len(out)} paragraphs of {lo}..{hi} bytes"
    return out


def random_bytes(n: int, seed: int) -> bytes:
    """Deterministic bytes (SplitMix64), as the Rust tests make them."""
    out = bytearray()
    s = seed
    while len(out) < n:
        s = (s + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        z = s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        out += (z ^ (z >> 31)).to_bytes(8, "little")
    return bytes(out[:n])


# --- editing files (docs/FORMAT.md) ---


def _varint(b: bytes, i: int) -> tuple[int, int]:
    v, shift = 0, 0
    while True:
        v |= (b[i] & 0x7F) << shift
        shift += 7
        i += 1
        if not b[i - 1] & 0x80:
            return v, i


def with_wrong_checksum(file: bytes) -> bytes:
    """``file`` whose stored checksum of the original is wrong but every other check passes
    (full form: the crc32 field, and the header crc made again; compact: the 16-bit check), so
    the data decodes and only the final comparison fails: LMZ_FORMAT_CHECKSUM."""
    b = bytearray(file)
    if b[:4] == b"\x89LMZ":
        b[54] ^= 0x01
        count = int.from_bytes(b[58:62], "little")
        i = 62
        for _ in range(count):
            i += 1
            _, i = _varint(bytes(b), i)
            _, i = _varint(bytes(b), i)
        b[i : i + 4] = (zlib.crc32(bytes(b[:i])) & 0xFFFFFFFF).to_bytes(4, "little")
        return bytes(b)
    _, i = _varint(bytes(b), 3)
    b[i] ^= 0x01
    return bytes(b)

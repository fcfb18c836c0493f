"""The Python package on the real model: round trips, the CLI's bytes, typed errors on hostile
input, threads, batches, progress and interruption, and the stubs against the module."""

from __future__ import annotations

import ast
import json
import pickle
import subprocess
import sys
import threading
import time
from pathlib import Path

import lmz
import pytest
from conftest import CODE, HELD_OUT, UNICODE, Cli, alice_paragraphs, random_bytes, skip_outside_ci, with_wrong_checksum
from lmz import _errors

# --- round trips ---


@pytest.mark.parametrize(
    "data",
    [HELD_OUT, UNICODE, CODE, b"a", b"\n\n\n", random_bytes(300, 1), bytes(range(256))],
    ids=["held-out", "unicode", "code", "one-byte", "newlines", "random", "all-bytes"],
)
def test_round_trip(compressor: lmz.Compressor, data: bytes) -> None:
    blob = compressor.compress(data)
    assert isinstance(blob, bytes)
    assert compressor.decompress(blob) == data
    assert lmz.info(blob)["original_length"] == len(data)


def test_text_shrinks_and_binary_barely_grows(compressor: lmz.Compressor) -> None:
    # The model halves English at the very least; random bytes are stored (a few bytes over).
    assert len(compressor.compress(HELD_OUT)) < len(HELD_OUT) / 2
    noise = random_bytes(300, 2)
    blob = compressor.compress(noise)
    assert len(blob) <= len(noise) + 8
    assert lmz.info(blob)["chunks"][0]["method"] == "stored"


def test_empty(compressor: lmz.Compressor) -> None:
    blob = compressor.compress(b"")
    assert compressor.decompress(blob) == b""
    i = lmz.info(blob)
    assert (i["original_length"], i["chunks"]) == (0, [])


def test_bytes_like_inputs(compressor: lmz.Compressor) -> None:
    blob = compressor.compress(HELD_OUT)
    assert compressor.compress(bytearray(HELD_OUT)) == blob
    assert compressor.compress(memoryview(HELD_OUT)) == blob
    assert compressor.decompress(memoryview(blob)) == HELD_OUT
    for wrong in ["text", 5, None, [1, 2]]:
        with pytest.raises(TypeError):
            compressor.compress(wrong)  # type: ignore[arg-type]


def test_module_level_functions(model_path: str) -> None:
    blob = lmz.compress(HELD_OUT)
    assert lmz.decompress(blob) == HELD_OUT
    assert lmz.default_compressor() is lmz.default_compressor()
    assert lmz.default_compressor().backend == "cpu"


# --- the same bytes as the CLI ---


def test_same_bytes_as_cli(compressor: lmz.Compressor, cli: Cli) -> None:
    for data in [HELD_OUT, UNICODE, CODE, b"", random_bytes(200, 3), *alice_paragraphs(2)]:
        assert compressor.compress(data) == cli.compress(data), data[:40]
    assert cli.decompress(compressor.compress(HELD_OUT)) == HELD_OUT


def test_decodes_the_clis_other_forms(compressor: lmz.Compressor, cli: Cli) -> None:
    # A full-form file of several model chunks (decoded in lock-step, one engine slot each),
    # and the compact tags of --no-ngram and --no-adapt: the decoder reads the policy from the file.
    text = b"\n\n".join(alice_paragraphs(3))
    multi = cli.compress(text, "--chunk-tokens", "40")
    i = lmz.info(multi)
    assert i["form"] == "full" and sum(c["method"] == "model" for c in i["chunks"]) >= 3
    assert (i["window"], i["stride"]) == (2048, 256)
    assert compressor.decompress(multi) == text
    for flag in ["--no-ngram", "--no-adapt"]:
        blob = cli.compress(HELD_OUT, flag)
        assert lmz.info(blob)["ngram"] is False
        assert compressor.decompress(blob) == HELD_OUT
    # The engine went back to one slot and still makes the CLI's bytes.
    assert compressor.compress(HELD_OUT) == cli.compress(HELD_OUT)


def test_eval_is_lmz_eval(compressor: lmz.Compressor, cli: Cli, tmp_path: Path) -> None:
    f = tmp_path / "held-out.txt"
    f.write_bytes(HELD_OUT)
    want = json.loads(cli.run(["eval", "--json", str(f)]))
    got = compressor.eval(HELD_OUT)
    assert (got["tokens"], got["bits"], got["bytes"]) == (want["tokens"], want["bits"], want["bytes"])
    assert got["bpb"] == pytest.approx(got["bits"] / len(HELD_OUT))
    assert got["policy"] == want["policy"]["description"]


def test_eval_of_nothing(compressor: lmz.Compressor) -> None:
    e = compressor.eval(b"")
    assert (e["bytes"], e["tokens"], e["bits"], e["bpb"]) == (0, 0, 0.0, 0.0)


def test_fetch_model_is_idempotent(model_path: str) -> None:
    # The pack is there with the pinned fingerprint: nothing is downloaded, its path comes back.
    said: list[str] = []
    assert lmz.fetch_model(model_path, log=said.append) == model_path
    assert len(said) == 1 and "present" in said[0] and lmz.PACK_FINGERPRINT in said[0]


def test_info(compressor: lmz.Compressor) -> None:
    blob = compressor.compress(HELD_OUT)
    i = compressor.info(blob)
    assert i == lmz.info(blob)
    assert i["form"] == "compact" and i["kv"] == "shift" and i["adapt"] and i["ngram"]
    assert lmz.PACK_FINGERPRINT.startswith(i["fingerprint"]) and compressor.fingerprint == lmz.PACK_FINGERPRINT
    assert i["compressed_length"] == len(blob)
    assert i["bpb"] == pytest.approx(8 * len(blob) / len(HELD_OUT))
    assert i["chunks"] == [
        {"method": "model", "original_length": len(HELD_OUT), "stored_length": i["chunks"][0]["stored_length"]}
    ]


def test_the_gpu_engine_makes_the_same_bytes(compressor: lmz.Compressor, model_path: str) -> None:
    # scripts/test.sh installs Mesa lavapipe (a software Vulkan adapter) for this.
    try:
        gpu = lmz.Compressor(model_path, backend="gpu")
    except lmz.GpuError as e:
        skip_outside_ci(f"no GPU adapter ({e.code}): apt-get install mesa-vulkan-drivers libvulkan1")
    assert gpu.backend == "gpu" and gpu.engine.startswith("GPU "), gpu.engine
    data = b"The keeper counted the ships twice."
    blob = gpu.compress(data)
    assert blob == compressor.compress(data)
    assert gpu.decompress(blob) == data
    # auto: a hardware adapter runs the model; a software one (lavapipe) leaves it to the CPU.
    auto = lmz.Compressor(model_path, backend="auto")
    assert auto.backend == ("cpu" if ", Cpu, " in gpu.engine else "gpu"), (auto.engine, gpu.engine)
    assert auto.compress(data) == blob


# --- errors ---


def test_every_code_has_a_class() -> None:
    # lmz.CODES is the Rust library's list (Error::CODES): a new code must be given a group.
    assert set(lmz.CODES) == set(_errors.CLASSES), set(lmz.CODES) ^ set(_errors.CLASSES)
    for code, cls in _errors.CLASSES.items():
        e = _errors._make(code, "why")
        assert type(e) is cls and isinstance(e, lmz.LmzError) and e.code == code
        assert str(e) == f"why [{code}]"
        back = pickle.loads(pickle.dumps(e))
        assert (type(back), back.code, back.message) == (cls, code, "why")
    assert issubclass(lmz.FormatError, ValueError) and issubclass(lmz.ArgumentError, ValueError)
    assert _errors._make("LMZ_SOMETHING_NEW", "x").__class__ is lmz.LmzError


def test_bad_arguments(model_path: str) -> None:
    with pytest.raises(lmz.ArgumentError) as e:
        lmz.Compressor(model_path, backend="tpu")  # type: ignore[arg-type]
    assert e.value.code == "LMZ_INVALID_ARGUMENT" and "tpu" in str(e.value)
    with pytest.raises(lmz.ArgumentError):
        lmz.Compressor(model_path, threads=0)
    with pytest.raises(lmz.ModelError) as m:
        lmz.Compressor("/nonexistent/pack.safetensors")
    assert m.value.code == "LMZ_MODEL_MISSING" and "fetch_model" in str(m.value)


def test_damaged_model_pack(tmp_path: Path) -> None:
    bad = tmp_path / "pack.safetensors"
    bad.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      " + bytes(100))
    with pytest.raises(lmz.ModelError) as e:
        lmz.Compressor(bad)
    assert e.value.code in {"LMZ_PACK", "LMZ_HASH_MISMATCH"}


def expect_format_error(c: lmz.Compressor, data: bytes, codes: set = None) -> str:
    if codes is None:
        codes = set(_errors.CLASSES)
    with pytest.raises(lmz.FormatError) as e:
        c.decompress(data)
    assert e.value.code in codes, (data.hex(), e.value)
    return e.value.code


def test_hostile_input_gets_typed_errors(compressor: lmz.Compressor, cli: Cli) -> None:
    short = b"The keeper counted the ships twice."
    blob = compressor.compress(short)  # compact form, ~15 bytes
    assert expect_format_error(compressor, b"garbage here") == "LMZ_FORMAT_BAD_MAGIC"
    assert expect_format_error(compressor, b"\xff\x00") == "LMZ_FORMAT_UNSUPPORTED_VERSION"  # reserved tag
    assert expect_format_error(compressor, with_wrong_checksum(blob)) == "LMZ_FORMAT_CHECKSUM"
    wrong_model = blob[:1] + bytes([blob[1] ^ 0xFF]) + blob[2:]
    assert expect_format_error(compressor, wrong_model) == "LMZ_FORMAT_MODEL_MISMATCH"
    # Every truncation and every byte flipped: an LmzError each time, never wrong data or a crash.
    seen = set()
    for n in range(len(blob)):
        seen.add(expect_format_error(compressor, blob[:n]))
    for i in range(len(blob)):
        seen.add(expect_format_error(compressor, blob[:i] + bytes([blob[i] ^ 0xA5]) + blob[i + 1 :]))
    assert {"LMZ_FORMAT_TRUNCATED", "LMZ_FORMAT_CHECKSUM"} <= seen
    # The full form: its checksum, its header crc, trailing bytes, a header claiming 2^60 bytes.
    full = cli.compress(HELD_OUT + UNICODE, "--chunk-tokens", "30")
    assert full[:4] == b"\x89LMZ"
    assert expect_format_error(compressor, with_wrong_checksum(full)) == "LMZ_FORMAT_CHECKSUM"
    assert expect_format_error(compressor, full[:20] + b"\x00" + full[21:]) == "LMZ_FORMAT_CORRUPT"
    assert expect_format_error(compressor, full + b"x") == "LMZ_FORMAT_CORRUPT"
    huge = full[:46] + (1 << 60).to_bytes(8, "little") + full[54:]
    expect_format_error(compressor, huge, {"LMZ_FORMAT_CORRUPT", "LMZ_FORMAT_TRUNCATED"})
    # …and the compressor still works.
    assert compressor.decompress(blob) == short


def test_hostile_input_never_crashes_the_interpreter(model_path: str) -> None:
    # In a child process, so that a crash (abort, segfault) shows as its exit status.
    code = f"""
import sys, lmz
c = lmz.Compressor({model_path!r}, threads=1)
orig = b"abc " * 20
blob = c.compress(orig)
n = 0
for i in range(len(blob)):
    for x in (0x01, 0x80):
        try:
            if c.decompress(blob[:i] + bytes([blob[i] ^ x]) + blob[i + 1:]) != orig:
                sys.exit(f"byte {{i}} ^ {{x}}: wrong data passed every check")
        except lmz.LmzError:
            n += 1
print("errors", n)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=600, check=False)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    assert r.stdout.startswith(b"errors ")


# --- batches ---


def test_many_equals_one_by_one(compressor: lmz.Compressor) -> None:
    items = [HELD_OUT, b"", CODE, random_bytes(50, 4)]
    blobs = compressor.compress_many(items)
    assert blobs == [compressor.compress(d) for d in items]
    assert compressor.decompress_many(iter(blobs)) == items


def test_many_errors(compressor: lmz.Compressor) -> None:
    good = compressor.compress_many([HELD_OUT, CODE])
    batch = [good[0], with_wrong_checksum(good[1]), b"nope", good[1]]
    out = compressor.decompress_many(batch, errors="return")
    assert out[0] == HELD_OUT and out[3] == CODE
    assert isinstance(out[1], lmz.FormatError) and out[1].code == "LMZ_FORMAT_CHECKSUM"
    assert isinstance(out[2], lmz.FormatError) and out[2].code == "LMZ_FORMAT_BAD_MAGIC"
    with pytest.raises(lmz.FormatError) as e:
        compressor.decompress_many(batch)
    assert e.value.code == "LMZ_FORMAT_CHECKSUM" and e.value.item == 1  # type: ignore[attr-defined]
    with pytest.raises(lmz.ArgumentError):
        compressor.decompress_many(batch, errors="ignore")  # type: ignore[call-overload]
    with pytest.raises(TypeError):
        compressor.compress_many([b"ok", "not bytes"])  # type: ignore[list-item]


def test_decompress_many_is_decompress_item_by_item(compressor: lmz.Compressor) -> None:
    # One library call decodes the short items in lock-step; each must come out byte for
    # byte as its own `decompress` call, and a damaged item must fail with the error that
    # call gives while the items around it decode.
    items = [*alice_paragraphs(8), HELD_OUT, UNICODE, CODE, b"", random_bytes(60, 5), b"\n\n".join(alice_paragraphs(4))]
    blobs = [compressor.compress(d) for d in items]
    assert compressor.compress_many(items) == blobs
    singles = [compressor.decompress(b) for b in blobs]
    assert singles == items
    assert compressor.decompress_many(blobs) == singles

    flipped = bytearray(blobs[2])
    flipped[-3] ^= 0x10  # in the coded payload: decodes to other bytes
    damaged = {2: bytes(flipped), 5: with_wrong_checksum(blobs[5]), 9: blobs[9][: len(blobs[9]) // 2]}
    batch = [damaged.get(i, b) for i, b in enumerate(blobs)]
    out = compressor.decompress_many(batch, errors="return")
    for i, b in enumerate(batch):
        if i not in damaged:
            assert out[i] == items[i], i
            continue
        with pytest.raises(lmz.LmzError) as one:
            compressor.decompress(b)
        got = out[i]
        assert isinstance(got, lmz.LmzError), (i, got)
        assert (type(got), got.code, str(got)) == (type(one.value), one.value.code, str(one.value)), i
    with pytest.raises(lmz.LmzError) as first:
        compressor.decompress_many(batch)
    assert first.value.item == 2  # type: ignore[attr-defined]


# --- threads ---


def test_threads_share_one_compressor(compressor: lmz.Compressor) -> None:
    items = [HELD_OUT, CODE, alice_paragraphs(1)[0]]
    want = [compressor.compress(d) for d in items]
    results: list[list[bytes]] = [[] for _ in range(3)]

    def work(k: int) -> None:
        for j in range(len(items)):
            d = items[(j + k) % len(items)]
            blob = compressor.compress(d)
            assert compressor.decompress(blob) == d
            results[k].append(blob)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(3):
        assert results[k] == [want[(j + k) % len(items)] for j in range(len(items))]


def test_threads_each_their_own(model_path: str, compressor: lmz.Compressor) -> None:
    items = alice_paragraphs(2)
    want = [compressor.compress(d) for d in items]
    got: list[list[bytes]] = [[], []]

    def work(k: int) -> None:
        c = lmz.Compressor(model_path, threads=1)
        assert c.threads == 1
        got[k] = c.compress_many(items)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == [want, want]


def test_the_gil_is_released(compressor: lmz.Compressor) -> None:
    # A Python thread counts while the main thread decompresses: with the GIL held for the
    # call, it could not count at all in between.
    blob = compressor.compress(b"\n\n".join(alice_paragraphs(3)))
    counts = [0]
    stop = threading.Event()

    def count() -> None:
        while not stop.is_set():
            counts[0] += 1

    t = threading.Thread(target=count)
    t.start()
    time.sleep(0.05)
    before = counts[0]
    t0 = time.perf_counter()
    compressor.decompress(blob)
    secs = time.perf_counter() - t0
    during = counts[0] - before
    stop.set()
    t.join()
    assert secs > 0.2, "the call is too short to tell"
    assert during > 10_000 * secs, (during, secs)


# --- progress and interruption ---


def test_progress(compressor: lmz.Compressor) -> None:
    data = b"\n\n".join(alice_paragraphs(2))
    calls: list[tuple] = []
    blob = compressor.compress(data, progress=lambda d, t: calls.append((d, t)))
    assert calls and calls[-1] == (len(data), len(data))
    assert all(a[0] <= b[0] for a, b in zip(calls, calls[1:]))
    calls.clear()
    assert compressor.decompress(blob, progress=lambda d, t: calls.append((d, t))) == data
    assert calls[-1] == (len(data), len(data))
    calls.clear()
    compressor.compress_many([b"x", b"y", b"z"], progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (3, 3)


def test_an_exception_in_progress_stops_the_call(compressor: lmz.Compressor) -> None:
    # Decoding reports every 256 bytes and stops at its next report after the exception: by
    # ~512 of these ~1,300 bytes.
    data = b"\n\n".join(alice_paragraphs(6))
    blob = compressor.compress(data)
    t0 = time.perf_counter()
    assert compressor.decompress(blob) == data
    full = time.perf_counter() - t0

    class Stop(Exception):
        pass

    def stop(d: int, t: int) -> None:
        raise Stop

    t0 = time.perf_counter()
    with pytest.raises(Stop):
        compressor.decompress(blob, progress=stop)
    assert time.perf_counter() - t0 < 0.7 * full, "it did not stop"
    assert compressor.decompress(compressor.compress(HELD_OUT)) == HELD_OUT  # still usable


def test_ctrl_c_interrupts_a_call(model_path: str) -> None:
    # Decoding stops at its next progress step (every 256 bytes): well before the end.
    text = b"\n\n".join(alice_paragraphs(6))
    code = f"""
import os, signal, threading, time, lmz
c = lmz.Compressor({model_path!r})
blob = c.compress({text!r})
t0 = time.perf_counter()
c.decompress(blob)
full = time.perf_counter() - t0
threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
t0 = time.perf_counter()
try:
    c.decompress(blob)
    print("finished", time.perf_counter() - t0, full)
except KeyboardInterrupt:
    print("interrupted", time.perf_counter() - t0, full)
print(c.decompress(c.compress(b"still works")) == b"still works")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=600, check=False)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    words = r.stdout.decode().split()
    assert words[0] == "interrupted", r.stdout
    assert float(words[1]) < 0.6 * float(words[2]), r.stdout
    assert words[3] == "True", r.stdout


# --- the stubs ---


def test_stubs_match_the_module() -> None:
    stub = ast.parse((Path(lmz.__file__).parent / "_lmz.pyi").read_text())
    names = {n.name for n in stub.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    names |= {t.id for n in stub.body if isinstance(n, ast.AnnAssign) for t in [n.target] if isinstance(t, ast.Name)}
    typed_dicts = {"Info", "ChunkInfo", "Eval"}
    runtime = {n for n in dir(lmz._lmz) if not n.startswith("_") or n == "__version__"}
    assert names - typed_dicts == runtime, (names - typed_dicts) ^ runtime
    cls = next(n for n in stub.body if isinstance(n, ast.ClassDef) and n.name == "Compressor")
    methods = {n.name for n in cls.body if isinstance(n, ast.FunctionDef)} - {"__init__"}
    assert methods == {n for n in dir(lmz.Compressor) if not n.startswith("_")}
    assert (Path(lmz.__file__).parent / "py.typed").is_file()

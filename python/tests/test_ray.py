"""lmz.ray on a local Ray cluster of 2 CPUs: files through model-holding actors, every output
equal to the CLI's bytes, every round trip exact, damaged files reported with their codes
without stopping the job; rows of text; the command line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Cli, alice_paragraphs, skip_outside_ci, with_wrong_checksum

try:
    import lmz.ray as lray
    import ray
    import ray.data
except ImportError as e:  # pragma: no cover - what the skip says
    ray = None
    RAY_MISSING = f"Ray Data is not installed ({e}): pip install 'ray[data]'"


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    if ray is None:
        skip_outside_ci(RAY_MISSING)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning", log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def make_tree(root: Path, texts: list[bytes]) -> list[str]:
    """``texts`` as files under ``root``, a few of them in a subfolder; their relative paths."""
    rels = []
    for i, t in enumerate(texts):
        rel = f"part-{i:02d}.txt" if i % 7 else f"sub/dir/part-{i:02d}.txt"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(t)
        rels.append(rel)
    return sorted(rels)


def test_files_through_actors(cluster: str, cli: Cli, model_path: str, tmp_path: Path) -> None:
    texts = alice_paragraphs(22)
    src, dst = tmp_path / "src", tmp_path / "lmz"
    rels = make_tree(src, texts)

    report = lray.run_files("compress", str(src), str(dst), actors=2, batch_size=4, model=model_path, progress=False)
    assert report.ok, report.summary()
    assert [r["path"] for r in report.rows] == rels
    assert sum(r["model_seconds"] for r in report.rows) > 0
    # Every output is the CLI's file of the same original.
    theirs = tmp_path / "cli"
    shutil.copytree(src, theirs)
    cli.compress_files([theirs / r for r in rels])
    for r in rels:
        assert (dst / (r + ".lmz")).read_bytes() == (theirs / (r + ".lmz")).read_bytes(), r
    assert sorted(str(p.relative_to(dst)) for p in dst.rglob("*") if p.is_file()) == [r + ".lmz" for r in rels]

    # verify decodes every file and compares it with its original.
    v = lray.run_files("verify", str(src), str(dst), actors=2, batch_size=4, model=model_path, progress=False)
    assert v.ok and len(v.rows) == len(rels), v.summary()

    # Damaged files fail their rows with their codes; the job goes on and restores the rest.
    bad = tmp_path / "bad"
    shutil.copytree(dst, bad)
    wrong, short, gone = rels[3], rels[8], rels[12]
    (bad / (wrong + ".lmz")).write_bytes(with_wrong_checksum((dst / (wrong + ".lmz")).read_bytes()))
    (bad / (short + ".lmz")).write_bytes((dst / (short + ".lmz")).read_bytes()[:4])
    (bad / (gone + ".lmz")).unlink()
    out = tmp_path / "restored"
    d = lray.run_files("decompress", str(bad), str(out), actors=2, batch_size=4, model=model_path, progress=False)
    codes: dict[str, str] = {r["path"]: r["error"] for r in d.failed}
    assert codes == {wrong + ".lmz": "LMZ_FORMAT_CHECKSUM", short + ".lmz": "LMZ_FORMAT_TRUNCATED"}, d.summary()
    for r in rels:
        if r in (wrong, short, gone):
            assert not (out / r).exists(), r
        else:
            assert (out / r).read_bytes() == (src / r).read_bytes(), r
    assert "LMZ_FORMAT_CHECKSUM" in d.summary() and "FAILED" in d.summary()
    v = lray.run_files("verify", str(src), str(bad), actors=1, model=model_path, progress=False)
    assert {r["path"]: r["error"] for r in v.failed} == {
        wrong + ".lmz": "LMZ_FORMAT_CHECKSUM",
        short + ".lmz": "LMZ_FORMAT_TRUNCATED",
        gone + ".lmz": "MISSING",
    }


def test_rows_of_text(cluster: str, cli: Cli, model_path: str) -> None:
    texts = ["A short note about the weather.", "Ünïcödé row — 東京.", ""]
    ds = ray.data.from_items([{"id": i, "text": t} for i, t in enumerate(texts)])
    ds = ds.map_batches(
        lray.Compress,
        fn_constructor_kwargs={"column": "text", "model": model_path},
        compute=ray.data.ActorPoolStrategy(size=1),
        num_cpus=1,
        batch_size=2,
        batch_format="numpy",
    )
    ds = ds.map_batches(
        lray.Decompress,
        fn_constructor_kwargs={"column": "lmz", "out": "back", "model": model_path},
        compute=ray.data.ActorPoolStrategy(size=1),
        num_cpus=1,
        batch_size=2,
        batch_format="numpy",
    )
    rows = sorted(ds.take_all(), key=lambda r: r["id"])
    for r, t in zip(rows, texts):
        assert r["lmz"] == cli.compress(t.encode()), t
        assert r["back"] == t.encode() and r["lmz_error"] == "" and r["back_error"] == ""
        assert r["input_size"] == len(r["lmz"])  # the Decompress stage's input


def test_the_command(cluster: str, cli: Cli, model_path: str, tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "lmz"
    rels = make_tree(src, alice_paragraphs(3))
    env = {**os.environ, "RAY_ADDRESS": cluster}
    run = [sys.executable, "-m", "lmz.ray"]
    common = ["--model", model_path, "--actors", "1", "--batch-size", "2"]
    r = subprocess.run([*run, "compress", str(src), str(dst), *common], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "3 of 3 files ok" in r.stdout
    assert "compress 3/3 files" in r.stderr  # the progress lines
    (dst / (rels[1] + ".lmz")).write_bytes(b"\x89LMZ\x07")
    (src / rels[2]).write_bytes((src / rels[2]).read_bytes() + b"!")  # the original changed since
    report = tmp_path / "report.json"
    r = subprocess.run(
        [*run, "verify", str(src), str(dst), *common, "--report", str(report), "-q"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"FAILED {rels[1]}.lmz: LMZ_FORMAT_UNSUPPORTED_VERSION" in r.stdout
    rows = json.loads(report.read_text())["files"]
    errors = {rels[1]: "LMZ_FORMAT_UNSUPPORTED_VERSION", rels[2]: "MISMATCH"}
    assert [(x["path"], x["error"]) for x in rows] == [(p + ".lmz", errors.get(p, "")) for p in rels]
    r = subprocess.run(
        [*run, "verify", str(src), str(tmp_path / "nowhere"), *common], env=env, capture_output=True, text=True
    )
    assert r.returncode == 1 and "no such file or directory" in r.stderr

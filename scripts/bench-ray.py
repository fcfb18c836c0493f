#!/usr/bin/env python3
"""The Ray Data job (lmz.ray) against the CLI on the same small files, side by side in one run.

    python scripts/bench-ray.py [--files 20] [--lmz PATH] [--cpus 2] [--decompress]

Run it with the Python that has the lmz package and Ray (scripts/test.sh python makes one:
~/.cache/lmz/venv-python). It writes --files paragraphs of samples/alice29.txt of 100–300
bytes as files, then times, on a local Ray cluster of --cpus CPUs:

- the CLI on all of them in one process (`lmz -k -f -q --threads T FILE…`: the model loads
  once), T = 1 and T = --cpus;
- `lmz.ray.run_files("compress", …)` with 1 actor of 1 CPU, --cpus actors of 1 CPU, and 1
  actor of --cpus CPUs (each actor's engine runs as many threads as it has CPUs), checking
  that every output is the CLI's file;
- with --decompress, the same for decompression (`lmz -d`, `run_files("decompress")`).

and prints a Markdown table (wall seconds including actor start-up and model load; bytes of
originals per second; the seconds the actors spent in the model, Σ over rows; Ray's
overhead per file = (wall − model seconds / actors) / files) and the 10 GB extrapolation at
the measured per-core rate. BENCHMARKS.md ("Python and Ray") records its output.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Tuple

ROOT = Path(__file__).resolve().parents[1]


def paragraphs(n: int) -> List[bytes]:
    text = (ROOT / "samples" / "alice29.txt").read_bytes().replace(b"\r\n", b"\n")
    out = [p.strip() for p in text.split(b"\n\n") if 100 <= len(p.strip()) <= 300][:n]
    if len(out) < n:
        sys.exit(f"only {len(out)} paragraphs of 100–300 bytes")
    return out


def cpu_model() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def timed_cli(lmz: Path, args: List[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([str(lmz), *args], check=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=20)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--lmz", type=Path, default=Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/lmz/target")) / "ci/lmz")
    ap.add_argument("--model", default=None)
    ap.add_argument("--decompress", action="store_true", help="also time decompression")
    ap.add_argument("--batch-size", type=int, default=4)
    a = ap.parse_args()

    import ray
    import ray.data

    import lmz
    import lmz.ray as lray

    model = a.model or lmz.default_model_path()
    texts = paragraphs(a.files)
    total = sum(map(len, texts))
    work = Path(tempfile.mkdtemp(prefix="lmz-bench-ray-"))
    src = work / "src"
    src.mkdir()
    names = []
    for i, t in enumerate(texts):
        (src / f"p{i:03d}.txt").write_bytes(t)
        names.append(f"p{i:03d}.txt")

    rows: List[Tuple[str, str, float, float, int]] = []  # (what, config, seconds, model s, actors)
    # The CLI, one process over all files.
    cli_secs = {}
    for t in sorted({1, a.cpus}):
        d = work / f"cli{t}"
        shutil.copytree(src, d)
        secs = timed_cli(a.lmz, ["--model", model, "-k", "-f", "-q", "--threads", str(t), *[str(d / n) for n in names]])
        cli_secs[("compress", t)] = secs
        rows.append(("compress", f"CLI, one process, --threads {t}", secs, float("nan"), 0))
        if a.decompress:
            for n in names:
                (d / n).unlink()
            secs = timed_cli(a.lmz, ["--model", model, "-d", "-k", "-f", "-q", "--threads", str(t), *[str(d / (n + ".lmz")) for n in names]])
            cli_secs[("decompress", t)] = secs
            rows.append(("decompress", f"CLI, one process, --threads {t}", secs, float("nan"), 0))
    reference = work / f"cli{a.cpus}"

    ray.init(num_cpus=a.cpus, include_dashboard=False, logging_level="warning", log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    # (actors, CPUs each, batch size); the batch of 1 file measures Ray's cost per batch.
    configs = [(1, 1, a.batch_size), (1, 1, 1), (a.cpus, 1, a.batch_size), (1, a.cpus, a.batch_size)]
    per_core = []
    outside = {}  # batch size → wall − model seconds, 1 actor × 1 CPU
    for actors, cpus, bs in configs:
        dst = work / f"ray-{actors}x{cpus}-{bs}"
        r = lray.run_files("compress", str(src), str(dst), actors=actors, cpus_per_actor=cpus,
                           batch_size=bs, model=model, progress=False)
        assert r.ok, r.summary()
        for n in names:
            assert (dst / (n + ".lmz")).read_bytes() == (reference / (n + ".lmz")).read_bytes(), n
        model_s = sum(x["model_seconds"] for x in r.rows)
        rows.append(("compress", f"Ray, {actors} actor(s) × {cpus} CPU, batches of {bs}", r.seconds, model_s, actors))
        if cpus == 1:
            per_core.append(total / model_s)
        if (actors, cpus) == (1, 1):
            outside[bs] = r.seconds - model_s
        if a.decompress and bs == a.batch_size:
            out = work / f"ray-{actors}x{cpus}-d"
            r = lray.run_files("decompress", str(dst), str(out), actors=actors, cpus_per_actor=cpus,
                               batch_size=bs, model=model, progress=False)
            assert r.ok, r.summary()
            for n in names:
                assert (out / n).read_bytes() == (src / n).read_bytes(), n
            model_s = sum(x["model_seconds"] for x in r.rows)
            rows.append(("decompress", f"Ray, {actors} actor(s) × {cpus} CPU, batches of {bs}", r.seconds, model_s, actors))
    ray.shutdown()

    print(f"\n{a.files} files, {total:,} bytes (paragraphs of samples/alice29.txt of 100–300 bytes); "
          f"{cpu_model()}, {os.cpu_count()} cores; local Ray cluster of {a.cpus} CPUs, batch size {a.batch_size}; "
          f"lmz.__version__ {lmz.__version__}, ray {ray.__version__}\n")
    print("| job | how | wall s | B/s of originals | × the CLI at --threads 1 | s in the model (Σ rows) | wall − model s / actors |")
    print("|---|---|---|---|---|---|---|")
    for what, how, secs, model_s, actors in rows:
        base = cli_secs.get((what, 1), float("nan"))
        print(f"| {what} | {how} | {secs:.2f} | {total / secs:,.0f} | {base / secs:.2f} | "
              + ("—" if not actors else f"{model_s:.2f} | {secs - model_s / actors:.2f}") + (" | — |" if not actors else " |"))
    if 1 in outside and a.batch_size in outside and a.batch_size > 1:
        batches = a.files - -(-a.files // a.batch_size)
        per_batch = (outside[1] - outside[a.batch_size]) / batches
        print(f"\nRay's time outside the model, 1 actor × 1 CPU: {outside[a.batch_size]:.2f} s with batches of "
              f"{a.batch_size}, {outside[1]:.2f} s with batches of 1: {per_batch * 1000:.0f} ms per batch; the rest, "
              f"{outside[a.batch_size] - per_batch * -(-a.files // a.batch_size):.2f} s, is the job's start "
              f"(the actor, its model load, the file listing) and end")
    rate = min(per_core) if per_core else float("nan")
    print(f"\nper-core rate in the model (compress, 1-CPU actors, the slower of the runs): {rate:,.0f} B/s")
    for nodes, cores in [(1, 16), (10, 16), (100, 16)]:
        secs = 10e9 / (rate * nodes * cores)
        print(f"10 GB on {nodes} node(s) × {cores} cores: {secs / 3600:,.1f} h ({secs / 86400:,.2f} days)")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The Ray Data job (lmz.ray) against the CLI on the same small files, side by side in one run.

    python scripts/bench-ray.py [--files 20] [--lmz PATH] [--cpus 2] [--rounds 3] [--decompress]

Run it with the Python that has the lmz package and Ray (scripts/test.sh python makes one:
~/.cache/lmz/venv-python). It writes --files paragraphs of samples/alice29.txt of 100–300
bytes as files, then times, on a local Ray cluster of --cpus CPUs:

- the CLI on all of them in one process (`lmz -k -f -q --threads T FILE…`: the model loads
  once), T = 1 and T = --cpus;
- `lmz.ray.run_files("compress", …)` with 1 actor of 1 CPU, --cpus actors of 1 CPU, and 1
  actor of --cpus CPUs (each actor's engine runs as many threads as it has CPUs), checking
  that every output is the CLI's file;
- with --decompress, the same for decompression (`lmz -d`, `run_files("decompress")`).

each configuration once per round (--rounds, back to back), and prints a Markdown table of
medians (wall seconds including actor start-up and model load; bytes of originals per
second; the seconds the actors spent in the model, Σ over rows; wall − model seconds /
actors: Ray's time outside the model), 2 actors against 1, Ray's cost per batch (batches of
1 file against batches of --batch-size), and the 10 GB extrapolation at the measured
per-core rate. BENCHMARKS.md ("Python and Ray") records its output.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def paragraphs(n: int) -> list[bytes]:
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


def timed_cli(lmz: Path, args: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([str(lmz), *args], check=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=20)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument(
        "--lmz",
        type=Path,
        default=Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/lmz/target")) / "ci/lmz",
    )
    ap.add_argument("--model", default=None)
    ap.add_argument("--decompress", action="store_true", help="also time decompression")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=1, help="repeat every configuration (medians)")
    a = ap.parse_args()

    import lmz
    import lmz.ray as lray
    import ray
    import ray.data

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

    # Every configuration once per round, rounds back to back (the machine is shared and
    # noisy: the table gives each one's median and range over the rounds).
    times: dict[tuple[str, str], list[tuple[float, float, int]]] = {}  # → [(wall s, model s, actors)]

    def record(what: str, how: str, secs: float, model_s: float = float("nan"), actors: int = 0) -> None:
        times.setdefault((what, how), []).append((secs, model_s, actors))

    # (actors, CPUs each, batch size); a batch of 1 file measures Ray's cost per batch.
    configs = [(1, 1, a.batch_size), (1, 1, 1), (a.cpus, 1, a.batch_size), (1, a.cpus, a.batch_size)]
    load0 = os.getloadavg()[0]
    ray.init(num_cpus=a.cpus, include_dashboard=False, logging_level="warning", log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    warm = work / "warm"
    warm.mkdir()
    (warm / "w.txt").write_bytes(texts[0])
    for rnd in range(a.rounds):
        # Ray ends idle worker processes: a first job after a pause starts them again (the
        # cold start: in round 1, the cluster's too), which every configuration would pay in
        # turn. A small job first, timed apart, so that the table compares warm jobs.
        t0 = time.perf_counter()
        for actors, cpus, _ in configs:
            lray.run_files(
                "compress",
                str(warm),
                str(work / "warm-out"),
                actors=actors,
                cpus_per_actor=cpus,
                model=model,
                progress=False,
            )
        record("warm-up", "Ray, one 1-file job of each actor shape", time.perf_counter() - t0)
        # The CLI, one process over all files (the model loads once).
        for t in sorted({1, a.cpus}):
            d = work / f"cli{t}"
            shutil.rmtree(d, ignore_errors=True)
            shutil.copytree(src, d)
            secs = timed_cli(
                a.lmz, ["--model", model, "-k", "-f", "-q", "--threads", str(t), *[str(d / n) for n in names]]
            )
            record("compress", f"CLI, one process, --threads {t}", secs)
            if a.decompress:
                for n in names:
                    (d / n).unlink()
                secs = timed_cli(
                    a.lmz,
                    [
                        "--model",
                        model,
                        "-d",
                        "-k",
                        "-f",
                        "-q",
                        "--threads",
                        str(t),
                        *[str(d / (n + ".lmz")) for n in names],
                    ],
                )
                record("decompress", f"CLI, one process, --threads {t}", secs)
        reference = work / f"cli{a.cpus}"
        for actors, cpus, bs in configs:
            how = f"Ray, {actors} actor{'s' if actors > 1 else ''} × {cpus} CPU, batches of {bs}"
            dst = work / f"ray-{actors}x{cpus}-{bs}"
            shutil.rmtree(dst, ignore_errors=True)
            r = lray.run_files(
                "compress",
                str(src),
                str(dst),
                actors=actors,
                cpus_per_actor=cpus,
                batch_size=bs,
                model=model,
                progress=False,
            )
            assert r.ok, r.summary()
            for n in names:
                assert (dst / (n + ".lmz")).read_bytes() == (reference / (n + ".lmz")).read_bytes(), n
            record("compress", how, r.seconds, sum(x["model_seconds"] for x in r.rows), actors)
            if a.decompress and bs == a.batch_size:
                out = work / f"ray-{actors}x{cpus}-d"
                shutil.rmtree(out, ignore_errors=True)
                r = lray.run_files(
                    "decompress",
                    str(dst),
                    str(out),
                    actors=actors,
                    cpus_per_actor=cpus,
                    batch_size=bs,
                    model=model,
                    progress=False,
                )
                assert r.ok, r.summary()
                for n in names:
                    assert (out / n).read_bytes() == (src / n).read_bytes(), n
                record("decompress", how, r.seconds, sum(x["model_seconds"] for x in r.rows), actors)
        print(f"round {rnd + 1}/{a.rounds} done", file=sys.stderr)
    ray.shutdown()
    load1 = os.getloadavg()[0]

    def med(what: str, how: str, i: int = 0) -> float:
        return statistics.median(x[i] for x in times[(what, how)])

    print(
        f"\n{a.files} files, {total:,} bytes (paragraphs of samples/alice29.txt of 100–300 bytes); "
        f"{cpu_model()}, {os.cpu_count()} cores, load average {load0:.1f} before and {load1:.1f} after; "
        f"local Ray cluster of {a.cpus} CPUs; {a.rounds} round(s), medians [min–max]; "
        f"lmz {lmz.__version__}, ray {ray.__version__}\n"
    )
    print(
        "| job | how | wall s | B/s of originals | speed × the CLI at --threads 1 "
        "| s in the model (Σ rows) | wall − model s / actors |"
    )
    print("|---|---|---|---|---|---|---|")
    for (what, how), xs in times.items():
        if what == "warm-up":
            continue
        walls = [x[0] for x in xs]
        secs, model_s, actors = med(what, how), med(what, how, 1), xs[0][2]
        base = med(what, "CLI, one process, --threads 1")
        extra = f"{model_s:.2f} | {secs - model_s / actors:.2f}" if actors else "— | —"
        print(
            f"| {what} | {how} | {secs:.2f} [{min(walls):.2f}–{max(walls):.2f}] | {total / secs:,.0f} | "
            f"{base / secs:.2f} | {extra} |"
        )
    one = f"Ray, 1 actor × 1 CPU, batches of {a.batch_size}"
    many = f"Ray, {a.cpus} actors × 1 CPU, batches of {a.batch_size}"
    print(
        f"\ncompress, {a.cpus} actors against 1 (1 CPU each): "
        f"{med('compress', one) / med('compress', many):.2f}× faster"
    )
    if a.decompress:
        print(f"decompress, {a.cpus} actors against 1: {med('decompress', one) / med('decompress', many):.2f}× faster")
    outside = {
        bs: med("compress", f"Ray, 1 actor × 1 CPU, batches of {bs}")
        - med("compress", f"Ray, 1 actor × 1 CPU, batches of {bs}", 1)
        for bs in {1, a.batch_size}
    }
    if a.batch_size > 1:
        nb = -(-a.files // a.batch_size)
        per_batch = (outside[1] - outside[a.batch_size]) / (a.files - nb)
        print(
            f"Ray's time outside the model, 1 actor × 1 CPU: {outside[a.batch_size]:.2f} s "
            f"in batches of {a.batch_size}, "
            f"{outside[1]:.2f} s in batches of 1: {per_batch * 1000:.0f} ms per batch; the rest, "
            f"{outside[a.batch_size] - per_batch * nb:.2f} s, is the job's start (actor, model load, listing) and end"
        )
    # Per core: bytes over the seconds the actors spent in the model, with every core busy.
    warmups = [x[0] for x in times[("warm-up", "Ray, one 1-file job of each actor shape")]]
    print(f"warm-up before each round ({len(configs)} one-file jobs): {', '.join(f'{w:.1f}' for w in warmups)} s")
    rate = total / med("compress", many, 1)
    print(f"\nper-core rate in the model, compress, {a.cpus} actors × 1 CPU: {rate:,.0f} B/s")
    for nodes, cores in [(1, 16), (10, 16), (100, 16)]:
        secs = 10e9 / (rate * nodes * cores)
        print(f"10 GB on {nodes} node(s) × {cores} cores: {secs / 3600:,.1f} h ({secs / 86400:,.2f} days)")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()

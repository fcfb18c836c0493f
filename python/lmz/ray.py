"""Corpus-scale lmz on Ray Data: model-holding actors, on one machine or a cluster.

Each actor of a Ray Data ``map_batches`` stage holds one :class:`lmz.Compressor` (the model
loads once per actor) and codes its batches with ``compress_many`` / ``decompress_many``;
a row that fails carries its ``LMZ_*`` code instead of stopping the job. Every file is byte
for byte what ``lmz -c`` makes of it.

From the command line (the model pack must be where ``lmz.default_model_path()`` or
``--model`` says, on every node)::

    python -m lmz.ray compress   SRC DST [--actors N]   # DST/<path>.lmz for every file under SRC
    python -m lmz.ray verify     SRC DST                # decode DST's .lmz files, compare with SRC
    python -m lmz.ray decompress DST OUT                # OUT/<path> from DST/<path>.lmz

On a cluster the same command runs as a Ray job (``ray job submit -- python -m lmz.ray …``,
or with ``RAY_ADDRESS`` set): SRC and DST are then paths every node sees (a shared file
system, or ``s3://…`` / ``gs://…`` through pyarrow's file systems), and ``--actors`` is
the number of model copies — one per CPU core with ``--cpus-per-actor 1``, or one per GPU
with ``--gpus-per-actor 1`` (which selects ``--backend gpu``).

For rows of a dataset you already have (text or bytes), use the callable classes::

    ds = ray.data.read_parquet("s3://bucket/chats/")
    ds = ds.map_batches(lmz.ray.Compress, fn_constructor_kwargs={"column": "text"},
                        compute=ray.data.ActorPoolStrategy(size=8), num_cpus=1, batch_size=32)
    ds.write_parquet("s3://bucket/chats-lmz/")     # a binary column "lmz", and "lmz_error"
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import lmz

try:
    import numpy as np
    import pyarrow.fs as pafs
    import ray
    import ray.data
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(f"lmz.ray needs Ray Data ({e}): pip install 'ray[data]' (or the lmz[ray] extra)") from e

SUFFIX = ".lmz"

# --- the callable classes: one compressor per actor ---


def _actor_threads(threads: int | None) -> int | None:
    """The CPU engine's threads: as given, else the CPUs Ray reserved for this actor (its
    ``num_cpus``, at least 1), else (outside Ray) one per core."""
    if threads:
        return threads
    try:
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
    except Exception:  # not in a Ray worker
        return None
    return max(1, int(round(cpus))) if cpus else 1


def _as_bytes(x: Any) -> bytes:
    if isinstance(x, str):
        return x.encode("utf-8")
    if isinstance(x, (bytes, bytearray, memoryview)):
        return bytes(x)
    if isinstance(x, np.ndarray) and x.dtype == np.uint8:
        return x.tobytes()
    raise TypeError(f"lmz.ray: a row holds {type(x).__name__}, not bytes or str")


class _Coder:
    """What the callable classes share: the compressor, and the per-row outcome columns."""

    def __init__(self, column: str, out: str, model: str | None, backend: str, threads: int | None) -> None:
        self.column = column
        self.out = out
        self.compressor = lmz.Compressor(model, backend=backend, threads=_actor_threads(threads))

    def _code(self, batch: dict[str, np.ndarray], decode: bool) -> dict[str, np.ndarray]:
        items = [_as_bytes(x) for x in batch[self.column]]
        t0 = time.perf_counter()
        if decode:
            results = self.compressor.decompress_many(items, errors="return")
        else:
            results = self.compressor.compress_many(items, errors="return")
        secs = time.perf_counter() - t0
        n = len(items)
        batch[self.out] = _objects([r if isinstance(r, bytes) else b"" for r in results])
        batch[f"{self.out}_error"] = np.array([r.code if isinstance(r, lmz.LmzError) else "" for r in results])
        batch[f"{self.out}_message"] = np.array([str(r) if isinstance(r, lmz.LmzError) else "" for r in results])
        batch["input_size"] = np.array([len(x) for x in items], dtype=np.int64)
        batch["output_size"] = np.array([len(r) if isinstance(r, bytes) else 0 for r in results], dtype=np.int64)
        # Each row's even share of its batch's time in the model (the batch runs as one call).
        batch["model_seconds"] = np.full(n, secs / max(n, 1))
        return batch


def _objects(items: Sequence[Any]) -> np.ndarray:
    a = np.empty(len(items), dtype=object)
    a[:] = list(items)
    return a


class Compress(_Coder):
    """``Dataset.map_batches`` callable: compresses column ``column`` (bytes, or str as
    UTF-8) into the binary column ``out`` (default ``"lmz"``), beside ``out + "_error"``
    (the ``LMZ_*`` code of a row that failed, else ``""``), ``out + "_message"``,
    ``input_size``, ``output_size`` and ``model_seconds``. ``threads`` defaults to the CPUs
    the actor reserved (``num_cpus``)."""

    def __init__(
        self,
        column: str = "bytes",
        out: str = "lmz",
        model: str | None = None,
        backend: str = "cpu",
        threads: int | None = None,
    ) -> None:
        super().__init__(column, out, model, backend, threads)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._code(batch, decode=False)


class Decompress(_Coder):
    """``Dataset.map_batches`` callable: decompresses the .lmz files in column ``column``
    (default ``"lmz"``) into the binary column ``out`` (default ``"data"``), with the same
    outcome columns as :class:`Compress` (a damaged row: its ``LMZ_FORMAT_*`` code)."""

    def __init__(
        self,
        column: str = "lmz",
        out: str = "data",
        model: str | None = None,
        backend: str = "cpu",
        threads: int | None = None,
    ) -> None:
        super().__init__(column, out, model, backend, threads)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._code(batch, decode=True)


# --- files: where they are, and writing them from the actors ---


def _fs(uri: str) -> tuple[pafs.FileSystem, str]:
    """A path or URI as pyarrow's (file system, path), local paths made absolute."""
    if "://" not in uri:
        uri = os.path.abspath(uri)
    return pafs.FileSystem.from_uri(uri)


@dataclass
class _Tree:
    """The files under a path or URI (or the file it names): pyarrow's file system, the
    root, and each file's path relative to the root (dot-files — temporary files — left out)."""

    fs: pafs.FileSystem
    root: str
    is_file: bool
    files: list[str]
    bytes: int = 0

    @staticmethod
    def scan(uri: str, suffix: str = "") -> _Tree:
        fs, root = _fs(uri)
        info = fs.get_file_info(root)
        if info.type == pafs.FileType.File:
            ok = root.endswith(suffix)
            return _Tree(fs, root, True, [os.path.basename(root)] if ok else [], info.size if ok else 0)
        if info.type != pafs.FileType.Directory:
            raise FileNotFoundError(f"{uri}: no such file or directory")
        found = [
            f
            for f in fs.get_file_info(pafs.FileSelector(root, recursive=True))
            if f.type == pafs.FileType.File and f.path.endswith(suffix) and not os.path.basename(f.path).startswith(".")
        ]
        files = sorted(os.path.relpath(f.path, root) for f in found)
        return _Tree(fs, root, False, files, sum(f.size for f in found))

    def path(self, rel: str) -> str:
        return self.root if self.is_file else os.path.join(self.root, rel)

    def relative(self, path: str) -> str:
        return os.path.basename(path) if self.is_file else os.path.relpath(path, self.root)


def _write(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    """Writes ``data`` to ``path`` complete or not at all: a temporary name, then a move."""
    parent = os.path.dirname(path)
    if parent:
        fs.create_dir(parent, recursive=True)
    tmp = os.path.join(parent, f".{os.path.basename(path)}.tmp{os.getpid()}")
    try:
        with fs.open_output_stream(tmp) as f:
            f.write(data)
        fs.move(tmp, path)
    except BaseException:
        try:
            fs.delete_file(tmp)
        except Exception:
            pass
        raise


def _read(fs: pafs.FileSystem, path: str) -> bytes:
    with fs.open_input_stream(path) as f:
        return f.read()


class _FileJob:
    """The file jobs' stage: codes a batch of files (columns ``bytes`` and ``path``, read
    from ``inputs``), writes the results under ``outputs`` (verify: reads the originals
    there and compares), and returns only the report's columns: no data goes back."""

    def __init__(
        self, mode: str, inputs: str, outputs: str, model: str | None, backend: str, threads: int | None
    ) -> None:
        self.mode = mode
        self.inputs = _Tree.scan(inputs, "" if mode == "compress" else SUFFIX)
        self.out_fs, self.out_root = _fs(outputs)
        coder = Compress if mode == "compress" else Decompress
        self.coder = coder(column="bytes", out="out", model=model, backend=backend, threads=threads)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        b = self.coder(batch)
        rels, errors, messages = [], list(b["out_error"]), list(b["out_message"])
        for i, path in enumerate(b["path"]):
            rel = self.inputs.relative(str(path))
            rels.append(rel)
            if errors[i]:
                continue
            name = rel + SUFFIX if self.mode == "compress" else rel[: -len(SUFFIX)]
            target = os.path.join(self.out_root, name)
            try:
                if self.mode == "verify":
                    if _read(self.out_fs, target) != b["out"][i]:
                        errors[i] = "MISMATCH"
                        messages[i] = f"decodes to other bytes than {name}"
                else:
                    _write(self.out_fs, target, b["out"][i])
            except OSError as e:
                errors[i], messages[i] = "LMZ_IO", str(e)
        return {
            "path": np.array(rels, dtype=object),
            "input_size": b["input_size"],
            "output_size": b["output_size"],
            "error": np.array(errors, dtype=object),
            "message": np.array(messages, dtype=object),
            "model_seconds": b["model_seconds"],
        }


# --- the jobs ---


@dataclass
class Report:
    """What a file job did: one row per file (``path`` relative to the source, sizes,
    ``error`` = its ``LMZ_*`` code, ``"MISMATCH"`` or ``"MISSING"``, else ``""``)."""

    mode: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    actors: int = 1

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["error"]]

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        done = [r for r in self.rows if not r["error"]]
        bytes_in = sum(r["input_size"] for r in done)
        bytes_out = sum(r["output_size"] for r in done)
        model = sum(r["model_seconds"] for r in self.rows)
        orig = bytes_in if self.mode == "compress" else bytes_out
        lines = [
            f"lmz.ray {self.mode}: {len(done)} of {len(self.rows)} files ok, {bytes_in:,} → {bytes_out:,} bytes"
            + (f" ({8 * bytes_out / bytes_in:.3f} bpb)" if self.mode == "compress" and bytes_in else "")
            + f", {self.seconds:.1f} s ({orig / max(self.seconds, 1e-9):,.0f} B/s of originals), "
            f"{self.actors} actor(s), {model:.1f} s in the model"
        ]
        for r in self.failed:
            lines.append(f"  FAILED {r['path']}: {r['error']}: {r['message']}")
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps(
            {"mode": self.mode, "seconds": self.seconds, "actors": self.actors, "files": self.rows}, indent=1
        )


def run_files(
    mode: str,
    src: str,
    dst: str,
    *,
    actors: int = 1,
    cpus_per_actor: float = 1,
    gpus_per_actor: float = 0,
    backend: str | None = None,
    threads: int | None = None,
    batch_size: int = 16,
    model: str | None = None,
    progress: bool = True,
) -> Report:
    """Runs a file job on the Ray cluster this process is connected to (``ray.init``).

    ``compress``: every file under ``src`` → ``dst/<path>.lmz``. ``decompress``: every
    ``.lmz`` under ``src`` → ``dst/<path>``. ``verify``: every ``dst/<path>.lmz`` decoded
    and compared with ``src/<path>``; a file of ``src`` without one is ``MISSING``.
    ``actors`` model copies, each with ``cpus_per_actor`` CPUs (its engine's threads, unless
    ``threads``) and ``gpus_per_actor`` GPUs (``backend`` then defaults to ``"gpu"``).
    Rows that fail are in the report with their code; the others are written regardless.
    """
    if mode not in ("compress", "decompress", "verify"):
        raise lmz.ArgumentError("LMZ_INVALID_ARGUMENT", f"mode {mode!r}: compress, decompress or verify")
    backend = backend or ("gpu" if gpus_per_actor else "cpu")
    # verify reads the .lmz files (under dst) and compares with the originals (under src).
    inputs, outputs = (dst, src) if mode == "verify" else (src, dst)
    tree = _Tree.scan(inputs, "" if mode == "compress" else SUFFIX)
    report = Report(mode=mode, actors=actors)
    t0 = time.perf_counter()
    if not tree.files:
        return report
    ds = ray.data.read_binary_files(
        [tree.path(p) for p in tree.files],
        filesystem=tree.fs,
        include_paths=True,
        # Reading is I/O: it must not wait for a CPU that the model actors hold.
        num_cpus=0,
        # A few read tasks per actor (each may start a worker process, which costs more CPU
        # than reading small files), more where blocks would pass 64 MiB.
        override_num_blocks=max(1, min(len(tree.files), max(4 * actors, tree.bytes // (64 << 20) + 1))),
    )
    ds = ds.map_batches(
        _FileJob,
        fn_constructor_kwargs={
            "mode": mode,
            "inputs": inputs,
            "outputs": outputs,
            "model": model,
            "backend": backend,
            "threads": threads,
        },
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=cpus_per_actor,
        num_gpus=gpus_per_actor,
        batch_size=batch_size,
        batch_format="numpy",
    )
    last = 0.0
    for row in ds.iter_rows():
        report.rows.append(
            {
                "path": str(row["path"]),
                "input_size": int(row["input_size"]),
                "output_size": int(row["output_size"]),
                "error": str(row["error"]),
                "message": str(row["message"]),
                "model_seconds": float(row["model_seconds"]),
            }
        )
        if row["error"] and progress:
            print(f"lmz.ray: {row['path']}: {row['error']}: {row['message']}", file=sys.stderr)
        now = time.perf_counter()
        if progress and (now - last > 2 or len(report.rows) == len(tree.files)):
            last = now
            print(f"lmz.ray: {mode} {len(report.rows)}/{len(tree.files)} files, {now - t0:.0f} s", file=sys.stderr)
    report.seconds = time.perf_counter() - t0
    if mode == "verify":
        have = {r["path"][: -len(SUFFIX)] for r in report.rows}
        for p in _Tree.scan(src).files:
            if p not in have:
                report.rows.append(
                    {
                        "path": p + SUFFIX,
                        "input_size": 0,
                        "output_size": 0,
                        "error": "MISSING",
                        "message": f"no {p}{SUFFIX} under {dst}",
                        "model_seconds": 0.0,
                    }
                )
    report.rows.sort(key=lambda r: r["path"])
    return report


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m lmz.ray",
        description="Compress, decompress or verify a tree of files with lmz on a Ray cluster "
        "(RAY_ADDRESS or --address; else a local one).",
    )
    p.add_argument("mode", choices=["compress", "decompress", "verify"])
    p.add_argument("src", help="compress: the originals; decompress: the .lmz files; verify: the originals")
    p.add_argument(
        "dst", help="compress: where the .lmz files go; decompress: where the originals go; verify: the .lmz files"
    )
    p.add_argument("--actors", type=int, default=1, help="model copies (default 1)")
    p.add_argument("--cpus-per-actor", type=float, default=1, help="CPUs each actor reserves (its threads; default 1)")
    p.add_argument("--gpus-per-actor", type=float, default=0, help="GPUs each actor reserves (then --backend gpu)")
    p.add_argument(
        "--backend", choices=["cpu", "gpu", "auto"], help="engine (default: cpu, or gpu with --gpus-per-actor)"
    )
    p.add_argument("--threads", type=int, help="CPU engine threads per actor (default: its CPUs)")
    p.add_argument("--batch-size", type=int, default=16, help="files per batch (default 16)")
    p.add_argument("--model", help="model pack, the same path on every node (default: lmz.default_model_path())")
    p.add_argument("--address", help="Ray cluster to join (default: RAY_ADDRESS, else start a local one)")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local cluster this starts (default: all)")
    p.add_argument("--report", help="write the report (one row per file) as JSON here")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress")
    a = p.parse_args(argv)
    if a.quiet:
        ray.data.DataContext.get_current().enable_progress_bars = False
    init: dict[str, Any] = {"address": a.address} if a.address else {}
    if a.num_cpus is not None and not (a.address or os.environ.get("RAY_ADDRESS")):
        init["num_cpus"] = a.num_cpus
    ray.init(**init, logging_level="warning", log_to_driver=not a.quiet)
    try:
        report = run_files(
            a.mode,
            a.src,
            a.dst,
            actors=a.actors,
            cpus_per_actor=a.cpus_per_actor,
            gpus_per_actor=a.gpus_per_actor,
            backend=a.backend,
            threads=a.threads,
            batch_size=a.batch_size,
            model=a.model,
            progress=not a.quiet,
        )
    except (lmz.LmzError, FileNotFoundError) as e:
        print(f"lmz.ray: error: {e}", file=sys.stderr)
        return 1
    print(report.summary())
    if a.report:
        with open(a.report, "w") as f:
            f.write(report.to_json())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())

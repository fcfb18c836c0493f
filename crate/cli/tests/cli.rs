//! The `lmz` binary, end to end, on a seeded tiny model (fast) — and its errors.

use std::process::Command;

fn lmz() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lmz"))
}

fn tiny_pack_file(dir: &std::path::Path) -> std::path::PathBuf {
    let p = dir.join("tiny.lmz.safetensors");
    std::fs::write(&p, lmz::tiny::tiny_pack(5, lmz::tiny::TinyShape::default()).unwrap()).unwrap();
    p
}

fn tmpdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("lmz-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn eval_json_on_a_tiny_model() {
    let d = tmpdir("eval");
    let pack = tiny_pack_file(&d);
    let text = d.join("t.txt");
    let body = "the thin theme in an anthem, then the end.\n".repeat(20);
    std::fs::write(&text, &body).unwrap();
    let out = lmz()
        .args(["eval", "--json", "--window", "64", "--stride", "32", "--model"])
        .arg(&pack)
        .arg(&text)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["bytes"], body.len());
    let tokens = j["tokens"].as_u64().unwrap() as usize;
    assert!(tokens > 100 && tokens < body.len(), "{tokens}");
    let bpb = j["bpb"].as_f64().unwrap();
    assert!(bpb > 0.5 && bpb < 20.0, "{bpb}");
    assert_eq!(j["policy"]["window"], 64);
    assert!(j["policy"]["description"].as_str().unwrap().contains("stride 32"));
    // Deterministic: the same run gives the same bits.
    let again = lmz()
        .args(["eval", "--json", "--window", "64", "--stride", "32", "--model"])
        .arg(&pack)
        .arg(&text)
        .output()
        .unwrap();
    let j2: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(j["bits"], j2["bits"]);
    // The default policy scores with the adaptive bias and the n-gram mixer; --no-ngram with
    // the bias alone; --no-adapt scores the model alone, and --adapt rates (in the same run)
    // measure the bias on top of it: the format's rate (0.2) gives exactly --no-ngram's bits.
    assert_eq!(
        (&j["policy"]["adapt"], &j["policy"]["ngram"]),
        (&true.into(), &true.into())
    );
    let out = lmz()
        .args([
            "eval",
            "--json",
            "--window",
            "64",
            "--stride",
            "32",
            "--no-ngram",
            "--model",
        ])
        .arg(&pack)
        .arg(&text)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let biased: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (&biased["policy"]["adapt"], &biased["policy"]["ngram"]),
        (&true.into(), &false.into())
    );
    // The text is one line repeated: the mixer learns it.
    assert!(j["bits"].as_f64() < biased["bits"].as_f64(), "{j} vs {biased}");
    let out = lmz()
        .args([
            "eval",
            "--json",
            "--window",
            "64",
            "--stride",
            "32",
            "--no-adapt",
            "--adapt",
            "0.2,0.5",
            "--model",
        ])
        .arg(&pack)
        .arg(&text)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let alone: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (&alone["policy"]["adapt"], &alone["policy"]["ngram"]),
        (&false.into(), &false.into())
    );
    assert_ne!(alone["bits"], biased["bits"]);
    assert_eq!(alone["adapt"][0]["bits"], biased["bits"]);
    assert_eq!(alone["adapt"].as_array().unwrap().len(), 2);
    let out = lmz()
        .args(["eval", "--adapt", "0.2", "--model"])
        .arg(&pack)
        .arg(&text)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "--adapt without --no-adapt is refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-adapt"));
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn errors_are_clear_and_exit_non_zero() {
    let d = tmpdir("err");
    let out = lmz()
        .args(["eval", "--model"])
        .arg(d.join("nope.safetensors"))
        .arg(d.join("nope.txt"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("LMZ_IO") && e.contains("nope.txt"), "{e}");
    let text = d.join("t.txt");
    std::fs::write(&text, "x").unwrap();
    let out = lmz()
        .args(["eval", "--model"])
        .arg(d.join("nope.safetensors"))
        .arg(&text)
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("LMZ_MODEL_MISSING") && e.contains("lmz model fetch"), "{e}");
    let bad = d.join("bad.safetensors");
    std::fs::write(&bad, b"not a pack").unwrap();
    let out = lmz().args(["eval", "--model"]).arg(&bad).arg(&text).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("LMZ_PACK"));
    let pack = tiny_pack_file(&d);
    let out = lmz()
        .args(["eval", "--window", "8", "--stride", "8", "--model"])
        .arg(&pack)
        .arg(&text)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("LMZ_INVALID_ARGUMENT"));
    // Usage errors exit 2.
    assert_eq!(lmz().arg("--no-such-flag").output().unwrap().status.code(), Some(2));
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn model_command_reports_path_size_and_fingerprint() {
    let d = tmpdir("model");
    let pack = tiny_pack_file(&d);
    let out = lmz().arg("model").arg("--model").arg(&pack).output().unwrap();
    assert!(out.status.success());
    let s = String::from_utf8_lossy(&out.stdout);
    let fp = lmz::pack::hex(&lmz::pack::sha256(&std::fs::read(&pack).unwrap()));
    assert!(
        s.contains(&fp) && s.contains("size:") && s.contains("tiny.lmz.safetensors"),
        "{s}"
    );
    std::fs::remove_dir_all(&d).ok();
}

// --- compression, gzip's habits ---

fn run_in(dir: &std::path::Path, pack: &std::path::Path, args: &[&str]) -> std::process::Output {
    lmz()
        .current_dir(dir)
        .arg("--model")
        .arg(pack)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn compress_and_decompress_files_like_gzip() {
    let d = tmpdir("gz");
    let pack = tiny_pack_file(&d);
    let body = b"the thin theme in an anthem, then the end.\n".repeat(30);
    std::fs::write(d.join("a.txt"), &body).unwrap();
    // FILE → FILE.lmz, input removed.
    let out = run_in(&d, &pack, &["a.txt"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!d.join("a.txt").exists() && d.join("a.txt.lmz").exists());
    // info reads the header.
    let out = lmz().current_dir(&d).args(["info", "a.txt.lmz"]).output().unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && s.contains(&format!("original:    {} bytes", body.len())),
        "{s}"
    );
    assert!(!s.contains("engine:"), "{s}");
    // --backend names the engine that would decode it, without loading the model.
    let out = lmz()
        .current_dir(&d)
        .args(["info", "--backend", "cpu", "a.txt.lmz"])
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && s.contains("engine:      CPU, ") && s.contains("(--backend cpu)"),
        "{s}"
    );
    // Model-coded, the default has the adaptive bias and the n-gram mixer, in the note frame
    // for one chunk (tag 0xFE);
    // --no-ngram the bias alone (0xFC); --no-adapt codes with the model's tables alone
    // (tag 0xFB); -d reads which from the file.
    std::fs::write(d.join("b.txt"), &body).unwrap();
    use lmz::container::{TAG_MODEL_ADAPT, TAG_MODEL_CHAT, TAG_MODEL_SHIFT};
    for (flag, tag, says) in [
        (None, TAG_MODEL_CHAT, ", adaptive bias, n-gram mixer, note frame"),
        (Some("--no-ngram"), TAG_MODEL_ADAPT, ", adaptive bias\n"),
        (Some("--no-adapt"), TAG_MODEL_SHIFT, "KV cache\n"),
    ] {
        let mut args = vec!["-k", "-f", "--use-model", "force", "b.txt"];
        args.extend(flag);
        let out = run_in(&d, &pack, &args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(std::fs::read(d.join("b.txt.lmz")).unwrap()[0], tag);
        let out = lmz().current_dir(&d).args(["info", "b.txt.lmz"]).output().unwrap();
        let s = String::from_utf8_lossy(&out.stdout);
        assert!(s.contains(says), "{s}");
        assert_eq!(run_in(&d, &pack, &["-dc", "b.txt.lmz"]).stdout, body);
    }
    // -d restores it and removes the .lmz.
    let out = run_in(&d, &pack, &["-d", "a.txt.lmz"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(d.join("a.txt")).unwrap(), body);
    assert!(!d.join("a.txt.lmz").exists());
    // -k keeps the input; an existing output is refused without -f and the input untouched.
    assert!(run_in(&d, &pack, &["-k", "--use-model", "force", "a.txt"])
        .status
        .success());
    assert!(d.join("a.txt").exists() && d.join("a.txt.lmz").exists());
    let out = run_in(&d, &pack, &["a.txt"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    assert_eq!(std::fs::read(d.join("a.txt")).unwrap(), body);
    // -c writes to stdout and keeps everything; -o writes elsewhere.
    let out = run_in(&d, &pack, &["-dc", "a.txt.lmz"]);
    assert!(out.status.success());
    assert_eq!(out.stdout, body);
    assert!(run_in(&d, &pack, &["-d", "-o", "copy.txt", "a.txt.lmz"])
        .status
        .success());
    assert_eq!(std::fs::read(d.join("copy.txt")).unwrap(), body);
    assert!(d.join("a.txt.lmz").exists());
    // -t tests without writing.
    let out = run_in(&d, &pack, &["-t", "a.txt.lmz"]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stderr).contains("OK"));
    // stdin → stdout, both ways.
    let mut c = lmz()
        .current_dir(&d)
        .arg("--model")
        .arg(&pack)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(c.stdin.as_mut().unwrap(), &body).unwrap();
    drop(c.stdin.take());
    let z = c.wait_with_output().unwrap();
    assert!(z.status.success());
    let mut c = lmz()
        .current_dir(&d)
        .arg("--model")
        .arg(&pack)
        .arg("-d")
        .arg("-")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(c.stdin.as_mut().unwrap(), &z.stdout).unwrap();
    drop(c.stdin.take());
    assert_eq!(c.wait_with_output().unwrap().stdout, body);
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn unlmz_decompresses() {
    let d = tmpdir("unlmz");
    let pack = tiny_pack_file(&d);
    std::fs::write(d.join("n.txt"), b"a short note").unwrap();
    assert!(run_in(&d, &pack, &["n.txt"]).status.success());
    let link = d.join("unlmz");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_lmz"), &link).unwrap();
    let out = std::process::Command::new(&link)
        .current_dir(&d)
        .arg("--model")
        .arg(&pack)
        .arg("n.txt.lmz")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(d.join("n.txt")).unwrap(), b"a short note");
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn failures_leave_no_output_and_keep_the_input() {
    let d = tmpdir("fail");
    let pack = tiny_pack_file(&d);
    let body = b"the thin theme in an anthem\n".repeat(10);
    std::fs::write(d.join("a.txt"), &body).unwrap();
    assert!(run_in(&d, &pack, &["--use-model", "force", "a.txt"]).status.success());
    let good = std::fs::read(d.join("a.txt.lmz")).unwrap();
    // A corrupt file: exit 1, a typed error, no output, the input kept.
    let mut bad = good.clone();
    let n = bad.len();
    bad[n / 2] ^= 0xff;
    std::fs::write(d.join("b.txt.lmz"), &bad).unwrap();
    let out = run_in(&d, &pack, &["-d", "b.txt.lmz"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("LMZ_FORMAT_"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!d.join("b.txt").exists() && d.join("b.txt.lmz").exists());
    // Truncated: the same.
    std::fs::write(d.join("c.txt.lmz"), &good[..good.len() / 2]).unwrap();
    assert_eq!(run_in(&d, &pack, &["-d", "c.txt.lmz"]).status.code(), Some(1));
    assert!(!d.join("c.txt").exists());
    // Another model: the error names the fingerprint the file wants.
    let other = d.join("other.safetensors");
    std::fs::write(
        &other,
        lmz::tiny::tiny_pack(6, lmz::tiny::TinyShape::default()).unwrap(),
    )
    .unwrap();
    let out = run_in(&d, &other, &["-d", "a.txt.lmz"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("LMZ_FORMAT_MODEL_MISMATCH"));
    assert!(d.join("a.txt.lmz").exists());
    // No temporary files anywhere.
    let left: Vec<_> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // Usage errors exit 2; a missing file exits 1 and the others are still processed.
    assert_eq!(run_in(&d, &pack, &["-o", "x", "a", "b"]).status.code(), Some(2));
    std::fs::write(d.join("z.txt"), b"zz").unwrap();
    let out = run_in(&d, &pack, &["missing.txt", "z.txt"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(d.join("z.txt.lmz").exists());
    // Already compressed: refused without -f.
    assert_eq!(run_in(&d, &pack, &["z.txt.lmz"]).status.code(), Some(1));
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn bench_prints_one_table() {
    let d = tmpdir("bench");
    let pack = tiny_pack_file(&d);
    std::fs::write(
        d.join("t.txt"),
        b"the thin theme in an anthem, then the end.\n".repeat(5),
    )
    .unwrap();
    let out = run_in(&d, &pack, &["bench", "t.txt"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = String::from_utf8_lossy(&out.stdout);
    for name in ["lmz (cpu)", "gzip -9", "xz -9", "zstd -19", "brotli -11"] {
        assert!(s.contains(&format!("| t.txt | 215 | {name} |")), "{name}: {s}");
    }
    // --speed: lmz alone, in tokens/s, with the token count of the model's tokenizer.
    let out = run_in(&d, &pack, &["bench", "--speed", "t.txt"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = String::from_utf8_lossy(&out.stdout);
    let row = s
        .lines()
        .find(|l| l.starts_with("| t.txt | 215 | "))
        .unwrap_or_else(|| panic!("{s}"));
    let cols: Vec<&str> = row.split('|').map(str::trim).collect();
    let model = lmz::tiny::tiny_model(5, lmz::tiny::TinyShape::default()).unwrap();
    let tokens = lmz::container::Codec::new(&model)
        .unwrap()
        .tokenizer()
        .encode(&b"the thin theme in an anthem, then the end.\n".repeat(5))
        .len();
    assert_eq!(cols[3], tokens.to_string(), "{row}");
    assert!(
        cols[4].starts_with("CPU") && cols[6].parse::<f64>().unwrap() > 0.0 && cols[8].parse::<f64>().unwrap() > 0.0,
        "{row}"
    );
    assert!(!s.contains("gzip"), "{s}");
    std::fs::remove_dir_all(&d).ok();
}

/// `bench --ablation`: the LM alone and with the adaptive bias are what `eval` measures
/// (`--no-adapt --adapt 0.2`, the format's rate), the last row is the real file's size.
#[test]
fn bench_ablation_rows_agree_with_eval_and_the_file() {
    let d = tmpdir("ablation");
    let pack = tiny_pack_file(&d);
    let text = b"the thin theme in an anthem, then the end.\n".repeat(9);
    std::fs::write(d.join("t.txt"), &text).unwrap();
    let out = run_in(&d, &pack, &["bench", "--ablation", "t.txt"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<Vec<String>> = s
        .lines()
        .filter(|l| l.starts_with("| t.txt |"))
        .map(|l| l.split('|').map(|c| c.trim().to_string()).collect())
        .collect();
    assert_eq!(rows.len(), 4, "{s}");
    let bpb = |r: &Vec<String>| r[5].parse::<f64>().unwrap();
    let eval = |args: &[&str]| -> serde_json::Value {
        let out = run_in(&d, &pack, &[&["eval", "--json"], args, &["t.txt"]].concat());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let j = eval(&["--no-adapt", "--adapt", "0.2"]);
    assert_eq!(format!("{:.4}", j["bpb"].as_f64().unwrap()), rows[0][5], "{s}");
    assert_eq!(
        format!("{:.4}", j["adapt"][0]["bpb"].as_f64().unwrap()),
        rows[1][5],
        "{s}"
    );
    assert_eq!(
        format!("{:.4}", eval(&["--no-ngram"])["bpb"].as_f64().unwrap()),
        rows[1][5],
        "{s}"
    );
    let j = eval(&[]);
    assert_eq!(j["policy"]["ngram"], true, "{j}");
    assert_eq!(format!("{:.4}", j["bpb"].as_f64().unwrap()), rows[2][5], "{s}");
    let out = run_in(&d, &pack, &["-c", "t.txt"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        format!("{:.4}", 8.0 * out.stdout.len() as f64 / text.len() as f64),
        rows[3][5],
        "{s}"
    );
    assert!(rows[1][6].ends_with('%') && bpb(&rows[1]) > 0.0, "{s}");
    // The text repeats one line: the n-gram mixer must gain on it.
    assert!(bpb(&rows[2]) < bpb(&rows[1]), "{s}");
    assert!(!s.contains("gzip"), "{s}");
    std::fs::remove_dir_all(&d).ok();
}

/// A file named like a subcommand is compressed when `--` comes before it; an interrupted run
/// exits 130 and leaves no temporary file (SIGINT while the model runs).
#[test]
fn subcommand_names_and_interrupts() {
    let d = tmpdir("names");
    let pack = tiny_pack_file(&d);
    std::fs::write(d.join("info"), "a note called info\n").unwrap();
    let out = lmz()
        .current_dir(&d)
        .args(["-k", "--model"])
        .arg(&pack)
        .args(["--", "info"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let back = lmz()
        .current_dir(&d)
        .args(["-dc", "--model"])
        .arg(&pack)
        .arg("info.lmz")
        .output()
        .unwrap();
    assert_eq!(back.stdout, b"a note called info\n");
    #[cfg(unix)]
    {
        let big = "the thin theme in an anthem, then the end.\n".repeat(4000);
        std::fs::write(d.join("big.txt"), &big).unwrap();
        let mut child = lmz()
            .current_dir(&d)
            .args(["-k", "--use-model", "force", "--model"])
            .arg(&pack)
            .arg("big.txt")
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
        let status = child.wait().unwrap();
        if status.code() != Some(0) {
            assert_eq!(status.code(), Some(130), "{status:?}");
        }
        let left: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
        assert_eq!(std::fs::read_to_string(d.join("big.txt")).unwrap(), big);
    }
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn inputs_longer_than_a_segment_stream_through() {
    // 9 MiB: more than one segment (8 MiB) of input. zstd only, so it takes seconds; the
    // model path goes through the same segments (tests/container/segments.rs checks it on small ones).
    let d = tmpdir("long");
    let pack = tiny_pack_file(&d);
    let mut r = lmz::tiny::Rng(11);
    let words = ["the", "thin", "theme", "anthem", "and", "then", "note", "notes"];
    let mut body = Vec::with_capacity(9 << 20);
    while body.len() < 9 << 20 {
        body.extend_from_slice(words[r.below(8) as usize].as_bytes());
        body.push(if r.below(12) == 0 { b'\n' } else { b' ' });
    }
    std::fs::write(d.join("big.txt"), &body).unwrap();
    let out = run_in(&d, &pack, &["-k", "--use-model", "never", "big.txt"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let file = std::fs::read(d.join("big.txt.lmz")).unwrap();
    let info = lmz::container::info(&file).unwrap();
    assert_eq!(info.original_len, body.len() as u64);
    assert!(info.chunks.len() >= 2, "{:?}", info.chunks);
    // From a pipe, read in whatever pieces it gives: the same bytes.
    let mut c = lmz()
        .current_dir(&d)
        .arg("--model")
        .arg(&pack)
        .args(["--use-model", "never"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = c.stdin.take().unwrap();
    let feed = body.clone();
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &feed).unwrap());
    let z = c.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(z.status.success());
    assert_eq!(z.stdout, file, "stdin gives the file's bytes");
    let out = run_in(&d, &pack, &["-dc", "big.txt.lmz"]);
    assert!(out.status.success());
    assert!(out.stdout == body, "round trip");
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn a_failure_in_a_later_chunk_leaves_no_file() {
    // Several chunks: the first ones are written out (to the temporary file) before a
    // damaged last chunk is found; the temporary file is then removed and no output appears
    // (to stdout the earlier bytes are out; the exit status says the output is wrong).
    let d = tmpdir("late");
    let pack = tiny_pack_file(&d);
    let body = b"the thin theme in an anthem, then the end.\n".repeat(20);
    std::fs::write(d.join("t.txt"), &body).unwrap();
    assert!(run_in(
        &d,
        &pack,
        &["-k", "--use-model", "force", "--chunk-tokens", "40", "t.txt"]
    )
    .status
    .success());
    let mut file = std::fs::read(d.join("t.txt.lmz")).unwrap();
    let info = lmz::container::info(&file).unwrap();
    assert!(info.chunks.len() >= 3, "{:?}", info.chunks);
    let n = file.len();
    file[n - 3] ^= 0x10;
    std::fs::write(d.join("bad.txt.lmz"), &file).unwrap();
    let out = run_in(&d, &pack, &["-d", "bad.txt.lmz"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("LMZ_FORMAT_"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!d.join("bad.txt").exists() && d.join("bad.txt.lmz").exists());
    assert_eq!(run_in(&d, &pack, &["-dc", "bad.txt.lmz"]).status.code(), Some(1));
    let left: Vec<_> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    std::fs::remove_dir_all(&d).ok();
}

/// `lmz info FILE | head -1`: the reader has closed the pipe; lmz ends quietly (SIGPIPE, as
/// gzip and cat do), never with a panic's message and exit code 101. The pipe's read end is
/// closed before lmz starts, so every write of the report meets a closed pipe.
#[cfg(unix)]
#[test]
fn a_closed_pipe_ends_lmz_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let d = tmpdir("pipe");
    let pack = tiny_pack_file(&d);
    let f = d.join("t.txt");
    std::fs::write(&f, "the thin theme in an anthem, then the end.\n".repeat(40)).unwrap();
    let z = lmz()
        .arg("--model")
        .arg(&pack)
        .args(["-c", "--chunk-tokens", "8"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(z.status.success());
    let zf = d.join("t.txt.lmz");
    std::fs::write(&zf, &z.stdout).unwrap();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = lmz()
        .arg("--model")
        .arg(&pack)
        .arg("info")
        .arg(&zf)
        .stdout(writer)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    // SIGPIPE is 13 on Linux and the BSDs.
    assert_eq!(out.status.signal(), Some(13), "{:?}: {err}", out.status);
}

/// Many small files named at once are coded together (lock-step) and give each file what it
/// gets alone; a corrupt one fails alone, the others are written and their inputs removed.
#[test]
fn many_small_files_are_coded_together() {
    let d = tmpdir("many");
    let pack = tiny_pack_file(&d);
    let words = ["the", "then", "theme", "in", "an", "anthem", "thin", "and", "note"];
    let mut names = Vec::new();
    for i in 0..12 {
        let body: Vec<&str> = (0..(3 + 7 * i)).map(|k| words[(k * 5 + i) % words.len()]).collect();
        let name = format!("n{i:02}.txt");
        std::fs::write(d.join(&name), body.join(" ")).unwrap();
        names.push(name);
    }
    // Alone first (one file per run), for the reference bytes.
    let mut alone = Vec::new();
    for n in &names {
        let out = run_in(&d, &pack, &["-c", "--use-model", "force", n]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        alone.push(out.stdout);
    }
    let mut args = vec!["-k", "--use-model", "force"];
    args.extend(names.iter().map(String::as_str));
    let out = run_in(&d, &pack, &args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for (n, a) in names.iter().zip(&alone) {
        assert_eq!(&std::fs::read(d.join(format!("{n}.lmz"))).unwrap(), a, "{n}.lmz");
    }
    // Corrupt one, and decompress all (inputs removed, originals back).
    let bad = d.join("n05.txt.lmz");
    let mut b = std::fs::read(&bad).unwrap();
    let mid = b.len() / 2 + 4; // inside the coder's output (a flip of the last byte's low bits may not change a symbol)
    b[mid] ^= 0x21;
    std::fs::write(&bad, b).unwrap();
    for n in &names {
        std::fs::remove_file(d.join(n)).unwrap();
    }
    let lmzs: Vec<String> = names.iter().map(|n| format!("{n}.lmz")).collect();
    let mut args = vec!["-d"];
    args.extend(lmzs.iter().map(String::as_str));
    let out = run_in(&d, &pack, &args);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("n05.txt.lmz: error [LMZ_FORMAT_"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    for (i, n) in names.iter().enumerate() {
        if i == 5 {
            assert!(
                !d.join(n).exists() && bad.exists(),
                "the corrupt file is kept, nothing written"
            );
        } else {
            assert!(d.join(n).exists() && !d.join(format!("{n}.lmz")).exists(), "{n}");
        }
    }
    let _ = std::fs::remove_dir_all(&d);
}

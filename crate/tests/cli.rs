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
    let out = lmz().args(["eval", "--json", "--window", "64", "--stride", "32", "--model"]).arg(&pack).arg(&text).output().unwrap();
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
    let again = lmz().args(["eval", "--json", "--window", "64", "--stride", "32", "--model"]).arg(&pack).arg(&text).output().unwrap();
    let j2: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(j["bits"], j2["bits"]);
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn errors_are_clear_and_exit_non_zero() {
    let d = tmpdir("err");
    let out = lmz().args(["eval", "--model"]).arg(d.join("nope.safetensors")).arg(d.join("nope.txt")).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("LMZ_IO") && e.contains("nope.txt"), "{e}");
    let text = d.join("t.txt");
    std::fs::write(&text, "x").unwrap();
    let out = lmz().args(["eval", "--model"]).arg(d.join("nope.safetensors")).arg(&text).output().unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("LMZ_MODEL_MISSING") && e.contains("lmz model fetch"), "{e}");
    let bad = d.join("bad.safetensors");
    std::fs::write(&bad, b"not a pack").unwrap();
    let out = lmz().args(["eval", "--model"]).arg(&bad).arg(&text).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("LMZ_PACK"));
    let pack = tiny_pack_file(&d);
    let out = lmz().args(["eval", "--window", "8", "--stride", "8", "--model"]).arg(&pack).arg(&text).output().unwrap();
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
    assert!(s.contains(&fp) && s.contains("size:") && s.contains("tiny.lmz.safetensors"), "{s}");
    std::fs::remove_dir_all(&d).ok();
}

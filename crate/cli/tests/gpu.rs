//! The CLI on the GPU engine: `--backend gpu` makes the same files as the CPU engine, and each
//! decodes the other's (Mesa lavapipe in CI, like crate/tests/gpu/ of the library, whose
//! rule it follows: without an adapter it says why it skips, and in CI it FAILS).

use lmz::backend::gpu::{Gpu, GpuOptions};
use lmz::tiny::TinyShape;

/// The device, or `None` when there is none and `LMZ_SKIP_GPU=1` or outside CI (the reason printed).
fn gpu() -> Option<Gpu> {
    match Gpu::new(GpuOptions { dot4: None }) {
        Ok(g) => Some(g),
        Err(e) if std::env::var("LMZ_SKIP_GPU").as_deref() == Ok("1") => {
            eprintln!("SKIPPED (LMZ_SKIP_GPU=1): {e}");
            None
        }
        Err(e) => lmz::tiny::skip_outside_ci(&format!("{e} (apt-get install mesa-vulkan-drivers libvulkan1)")),
    }
}

fn lmz_cmd() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_lmz"))
}

#[test]
fn cli_gpu_and_cpu_files_are_identical_and_cross_decode() {
    let Some(g) = gpu() else { return };
    let adapter = g.adapter_info().name.clone();
    drop(g);
    let d = std::env::temp_dir().join(format!("lmz-gpu-cli-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let pack = d.join("tiny.lmz.safetensors");
    std::fs::write(&pack, lmz::tiny::tiny_pack(5, TinyShape::default()).unwrap()).unwrap();
    let text = d.join("t.txt");
    let body = "the thin theme in an anthem, then the end; in the hen the ant ran.\n".repeat(12);
    std::fs::write(&text, &body).unwrap();
    let run = |args: &[&str]| {
        let out = lmz_cmd().arg("--model").arg(&pack).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "lmz {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    let t = text.to_str().unwrap();
    let cpu_file = run(&["-c", "--use-model", "force", "--backend", "cpu", t]).stdout;
    let gpu_out = run(&["-c", "-v", "--use-model", "force", "--backend", "gpu", t]);
    assert_eq!(gpu_out.stdout, cpu_file, "GPU and CPU compress to different bytes");
    assert!(
        String::from_utf8_lossy(&gpu_out.stderr).contains(&adapter),
        "-v names the adapter: {}",
        String::from_utf8_lossy(&gpu_out.stderr)
    );
    let z = d.join("t.txt.lmz");
    std::fs::write(&z, &cpu_file).unwrap();
    let zs = z.to_str().unwrap();
    assert_eq!(
        run(&["-d", "-c", "--backend", "gpu", zs]).stdout,
        body.as_bytes(),
        "GPU decodes the CPU's file"
    );
    assert_eq!(run(&["-d", "-c", "--backend", "cpu", zs]).stdout, body.as_bytes());
    // info names the adapter that would decode it.
    let info = String::from_utf8_lossy(&run(&["info", "--backend", "gpu", zs]).stdout).into_owned();
    assert!(info.contains("engine:      GPU ") && info.contains(&adapter), "{info}");
    // eval: the same bits, the adapter named.
    let json = |b: &str| -> serde_json::Value {
        serde_json::from_slice(&run(&["eval", "--json", "--window", "64", "--stride", "32", "--backend", b, t]).stdout)
            .unwrap()
    };
    let (c, gj) = (json("cpu"), json("gpu"));
    assert_eq!(c["bits"], gj["bits"]);
    assert!(gj["engine"].as_str().unwrap().contains(&adapter), "{}", gj["engine"]);
    assert!(c["engine"].as_str().unwrap().contains("CPU"));
    std::fs::remove_dir_all(&d).ok();
}

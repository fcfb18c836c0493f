//! The WGSL kernels of `shaders/` (one per CPU kernel of [`crate::backend::cpu`] and
//! [`crate::freq`]), how they are composed into modules, and their uniform structs.
//!
//! WGSL has no `#include`. Kernels that need wide arithmetic call the functions of
//! `shaders/wide.wgsl`, which is appended to every kernel (module-scope declarations are
//! order-independent in WGSL); the matmuls call `dot4`, defined by `shaders/dot4_packed.wgsl`
//! (the `dot4I8Packed` built-in under `requires packed_4x8_integer_dot_product;`) or by
//! `shaders/dot4_scalar.wgsl` (the exact scalar fallback), prepended so that the `requires`
//! directive opens the module, and share `shaders/matmul_common.wgsl` (the block products, the
//! store) and, the tiled two, `shaders/matmul_tiled.wgsl` (the tile, the activation slab),
//! appended after the kernel: libraries that use the kernel's bindings by name; the kernels
//! that reduce a row in a workgroup share `shaders/reduce.wgsl` likewise. Composition is
//! plain concatenation of whole files, and the tests validate every composed module with naga.
//!
//! The uniform structs below are the one source of truth for each kernel's parameters: a
//! `#[repr(C)]` Pod struct here, a struct of the same name and members in the kernel, and a
//! test that the two layouts agree (names, offsets, size) as naga reports them.
//!
//! This module has no dependency on wgpu: the sources and layouts are the same for the
//! native engine (wgpu on Vulkan, Metal, DX12) and the browser one (wgpu on WebGPU, `crate/wasm`).

// --- constants shared with the kernels (each WGSL file's `const` of the same name; the test
// `wgsl_constants_match_rust` checks every one) ---

/// Workgroup size of the kernels that work element by element or row by row (`const WG`).
pub const WG: u32 = 64;
/// The per-row matmuls' tokens per invocation (`const TPT`: four named accumulators).
pub const TPT: u32 = 4;
/// Workgroup size of the kernels that reduce a whole logit row in one workgroup (`freq`,
/// `ranges`: their `const WG`).
pub const ROW_WG: u32 = 256;
/// The tiled matmuls' tile: `TR` rows × `TT` tokens (`shaders/matmul_tiled.wgsl`).
pub const TILE_ROWS: u32 = 64;
pub const TILE_TOKENS: u32 = 16;

/// Which `dot4` the matmul kernels are composed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dot4 {
    /// `dot4I8Packed` (needs the `packed_4x8_integer_dot_product` WGSL language feature).
    Packed,
    /// The scalar fallback: sign-extended bytes multiplied in i32. The same integers.
    Scalar,
}

impl Dot4 {
    pub fn name(self) -> &'static str {
        match self {
            Dot4::Packed => "dot4I8Packed",
            Dot4::Scalar => "scalar dot4 fallback",
        }
    }
}

/// One kernel file of `shaders/`.
#[derive(Debug, Clone, Copy)]
pub struct Kernel {
    /// The name of the kernel and of its CPU twin.
    pub name: &'static str,
    /// Its path in the repository (the label of its shader module).
    pub path: &'static str,
    pub source: &'static str,
    /// Composed with a `dot4` variant.
    pub uses_dot4: bool,
    /// The libraries of `shaders/` appended after it (before `wide.wgsl`).
    pub libs: &'static [&'static str],
    /// The name of its uniform struct.
    pub params: &'static str,
    /// Its bind group 0, binding by binding (the kernel's function signature): binding 0
    /// is the uniform, the others storage buffers.
    pub bindings: &'static [Binding],
    /// The WGSL name of each binding, in the same order: the test that checks the kinds
    /// checks these too, so two buffers of one kind cannot trade places unnoticed.
    pub names: &'static [&'static str],
}

/// What one binding of a kernel's group 0 is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    Uniform,
    /// `var<storage, read>`
    Read,
    /// `var<storage, read_write>`
    ReadWrite,
}

use Binding::{Read as R, ReadWrite as W, Uniform as U};

macro_rules! kernel {
    ($name:literal, $dot4:literal, $params:literal, $bindings:expr, $names:expr) => {
        kernel!($name, $dot4, $params, $bindings, $names, &[])
    };
    ($name:literal, $dot4:literal, $params:literal, $bindings:expr, $names:expr, $libs:expr) => {
        Kernel {
            name: $name,
            path: concat!("shaders/", $name, ".wgsl"),
            source: include_str!(concat!("../../shaders/", $name, ".wgsl")),
            uses_dot4: $dot4,
            libs: $libs,
            params: $params,
            bindings: $bindings,
            names: $names,
        }
    };
}

/// `shaders/reduce.wgsl`: the workgroup max and sum of the kernels that reduce a row.
pub const REDUCE: &str = include_str!("../../shaders/reduce.wgsl");
/// `shaders/matmul_common.wgsl`: the block products and the store of the four matmuls.
pub const MATMUL_COMMON: &str = include_str!("../../shaders/matmul_common.wgsl");
/// `shaders/matmul_tiled.wgsl`: the tile and the activation slab of the tiled matmuls.
pub const MATMUL_TILED: &str = include_str!("../../shaders/matmul_tiled.wgsl");

pub const QUANTIZE: Kernel = kernel!(
    "quantize",
    false,
    "QuantizeParams",
    &[U, R, W, W, W],
    &["p", "z", "q", "scale_sum", "row_exp"],
    &[REDUCE]
);
pub const MATMUL_Q4: Kernel = kernel!(
    "matmul_q4",
    true,
    "MatmulParams",
    &[U, R, R, R, R, R, R, W],
    &["p", "nib", "dm", "e_row", "q", "scale_sum", "row_exp", "out"],
    &[MATMUL_COMMON]
);
pub const MATMUL_Q8: Kernel = kernel!(
    "matmul_q8",
    true,
    "MatmulParams",
    &[U, R, R, R, R, R, R, W],
    &["p", "w", "d", "e_row", "q", "scale_sum", "row_exp", "out"],
    &[MATMUL_COMMON]
);
pub const MATMUL_Q4_TILED: Kernel = kernel!(
    "matmul_q4_tiled",
    true,
    "MatmulParams",
    &[U, R, R, R, R, R, R, W],
    &["p", "nib", "dm", "e_row", "q", "scale_sum", "row_exp", "out"],
    &[MATMUL_COMMON, MATMUL_TILED]
);
pub const MATMUL_Q8_TILED: Kernel = kernel!(
    "matmul_q8_tiled",
    true,
    "MatmulParams",
    &[U, R, R, R, R, R, R, W],
    &["p", "w", "d", "e_row", "q", "scale_sum", "row_exp", "out"],
    &[MATMUL_COMMON, MATMUL_TILED]
);
pub const EMBED: Kernel = kernel!(
    "embed",
    false,
    "EmbedParams",
    &[U, R, R, R, R, W],
    &["p", "tokens", "w", "d", "e_row", "out"]
);
pub const RMSNORM: Kernel = kernel!(
    "rmsnorm",
    false,
    "RmsnormParams",
    &[U, R, R, W],
    &["p", "x", "g", "z"],
    &[REDUCE]
);
pub const ROPE: Kernel = kernel!(
    "rope",
    false,
    "RopeParams",
    &[U, W, R, R, R],
    &["p", "x", "pos", "rope_cos", "rope_sin"]
);
pub const SILU_MUL: Kernel = kernel!(
    "silu_mul",
    false,
    "ElementwiseParams",
    &[U, R, R, R, W],
    &["p", "gate", "up", "silu", "out"]
);
pub const ADD: Kernel = kernel!("add", false, "ElementwiseParams", &[U, W, R], &["p", "x", "y"]);
pub const KV_STORE: Kernel = kernel!(
    "kv_store",
    false,
    "KvStoreParams",
    &[U, R, R, R, W, W, W],
    &["p", "k", "v", "dst", "cache_k", "cache_kexp", "cache_v"]
);
pub const KV_SHIFT: Kernel = kernel!(
    "kv_shift",
    false,
    "KvShiftParams",
    &[U, R, R, R, R, R, W, W, W],
    &[
        "p",
        "cache_k",
        "cache_kexp",
        "cache_v",
        "rope_cos",
        "rope_sin",
        "out_k",
        "out_kexp",
        "out_v"
    ]
);
pub const ATTENTION: Kernel = kernel!(
    "attention",
    false,
    "AttentionParams",
    &[U, R, R, R, R, R, R, W, W],
    &[
        "p",
        "q",
        "rowinfo",
        "cache_k",
        "cache_kexp",
        "cache_v",
        "exp_q15",
        "scratch",
        "out"
    ],
    &[REDUCE]
);
pub const FREQ: Kernel = kernel!(
    "freq",
    false,
    "FreqParams",
    &[U, R, R, W],
    &["p", "logits", "exp_q24", "freq"]
);
pub const RANGES: Kernel = kernel!(
    "ranges",
    false,
    "FreqParams",
    &[U, R, R, W],
    &["p", "freq", "symbols", "ranges"],
    &[REDUCE]
);

/// Every kernel.
pub const KERNELS: [Kernel; 15] = [
    QUANTIZE,
    MATMUL_Q4,
    MATMUL_Q8,
    MATMUL_Q4_TILED,
    MATMUL_Q8_TILED,
    EMBED,
    RMSNORM,
    ROPE,
    SILU_MUL,
    ADD,
    KV_STORE,
    KV_SHIFT,
    ATTENTION,
    FREQ,
    RANGES,
];

/// `shaders/wide.wgsl`: Wide, mul_u32, mul_shift, div_shifted, isqrt, SplitAcc.
pub const WIDE: &str = include_str!("../../shaders/wide.wgsl");
pub const DOT4_PACKED: &str = include_str!("../../shaders/dot4_packed.wgsl");
pub const DOT4_SCALAR: &str = include_str!("../../shaders/dot4_scalar.wgsl");

/// The WGSL module of `k`: `[dot4 variant] + kernel + [its libraries] + wide.wgsl`.
pub fn compose(k: &Kernel, dot4: Dot4) -> String {
    let mut s = String::new();
    if k.uses_dot4 {
        s.push_str(match dot4 {
            Dot4::Packed => DOT4_PACKED,
            Dot4::Scalar => DOT4_SCALAR,
        });
        s.push('\n');
    }
    s.push_str(k.source);
    s.push('\n');
    for lib in k.libs {
        s.push_str(lib);
        s.push('\n');
    }
    s.push_str(WIDE);
    s
}

// --- uniform structs (mirrored in the kernels; layout checked by a test) ---

macro_rules! uniform {
    ($(#[$m:meta])* $name:ident { $($(#[$fm:meta])* $f:ident : $t:ty),* $(,)? }) => {
        $(#[$m])*
        #[repr(C)]
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
        pub struct $name { $($(#[$fm])* pub $f: $t),* }
        impl $name {
            /// Member names and byte offsets, for the layout test.
            pub const FIELDS: &'static [(&'static str, usize)] = &[$((stringify!($f), std::mem::offset_of!($name, $f))),*];
        }
    };
}

uniform!(
    /// `shaders/quantize.wgsl`
    QuantizeParams { rows: u32, width: u32, frac: i32, _pad: u32 }
);
uniform!(
    /// `shaders/matmul_q4.wgsl`, `shaders/matmul_q8.wgsl` and their `_tiled` variants
    MatmulParams { rows: u32, tokens: u32, frac_out: i32, tok0: u32 }
);
uniform!(
    /// `shaders/embed.wgsl`
    EmbedParams { rows: u32, dim: u32, vocab: u32, _pad: u32 }
);
uniform!(
    /// `shaders/rmsnorm.wgsl`
    RmsnormParams { rows: u32, dim: u32, eps_q24: u32, g_exp: i32, z_frac: i32, _pad0: u32, _pad1: u32, _pad2: u32 }
);
uniform!(
    /// `shaders/rope.wgsl`
    RopeParams { rows: u32, width: u32, _pad0: u32, _pad1: u32 }
);
uniform!(
    /// `shaders/silu_mul.wgsl`, `shaders/add.wgsl`
    ElementwiseParams { n: u32, _pad0: u32, _pad1: u32, _pad2: u32 }
);
uniform!(
    /// `shaders/kv_store.wgsl`
    KvStoreParams { rows: u32, cache_rows: u32, _pad0: u32, _pad1: u32 }
);
uniform!(
    /// `shaders/kv_shift.wgsl`
    KvShiftParams { rows: u32, src: u32, cache_rows: u32, delta: u32 }
);
uniform!(
    /// `shaders/attention.wgsl`
    AttentionParams { rows: u32, row0: u32, cache_len: u32, _pad: u32 }
);
uniform!(
    /// `shaders/freq.wgsl`, `shaders/ranges.wgsl`
    FreqParams { rows: u32, vocab: u32, _pad0: u32, _pad1: u32 }
);

/// A uniform struct: its WGSL name, its Rust size, its members' names and offsets.
pub type UniformLayout = (&'static str, usize, &'static [(&'static str, usize)]);

/// Every uniform struct.
pub const UNIFORMS: [UniformLayout; 10] = [
    (
        "QuantizeParams",
        std::mem::size_of::<QuantizeParams>(),
        QuantizeParams::FIELDS,
    ),
    (
        "MatmulParams",
        std::mem::size_of::<MatmulParams>(),
        MatmulParams::FIELDS,
    ),
    ("EmbedParams", std::mem::size_of::<EmbedParams>(), EmbedParams::FIELDS),
    (
        "RmsnormParams",
        std::mem::size_of::<RmsnormParams>(),
        RmsnormParams::FIELDS,
    ),
    ("RopeParams", std::mem::size_of::<RopeParams>(), RopeParams::FIELDS),
    (
        "ElementwiseParams",
        std::mem::size_of::<ElementwiseParams>(),
        ElementwiseParams::FIELDS,
    ),
    (
        "KvStoreParams",
        std::mem::size_of::<KvStoreParams>(),
        KvStoreParams::FIELDS,
    ),
    (
        "KvShiftParams",
        std::mem::size_of::<KvShiftParams>(),
        KvShiftParams::FIELDS,
    ),
    (
        "AttentionParams",
        std::mem::size_of::<AttentionParams>(),
        AttentionParams::FIELDS,
    ),
    ("FreqParams", std::mem::size_of::<FreqParams>(), FreqParams::FIELDS),
];

#[cfg(test)]
mod tests {
    use super::*;
    use naga::valid::{Capabilities, ValidationFlags, Validator};

    fn parse(name: &str, src: &str) -> naga::Module {
        naga::front::wgsl::parse_str(src).unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)))
    }

    /// The module-scope `const`s of `m` that are integer literals, by name.
    fn wgsl_constants(m: &naga::Module) -> std::collections::HashMap<String, i64> {
        m.constants
            .iter()
            .filter_map(|(_, c)| {
                let v = match m.global_expressions[c.init] {
                    naga::Expression::Literal(naga::Literal::U32(v)) => v as i64,
                    naga::Expression::Literal(naga::Literal::I32(v)) => v as i64,
                    naga::Expression::Literal(naga::Literal::AbstractInt(v)) => v,
                    _ => return None,
                };
                Some((c.name.clone()?, v))
            })
            .collect()
    }

    /// Every constant a kernel shares with Rust has the Rust value: the dispatch geometry the
    /// engine computes (`WG`, `TPT`, the tile), and the fixed-point formats and bounds the CPU
    /// twins use. A kernel edited on one side only fails here, not as a wrong bit on a GPU.
    #[test]
    fn wgsl_constants_match_rust() {
        use crate::backend::cpu::{ACT_MANT_MAX, FFN_FRAC, QK_INT_MAX, Q_SCALE_Q16, RESID_FRAC};
        let shared: [(&str, i64); 8] = [
            ("TPT", TPT as i64),
            ("TR", TILE_ROWS as i64),
            ("TT", TILE_TOKENS as i64),
            ("FREQ_TOTAL", crate::freq::FREQ_TOTAL as i64),
            ("QK_INT_MAX", QK_INT_MAX as i64),
            ("RESID_FRAC", RESID_FRAC as i64),
            ("FFN_FRAC", FFN_FRAC as i64),
            ("ACT_MANT_MAX", ACT_MANT_MAX as i64),
        ];
        let more: [(&str, i64); 2] = [
            ("ROPE_FRAC", crate::tables::ROPE_FRAC as i64),
            ("Q_SCALE_Q16", Q_SCALE_Q16 as i64),
        ];
        let mut seen = std::collections::HashSet::new();
        for k in KERNELS {
            let c = wgsl_constants(&parse(k.path, &compose(&k, Dot4::Scalar)));
            let wg = match k.name {
                "freq" | "ranges" => ROW_WG,
                "matmul_q4_tiled" | "matmul_q8_tiled" => TILE_ROWS * (TILE_TOKENS / TPT),
                _ => WG,
            };
            assert_eq!(c.get("WG"), Some(&(wg as i64)), "{}: const WG", k.path);
            for (name, want) in shared.iter().chain(&more) {
                if let Some(&have) = c.get(*name) {
                    assert_eq!(have, *want, "{}: const {name}", k.path);
                    seen.insert(*name);
                }
            }
        }
        // Each shared constant is declared by some kernel (a rename on the WGSL side would
        // otherwise silently skip its check).
        for (name, _) in shared.iter().chain(&more) {
            assert!(seen.contains(name), "no kernel declares const {name}");
        }
    }

    #[test]
    fn every_shader_parses_and_validates_with_both_dot4_variants() {
        let mut errors = Vec::new();
        let mut check = |name: &str, src: &str| -> Option<naga::Module> {
            let m = match naga::front::wgsl::parse_str(src) {
                Ok(m) => m,
                Err(e) => {
                    errors.push(format!("{name}: {}", e.emit_to_string(src)));
                    return None;
                }
            };
            // No optional capabilities: the kernels must run on any WebGPU adapter.
            if let Err(e) = Validator::new(ValidationFlags::all(), Capabilities::empty()).validate(&m) {
                errors.push(format!("{name}: {}", e.emit_to_string(src)));
                return None;
            }
            Some(m)
        };
        check("wide.wgsl", WIDE);
        for k in KERNELS {
            for d in [Dot4::Packed, Dot4::Scalar] {
                let src = compose(&k, d);
                if let Some(m) = check(&format!("{} ({})", k.path, d.name()), &src) {
                    assert!(
                        m.entry_points
                            .iter()
                            .any(|e| e.name == "main" && e.stage == naga::ShaderStage::Compute),
                        "{}: no compute entry point `main`",
                        k.path
                    );
                }
                if !k.uses_dot4 {
                    break;
                }
                assert_eq!(
                    src.contains("requires packed_4x8_integer_dot_product;"),
                    d == Dot4::Packed
                );
            }
        }
        assert!(errors.is_empty(), "{}", errors.join("\n"));
    }

    #[test]
    fn every_shader_file_is_a_kernel_or_a_library() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shaders");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        files.sort();
        let mut known: Vec<String> = KERNELS.iter().map(|k| format!("{}.wgsl", k.name)).collect();
        known.extend(
            [
                "wide.wgsl",
                "dot4_packed.wgsl",
                "dot4_scalar.wgsl",
                "matmul_common.wgsl",
                "matmul_tiled.wgsl",
                "reduce.wgsl",
            ]
            .map(String::from),
        );
        known.sort();
        assert_eq!(files, known);
        // Each opens with its comment block naming its CPU twin.
        for k in KERNELS {
            assert!(k.source.starts_with(&format!("// {}.wgsl", k.name)), "{}", k.path);
            assert!(k.source.contains("CPU twin:"), "{}", k.path);
        }
    }

    #[test]
    fn uniform_structs_match_their_wgsl_layout() {
        for k in KERNELS {
            let m = parse(k.path, &compose(&k, Dot4::Scalar));
            let (name, size, fields) = UNIFORMS
                .iter()
                .find(|u| u.0 == k.params)
                .unwrap_or_else(|| panic!("{}: no Rust struct {}", k.path, k.params));
            let ty = m
                .types
                .iter()
                .find(|(_, t)| t.name.as_deref() == Some(name))
                .unwrap_or_else(|| panic!("{}: no struct {name}", k.path))
                .1;
            let naga::TypeInner::Struct { members, span } = &ty.inner else {
                panic!("{name} is not a struct")
            };
            assert_eq!(*span as usize, *size, "{}: size of {name}", k.path);
            let wgsl: Vec<(String, usize)> = members
                .iter()
                .map(|mb| (mb.name.clone().unwrap_or_default(), mb.offset as usize))
                .collect();
            let rust: Vec<(String, usize)> = fields.iter().map(|(n, o)| (n.to_string(), *o)).collect();
            assert_eq!(wgsl, rust, "{}: members of {name}", k.path);
            // And it is bound as the uniform at group 0, binding 0.
            let var = m
                .global_variables
                .iter()
                .find(|(_, v)| v.space == naga::AddressSpace::Uniform)
                .unwrap_or_else(|| panic!("{}: no uniform", k.path))
                .1;
            assert_eq!(m.types[var.ty].name.as_deref(), Some(*name));
            assert_eq!(var.binding, Some(naga::ResourceBinding { group: 0, binding: 0 }));
        }
    }

    #[test]
    fn bind_group_signatures_match_the_wgsl() {
        for k in KERNELS {
            let m = parse(k.path, &compose(&k, Dot4::Scalar));
            let mut got: Vec<(u32, Binding, &str)> = m
                .global_variables
                .iter()
                .filter_map(|(_, v)| {
                    let b = v.binding.as_ref()?;
                    assert_eq!(b.group, 0, "{}", k.path);
                    let kind = match v.space {
                        naga::AddressSpace::Uniform => Binding::Uniform,
                        naga::AddressSpace::Storage { access } if access.contains(naga::StorageAccess::STORE) => {
                            Binding::ReadWrite
                        }
                        naga::AddressSpace::Storage { .. } => Binding::Read,
                        other => panic!("{}: binding in {other:?}", k.path),
                    };
                    Some((b.binding, kind, v.name.as_deref().unwrap_or("")))
                })
                .collect();
            got.sort_by_key(|g| g.0);
            let want: Vec<(u32, Binding, &str)> = k
                .bindings
                .iter()
                .zip(k.names)
                .enumerate()
                .map(|(i, (&b, &n))| (i as u32, b, n))
                .collect();
            assert_eq!(got, want, "{}", k.path);
            // WebGPU's default limit of storage buffers per shader stage.
            assert!(
                k.bindings.iter().filter(|&&b| b != Binding::Uniform).count() <= 8,
                "{}",
                k.path
            );
        }
    }
}

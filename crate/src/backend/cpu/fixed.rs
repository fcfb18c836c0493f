//! The fixed-point formats (fraction bits) of the forward pass's intermediates and the bounds
//! of its quantised operands, shared by every engine (the forward pass in `model.rs` and the
//! GPU engine name them `cpu::…`).

pub const RESID_FRAC: i32 = 12;
pub const QK_FRAC: i32 = 10;
pub const V_FRAC: i32 = 8;
pub const ATT_OUT_FRAC: i32 = 23;
pub const FFN_FRAC: i32 = 10;
pub const LOGIT_FRAC: i32 = crate::freq::LOGIT_FRAC;
/// Largest per-block activation mantissa.
pub const ACT_MANT_MAX: u32 = 4096;
/// q and k are re-quantised to |·| ≤ 511 per (token, head) with a power-of-two scale.
pub const QK_INT_MAX: u32 = 511;
/// round(log2(e) / sqrt(64) · 2^16): folds the softmax scale and the change to log2 units
/// into q.
pub const Q_SCALE_Q16: i32 = 11819;

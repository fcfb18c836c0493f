//! The buffer pool.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::channel::lock;
use super::device::Gpu;

/// The most bytes of free buffers the pool keeps (more are released).
const POOL_BYTES: u64 = 64 << 20;

/// Free storage buffers by size.
#[derive(Debug, Default)]
pub(super) struct Pool {
    free: HashMap<u64, Vec<wgpu::Buffer>>,
    bytes: u64,
}

/// The size a request of `bytes` is rounded up to: a multiple of 256 up to 4 KB, then of a
/// sixteenth of its power of two (at most 1/16 more), so that batches of different lengths
/// share buffers. The kernels bound their loops by their parameters, never by a buffer's length.
fn size_class(bytes: usize) -> u64 {
    let b = (bytes.max(4) as u64).next_multiple_of(4);
    if b <= 4096 {
        b.next_multiple_of(256)
    } else {
        b.next_multiple_of((1u64 << (63 - b.leading_zeros())) / 16)
    }
}

#[derive(Debug)]
struct Pooled {
    buf: wgpu::Buffer,
    /// Where it goes back when dropped; none for a buffer that is not pooled.
    pool: std::sync::Weak<Mutex<Pool>>,
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(p) = self.pool.upgrade() {
            let mut p = lock(&p);
            let size = self.buf.size();
            if p.bytes + size <= POOL_BYTES {
                p.bytes += size;
                p.free.entry(size).or_default().push(self.buf.clone());
            }
        }
    }
}

/// A storage buffer of the engine: from the pool (back in it when the last handle drops,
/// after which only later-recorded commands use it again: wgpu orders them after every
/// earlier use), or a plain one.
///
/// An `Arc`, as natively the engine's buffers are shared by threads. In the browser (wasm32)
/// wgpu's handles are neither `Send` nor `Sync` and everything runs on one thread, so the
/// `Arc` is only a counter there: clippy's `arc_with_non_send_sync` is allowed where one is made.
#[derive(Debug, Clone)]
pub struct Buf(Arc<Pooled>);

impl Buf {
    #[allow(clippy::arc_with_non_send_sync)] // wasm32 only; see `Buf`
    pub(super) fn plain(buf: wgpu::Buffer) -> Buf {
        Buf(Arc::new(Pooled {
            buf,
            pool: std::sync::Weak::new(),
        }))
    }
}

impl std::ops::Deref for Buf {
    type Target = wgpu::Buffer;
    fn deref(&self) -> &wgpu::Buffer {
        &self.0.buf
    }
}

impl Gpu {
    /// A storage buffer of at least `bytes` from the pool, for a kernel's output (its contents
    /// are whatever was there: every kernel writes all of its output).
    #[allow(clippy::arc_with_non_send_sync)] // wasm32 only; see `Buf`
    pub(super) fn buffer(&self, label: &str, bytes: usize) -> Buf {
        let size = size_class(bytes);
        let reused = {
            let mut p = lock(&self.pool);
            let b = p.free.get_mut(&size).and_then(Vec::pop);
            if b.is_some() {
                p.bytes -= size;
            }
            b
        };
        let buf = reused.unwrap_or_else(|| self.fresh(label, size as usize));
        Buf(Arc::new(Pooled {
            buf,
            pool: Arc::downgrade(&self.pool),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_classes_cover_the_request_with_at_most_a_sixteenth_more() {
        let mut last = 0;
        for bytes in (0..70_000).chain([1 << 20, (1 << 20) + 1, 12_582_912, 50_331_647, 50_331_648]) {
            let c = size_class(bytes);
            assert!(c >= bytes.max(4) as u64 && c.is_multiple_of(4), "{bytes} → {c}");
            assert!(
                c <= 4096 || c * 16 <= bytes as u64 * 17 + 16 * 16,
                "{bytes} → {c}: more than 1/16 over"
            );
            assert!(c >= last, "classes grow with the request");
            last = c;
        }
    }
}

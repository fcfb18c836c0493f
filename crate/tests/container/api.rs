//! The API around the codec: a progress that cancels, the async API, `block_on`.

use crate::common::{backend, tiny};
use crate::text;
use lmz::container::{info, ModelUse, Options};
use lmz::Error;

/// A progress that cancels once `after` bytes are reported stops the work with
/// `LMZ_CANCELLED`, compressing and decompressing, and a cancelled run leaves the engine
/// usable for the next one.
#[test]
fn progress_can_cancel_and_the_engine_stays_usable() {
    struct CancelAfter(u64, u64);
    impl lmz::container::Progress for CancelAfter {
        fn update(&mut self, done: u64, _total: u64) -> lmz::Result<()> {
            self.1 += 1;
            if done >= self.0 {
                return Err(Error::Cancelled);
            }
            Ok(())
        }
    }
    let t = tiny();
    let data = text(3000);
    let opts = Options {
        chunk_tokens: 200,
        model: ModelUse::Force,
        ..Options::default()
    };
    let mut b = backend();
    let e = t
        .codec
        .compress(&mut b, &data, &opts, &mut CancelAfter(1, 0))
        .unwrap_err();
    assert_eq!(e.code(), "LMZ_CANCELLED");
    let file = t.codec.compress(&mut b, &data, &opts, &mut |_, _| {}).unwrap();
    assert!(info(&file).unwrap().chunks.len() > 1);
    let mut p = CancelAfter(data.len() as u64 / 2, 0);
    assert!(matches!(
        t.codec.decompress(&mut b, &file, &mut p),
        Err(Error::Cancelled)
    ));
    assert!(p.1 >= 1);
    assert_eq!(t.codec.decompress(&mut b, &file, &mut |_, _| {}).unwrap(), data);
    // The raw stream too.
    for model in [ModelUse::Force, ModelUse::Never] {
        let raw = t
            .codec
            .compress_raw(&mut b, &data[..400], model, &mut |_, _| {})
            .unwrap();
        assert!(
            matches!(
                t.codec.decompress_raw(&mut b, &raw, 400, &mut CancelAfter(0, 0)),
                Err(Error::Cancelled)
            ),
            "{model:?}"
        );
        assert_eq!(
            t.codec.decompress_raw(&mut b, &raw, 400, &mut |_, _| {}).unwrap(),
            &data[..400]
        );
    }
}

/// The async API is the sync one's body: the same bytes, driven by any executor.
#[test]
fn async_api_gives_the_same_bytes() {
    let t = tiny();
    let data = text(1500);
    let opts = Options {
        chunk_tokens: 150,
        ..Options::default()
    };
    let mut b = backend();
    let sync = t.codec.compress(&mut b, &data, &opts, &mut |_, _| {}).unwrap();
    let asy = lmz::model::block_on(t.codec.compress_async(&mut b, &data, &opts, &mut |_, _| {})).unwrap();
    assert_eq!(sync, asy);
    let back = lmz::model::block_on(t.codec.decompress_async(&mut b, &asy, &mut |_, _| {})).unwrap();
    assert_eq!(back, data);
}

/// `block_on` polls once: a future that would wait (a browser's GPU readback) is an error
/// naming the async API, never a spin or a hang.
#[test]
fn block_on_refuses_a_future_that_waits() {
    struct WaitsOnce;
    impl std::future::Future for WaitsOnce {
        type Output = lmz::Result<u32>;
        fn poll(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
            std::task::Poll::Pending
        }
    }
    let e = lmz::model::block_on(WaitsOnce).unwrap_err();
    assert_eq!(e.code(), "LMZ_INVALID_ARGUMENT");
    assert!(e.to_string().contains("async"), "{e}");
    assert_eq!(lmz::model::block_on(async { Ok(7u32) }).unwrap(), 7);
}

//! Loading a compressor is timed step by step for the package's progress reports
//! (`Progress.step` / `Progress.ms` in `web/`): `Compressor.create` and `createVerified`
//! call their `onStep(name, ms)` as each step ends.

use js_sys::Function;
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    /// `performance.now()`, in a page or a worker: the same clock the package times its own
    /// steps with.
    #[wasm_bindgen(js_namespace = performance, js_name = now)]
    fn now() -> f64;
}

/// The clock of the steps of one load and where their times go.
pub(crate) struct Steps {
    on_step: Option<Function>,
    t: f64,
}

impl Steps {
    /// Starts the clock of the first step.
    pub(crate) fn new(on_step: Option<Function>) -> Steps {
        Steps { on_step, t: now() }
    }

    /// The step `name` has ended: hands its milliseconds to `onStep`, starts the next one's
    /// clock. What `onStep` throws fails the load.
    pub(crate) fn done(&mut self, name: &str) -> Result<(), JsValue> {
        let t = now();
        if let Some(f) = &self.on_step {
            f.call2(&JsValue::NULL, &JsValue::from_str(name), &JsValue::from_f64(t - self.t))?;
        }
        self.t = now();
        Ok(())
    }
}

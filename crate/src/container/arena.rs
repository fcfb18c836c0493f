//! Where the streams decoded in lock-step keep their KV cache: each in a region of the
//! engine's cache as long as it needs so far ([`Backend::kv_place`]), placed by first fit,
//! grown when the stream outgrows it (in place, or moved), the regions pushed together when
//! the free rows are scattered. A 60-token note takes 64 positions, not a 2,048-position
//! window, so the cache that holds one window holds dozens of notes.
//!
//! Which streams run is the decoder's choice ([`super::decode`]); this only says whether a
//! region fits. Nothing here changes a table: a stream's positions mean the same wherever
//! they are, and moving them copies them exactly.

use crate::backend::Backend;
use crate::error::Result;

/// Regions are sized in steps of this many positions.
pub(super) const STEP: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Region {
    slot: usize,
    base: usize,
    cap: usize,
}

/// The regions in use, in increasing `base`, never overlapping, all below `rows`.
#[derive(Debug)]
pub(super) struct Arena {
    rows: usize,
    regions: Vec<Region>,
}

impl Arena {
    /// The arena of an engine's whole cache.
    pub(super) fn new<B: Backend>(b: &B) -> Arena {
        Arena {
            rows: b.kv_map().rows(),
            regions: Vec::new(),
        }
    }

    /// Positions slot `slot` holds (0: none).
    pub(super) fn cap(&self, slot: usize) -> usize {
        self.regions.iter().find(|r| r.slot == slot).map_or(0, |r| r.cap)
    }

    /// The free rows: all of them minus the regions' lengths.
    pub(super) fn free(&self) -> usize {
        self.rows - self.regions.iter().map(|r| r.cap).sum::<usize>()
    }

    /// The first gap of at least `cap` rows: its base and where it goes in `regions`.
    fn gap(&self, cap: usize) -> Option<(usize, usize)> {
        let mut at = 0;
        for (i, r) in self.regions.iter().enumerate() {
            if r.base - at >= cap {
                return Some((at, i));
            }
            at = r.base + r.cap;
        }
        (self.rows - at >= cap).then_some((at, self.regions.len()))
    }

    /// Gives `slot` (which holds nothing) a region of `cap` positions, pushing the others
    /// together first if the free rows are scattered. `false`: not enough free rows.
    pub(super) fn alloc<B: Backend>(&mut self, b: &mut B, slot: usize, cap: usize) -> Result<bool> {
        debug_assert_eq!(self.cap(slot), 0);
        if self.free() < cap {
            return Ok(false);
        }
        if self.gap(cap).is_none() {
            self.compact(b)?;
        }
        let Some((base, i)) = self.gap(cap) else {
            return Ok(false);
        };
        b.kv_place(slot, base, cap, 0)?;
        self.regions.insert(i, Region { slot, base, cap });
        Ok(true)
    }

    /// Grows `slot`'s region to `cap` positions, keeping what it holds: in place when the
    /// rows after it are free, else moved to a gap, else after moving the others out of its
    /// way. `false`: fewer free rows than it grows by; the region is as it was.
    pub(super) fn grow<B: Backend>(&mut self, b: &mut B, slot: usize, cap: usize) -> Result<bool> {
        let Some(i) = self.regions.iter().position(|r| r.slot == slot) else {
            return self.alloc(b, slot, cap);
        };
        let r = self.regions[i];
        if cap <= r.cap {
            return Ok(true);
        }
        if self.free() < cap - r.cap {
            return Ok(false);
        }
        let end = self.regions.get(i + 1).map_or(self.rows, |n| n.base);
        if end - r.base >= cap {
            b.kv_place(slot, r.base, cap, r.cap)?;
            self.regions[i].cap = cap;
            return Ok(true);
        }
        // Elsewhere: out of the list while a gap is looked for (a gap may overlap its old
        // rows: the engine's move is an overlapping copy's).
        self.regions.remove(i);
        if let Some((base, j)) = self.gap(cap) {
            b.kv_place(slot, base, cap, r.cap)?;
            self.regions.insert(j, Region { slot, base, cap });
            return Ok(true);
        }
        self.regions.insert(i, r);
        // The free rows are scattered: push every region down (the free rows become one
        // tail of at least `cap − r.cap`), then the regions after this one up by what it
        // grows, the last first (each move is to higher rows than any region not yet
        // moved), and grow it in place.
        self.compact(b)?;
        let grow = cap - r.cap;
        for x in self.regions[i + 1..].iter_mut().rev() {
            b.kv_place(x.slot, x.base + grow, x.cap, x.cap)?;
            x.base += grow;
        }
        let r = self.regions[i];
        b.kv_place(slot, r.base, cap, r.cap)?;
        self.regions[i].cap = cap;
        Ok(true)
    }

    /// `slot`'s rows are free again.
    pub(super) fn release(&mut self, slot: usize) {
        self.regions.retain(|r| r.slot != slot);
    }

    /// Moves every region down to the lowest rows, in order (each move is to lower rows, so
    /// an overlapping copy is safe): the free rows become one tail.
    fn compact<B: Backend>(&mut self, b: &mut B) -> Result<()> {
        let mut at = 0;
        for r in self.regions.iter_mut() {
            if r.base != at {
                b.kv_place(r.slot, at, r.cap, r.cap)?;
                r.base = at;
            }
            at += r.cap;
        }
        Ok(())
    }

    /// Checks the invariants (tests).
    #[cfg(test)]
    fn check(&self) {
        let mut at = 0;
        for r in &self.regions {
            assert!(r.base >= at && r.cap > 0, "{self:?}");
            at = r.base + r.cap;
        }
        assert!(at <= self.rows, "{self:?}");
    }
}

/// A region's length for `need` positions: a multiple of [`STEP`], at most `max`.
pub(super) fn round(need: usize, max: usize) -> usize {
    need.div_ceil(STEP).saturating_mul(STEP).min(max).max(need.min(max))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::{CpuBackend, KvCache};
    use crate::backend::KvMap;
    use crate::tiny::{tiny_model, Rng, TinyShape};

    /// Random allocations, growths and releases keep the regions apart and inside the
    /// cache, the engine's map says the same as the arena, and what a slot held before a
    /// growth or a compaction is where the map says after it.
    #[test]
    fn regions_stay_apart_and_keep_their_rows() {
        let model = tiny_model(7, TinyShape::default()).unwrap();
        let mut b = CpuBackend::with_slots(&model, 4, 64).unwrap();
        let mut a = Arena::new(&b);
        assert_eq!(a.rows, 256);
        let mut r = Rng(5);
        // Marks: slot s's position p holds value 1000·s + p in the first value lane.
        let mark = |s: usize, p: usize| 1000 * s as i16 + p as i16;
        let kvd = model.config().n_kv_heads * model.config().head_dim;
        let mut live: Vec<usize> = Vec::new();
        for step in 0..2000 {
            let slot = r.below(12) as usize;
            match r.below(3) {
                0 if a.cap(slot) == 0 => {
                    let cap = 1 + r.below(60) as usize;
                    if a.alloc(&mut b, slot, cap).unwrap() {
                        live.push(slot);
                        for p in 0..cap {
                            let row = b.kv_map().row(slot, p);
                            let m = mark(slot, p);
                            write(&mut b, row * kvd, m);
                        }
                    }
                }
                1 if a.cap(slot) > 0 => {
                    let old = a.cap(slot);
                    let cap = (old + 1 + r.below(30) as usize).min(64);
                    if a.grow(&mut b, slot, cap).unwrap() {
                        for p in old..cap {
                            let row = b.kv_map().row(slot, p);
                            let m = mark(slot, p);
                            write(&mut b, row * kvd, m);
                        }
                    }
                }
                2 if a.cap(slot) > 0 => {
                    a.release(slot);
                    live.retain(|&s| s != slot);
                }
                _ => {}
            }
            a.check();
            for &s in &live {
                assert_eq!(b.kv_map().cap(s), a.cap(s));
                for p in 0..a.cap(s) {
                    let row = b.kv_map().row(s, p);
                    assert_eq!(read(&b, row * kvd), mark(s, p), "step {step}, slot {s}, position {p}");
                }
            }
        }
        b.kv_reset();
        assert_eq!(*b.kv_map(), KvMap::fixed(4, 64));
    }

    fn write(b: &mut CpuBackend, at: usize, v: i16) {
        for c in b.kv_caches_mut() {
            c.v[at] = v;
        }
    }

    fn read(b: &CpuBackend, at: usize) -> i16 {
        let c: &[KvCache] = b.kv_caches();
        assert!(c.iter().all(|l| l.v[at] == c[0].v[at]), "every layer moved alike");
        c[0].v[at]
    }

    #[test]
    fn regions_are_rounded_to_steps_within_the_most() {
        assert_eq!(round(1, 2048), 32);
        assert_eq!(round(33, 2048), 64);
        assert_eq!(round(100, 70), 70);
        assert_eq!(round(2048, 2048), 2048);
    }
}

//! The clock that times filter callbacks (the `weir_filter_duration_seconds` histograms and
//! `weir bench`'s per-filter shares). A request through four filters makes about thirty guest
//! calls, each timed, so the clock read is on the hot path: this one reads the CPU's
//! time-stamp counter where it is invariant (≈10 ns a read) and falls back to the monotonic
//! clock elsewhere (`Instant::now` costs ≈25 ns through the vDSO). Calibrated once per process.

use std::sync::OnceLock;

static CLOCK: OnceLock<quanta::Clock> = OnceLock::new();

fn clock() -> &'static quanta::Clock {
    CLOCK.get_or_init(quanta::Clock::new)
}

/// Calibrate now (at start-up) rather than in the first request.
pub(crate) fn init() {
    clock();
}

/// A point in time on the callback clock (opaque ticks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticks(u64);

impl Ticks {
    pub(crate) fn now() -> Ticks {
        Ticks(clock().raw())
    }

    /// Nanoseconds from `earlier` to `self` (zero if `earlier` is later).
    pub(crate) fn nanos_since(self, earlier: Ticks) -> u64 {
        if self.0 <= earlier.0 {
            return 0;
        }
        clock().delta_as_nanos(earlier.0, self.0)
    }
}

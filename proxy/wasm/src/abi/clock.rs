//! Clock and timers: `proxy_get_current_time_nanoseconds(ret)` (any context; wall clock) and
//! `proxy_set_tick_period_milliseconds(period)` (sets the tick of the VM's root context, from
//! any context; 0 stops it). The VM then calls `proxy_on_tick(root)` every period from a local
//! timer task on its worker.

use std::time::{SystemTime, UNIX_EPOCH};

use wasmtime::Linker;
use wasmtime::Result;

use super::{status, write_u64, Ctx};
use crate::state::HostState;

pub(crate) fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

pub(crate) fn add_to_linker(l: &mut Linker<HostState>) -> Result<()> {
    l.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        |mut c: Ctx<'_>, ret: i32| -> Result<i32> {
            write_u64(&mut c, ret, now_nanos())?;
            Ok(status::OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        |mut c: Ctx<'_>, period: i32| -> Result<i32> {
            c.data_mut().tick_period_ms = Some(period as u32);
            Ok(status::OK)
        },
    )?;
    Ok(())
}

//! Logging: `proxy_log(level, msg, len)` and `proxy_get_log_level(ret)`. Callable from any
//! context at any time; changes nothing but the host log. Messages go to `tracing` with target
//! `weir::filter` and the filter name. Also the AssemblyScript runtime's `env.abort`
//! (traps with the message), `env.trace` (logs) and `env.seed` (random f64).

use tracing::level_filters::LevelFilter;
use wasmtime::Linker;
use wasmtime::{format_err, Result};

use super::{read, status, write_u32, Ctx};
use crate::state::{ConfigPhase, HostState};

fn emit(filter: &str, request_id: Option<&str>, level: i32, msg: &str) {
    let request_id = request_id.unwrap_or("");
    match level {
        0 => tracing::trace!(target: "weir::filter", filter, request_id, "{msg}"),
        1 => tracing::debug!(target: "weir::filter", filter, request_id, "{msg}"),
        2 => tracing::info!(target: "weir::filter", filter, request_id, "{msg}"),
        3 => tracing::warn!(target: "weir::filter", filter, request_id, "{msg}"),
        _ => tracing::error!(target: "weir::filter", filter, request_id, "{msg}"),
    }
}

/// Log a message at a proxy-wasm level (0 trace .. 5 critical) on behalf of the VM's filter.
/// Lines logged under an HTTP context carry the stream's request id (`x-request-id`).
pub(crate) fn log(state: &HostState, level: i32, msg: &str) {
    let stream = state.current_http().map(|h| h.stream.clone());
    let info = stream.as_ref().and_then(|s| s.try_borrow().ok());
    let request_id = info
        .as_ref()
        .and_then(|d| d.info.request_id.as_ref())
        .and_then(|v| v.to_str().ok());
    emit(state.plugin_name(), request_id, level, msg);
}

/// The proxy-wasm level matching the host's current `tracing` max level.
pub fn current_level() -> u32 {
    match LevelFilter::current() {
        LevelFilter::TRACE => 0,
        LevelFilter::DEBUG => 1,
        LevelFilter::INFO => 2,
        LevelFilter::WARN => 3,
        LevelFilter::ERROR => 4,
        _ => 5,
    }
}

fn read_utf16(c: &mut Ctx<'_>, ptr: i32) -> Result<String> {
    // AssemblyScript strings: the u32 byte length is stored 4 bytes before the data.
    if ptr < 4 {
        return Ok(String::new());
    }
    let len_bytes = read(c, ptr - 4, 4)?;
    let len = u32::from_le_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
    let bytes = read(c, ptr, len.min(4096) as i32)?;
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    Ok(String::from_utf16_lossy(&units))
}

pub(crate) fn add_to_linker(l: &mut Linker<HostState>) -> Result<()> {
    l.func_wrap(
        "env",
        "proxy_log",
        |mut c: Ctx<'_>, level: i32, ptr: i32, len: i32| -> Result<i32> {
            if !(0..=5).contains(&level) {
                return Ok(status::BAD_ARGUMENT);
            }
            let msg = read(&mut c, ptr, len)?;
            let msg = String::from_utf8_lossy(&msg);
            log(c.data(), level, &msg);
            let s = c.data_mut();
            if level >= 3 && s.config_phase != ConfigPhase::None {
                s.config_log = Some(msg.chars().take(1024).collect());
            }
            Ok(status::OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_log_level",
        |mut c: Ctx<'_>, ret: i32| -> Result<i32> {
            write_u32(&mut c, ret, current_level())?;
            Ok(status::OK)
        },
    )?;
    // AssemblyScript runtime support.
    l.func_wrap(
        "env",
        "abort",
        |mut c: Ctx<'_>, msg: i32, file: i32, line: i32, col: i32| -> Result<()> {
            let msg = read_utf16(&mut c, msg).unwrap_or_default();
            let file = read_utf16(&mut c, file).unwrap_or_default();
            Err(format_err!("filter aborted: {msg} at {file}:{line}:{col}"))
        },
    )?;
    l.func_wrap(
        "env",
        "trace",
        |mut c: Ctx<'_>,
         msg: i32,
         n: i32,
         a0: f64,
         a1: f64,
         a2: f64,
         a3: f64,
         a4: f64|
         -> Result<()> {
            let msg = read_utf16(&mut c, msg).unwrap_or_default();
            let args = [a0, a1, a2, a3, a4];
            let n = (n.clamp(0, 5)) as usize;
            log(c.data(), 2, &format!("trace: {msg} {:?}", &args[..n]));
            Ok(())
        },
    )?;
    l.func_wrap("env", "seed", |_c: Ctx<'_>| -> f64 {
        rand::random::<f64>() * (u32::MAX as f64)
    })?;
    Ok(())
}

//! The proxy-wasm host functions, one file per hostcall family, all linked into module `env`
//! by [`add_to_linker`]. Shared here: status codes, guest-memory access and the pair
//! serialization used by header maps, `proxy_send_local_response`, `proxy_http_call` and map
//! properties.
//!
//! Guest pointers are checked; an out-of-bounds pointer or length traps the callback (a clean
//! wasm trap, handled by the filter's failure policy) and never panics the host.

use wasmtime::{format_err, Result};
use wasmtime::{Caller, Linker};

use crate::state::HostState;

pub mod buffers;
pub mod clock;
pub mod foreign;
pub mod grpc;
pub mod headers;
pub mod http_call;
pub mod legacy;
pub mod logging;
pub mod metrics;
pub mod properties;
pub mod shared_data;
pub mod shared_queue;
pub mod stream_control;

/// `proxy_status_t` values (ABI v0.2.1).
pub mod status {
    pub const OK: i32 = 0;
    pub const NOT_FOUND: i32 = 1;
    pub const BAD_ARGUMENT: i32 = 2;
    pub const SERIALIZATION_FAILURE: i32 = 3;
    pub const PARSE_FAILURE: i32 = 4;
    pub const INVALID_MEMORY_ACCESS: i32 = 6;
    pub const EMPTY: i32 = 7;
    pub const CAS_MISMATCH: i32 = 8;
    pub const INTERNAL_FAILURE: i32 = 10;
    pub const UNIMPLEMENTED: i32 = 12;
}

pub(crate) type Ctx<'a> = Caller<'a, HostState>;

/// A guest passed a pointer/length outside its memory: the callback traps.
#[derive(Debug, thiserror::Error)]
#[error("filter passed an out-of-bounds pointer ({ptr:#x}, {len} bytes)")]
pub struct BadGuestPointer {
    pub ptr: u32,
    pub len: u32,
}

fn memory(c: &Ctx<'_>) -> Result<wasmtime::Memory> {
    c.data()
        .memory
        .ok_or_else(|| format_err!("module exports no memory"))
}

/// Copy `len` bytes at `ptr` out of guest memory.
pub(crate) fn read(c: &mut Ctx<'_>, ptr: i32, len: i32) -> Result<Vec<u8>> {
    if len == 0 {
        return Ok(Vec::new());
    }
    let m = memory(c)?;
    let data = m.data(&*c);
    Ok(data[guest_range(data.len(), ptr, len)?].to_vec())
}

/// Guest range `[ptr, ptr + len)` checked against a memory of `size` bytes.
fn guest_range(size: usize, ptr: i32, len: i32) -> Result<std::ops::Range<usize>> {
    let (p, l) = (ptr as u32, len as u32);
    if l == 0 {
        return Ok(0..0); // an empty range is never out of bounds
    }
    let start = p as usize;
    let end = start
        .checked_add(l as usize)
        .filter(|e| *e <= size)
        .ok_or(BadGuestPointer { ptr: p, len: l })?;
    Ok(start..end)
}

/// Runs `f` on two guest byte ranges and the host state, borrowed in place (no copy out of
/// guest memory); a range outside the memory is a trap.
pub(crate) fn with_guest_slices<R>(
    c: &mut Ctx<'_>,
    (ap, al): (i32, i32),
    (bp, bl): (i32, i32),
    f: impl FnOnce(&[u8], &[u8], &mut HostState) -> R,
) -> Result<R> {
    let m = memory(c)?;
    let (data, state) = m.data_and_store_mut(&mut *c);
    let a = guest_range(data.len(), ap, al)?;
    let b = guest_range(data.len(), bp, bl)?;
    Ok(f(&data[a], &data[b], state))
}

/// Read a UTF-8 string (lossy is not acceptable for names: invalid UTF-8 gives `None`).
pub(crate) fn read_string(c: &mut Ctx<'_>, ptr: i32, len: i32) -> Result<Option<String>> {
    Ok(String::from_utf8(read(c, ptr, len)?).ok())
}

/// Write bytes at `ptr`.
pub(crate) fn write(c: &mut Ctx<'_>, ptr: u32, bytes: &[u8]) -> Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    let m = memory(c)?;
    let data = m.data_mut(&mut *c);
    let start = ptr as usize;
    let end = start
        .checked_add(bytes.len())
        .filter(|e| *e <= data.len())
        .ok_or(BadGuestPointer {
            ptr,
            len: bytes.len() as u32,
        })?;
    data[start..end].copy_from_slice(bytes);
    Ok(())
}

pub(crate) fn write_u32(c: &mut Ctx<'_>, ptr: i32, v: u32) -> Result<()> {
    write(c, ptr as u32, &v.to_le_bytes())
}

pub(crate) fn write_u64(c: &mut Ctx<'_>, ptr: i32, v: u64) -> Result<()> {
    write(c, ptr as u32, &v.to_le_bytes())
}

/// Allocate `bytes.len()` in the guest (`proxy_on_memory_allocate`/`malloc`), copy `bytes`
/// there and store pointer and size at `ret_ptr`/`ret_len`.
pub(crate) fn return_bytes(
    c: &mut Ctx<'_>,
    bytes: &[u8],
    ret_ptr: i32,
    ret_len: i32,
) -> Result<()> {
    let alloc = c
        .data()
        .alloc
        .clone()
        .ok_or_else(|| format_err!("module exports no allocator"))?;
    let p = alloc.call(&mut *c, bytes.len() as i32)? as u32;
    if p == 0 && !bytes.is_empty() {
        return Err(format_err!(
            "filter allocator returned null for {} bytes",
            bytes.len()
        ));
    }
    write(c, p, bytes)?;
    write_u32(c, ret_ptr, p)?;
    write_u32(c, ret_len, bytes.len() as u32)
}

/// Store a null pointer and size 0 (an empty result the SDKs read as "none").
pub(crate) fn return_none(c: &mut Ctx<'_>, ret_ptr: i32, ret_len: i32) -> Result<()> {
    write_u32(c, ret_ptr, 0)?;
    write_u32(c, ret_len, 0)
}

/// Serialize pairs: u32 count, (u32 key_len, u32 value_len)*, then each key and value followed
/// by NUL; little-endian.
pub fn serialize_pairs<'a>(pairs: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> Vec<u8> {
    let pairs: Vec<(&[u8], &[u8])> = pairs.collect();
    let size = 4 + pairs
        .iter()
        .map(|(k, v)| 8 + k.len() + v.len() + 2)
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in &pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in &pairs {
        out.extend_from_slice(k);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

fn u32_at(b: &[u8], at: usize) -> Option<usize> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize)
}

/// Parse the pair serialization; `None` when malformed. An empty map may come as no bytes or
/// as a single 0x00 byte (the spec allows both).
pub fn deserialize_pairs(b: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    if b.is_empty() || b == [0] {
        return Some(Vec::new());
    }
    let n = u32_at(b, 0)?;
    let mut p = n.checked_mul(8)?.checked_add(4)?;
    if p > b.len() {
        return None;
    }
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let ks = u32_at(b, 4 + i * 8)?;
        let vs = u32_at(b, 8 + i * 8)?;
        let k = b.get(p..p.checked_add(ks)?)?.to_vec();
        p = p.checked_add(ks)?.checked_add(1)?;
        let v = b.get(p..p.checked_add(vs)?)?.to_vec();
        p = p.checked_add(vs)?.checked_add(1)?;
        if p > b.len() {
            return None;
        }
        out.push((k, v));
    }
    Some(out)
}

/// Link every proxy-wasm host function (all ABI versions) into `env`.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> Result<()> {
    logging::add_to_linker(linker)?;
    clock::add_to_linker(linker)?;
    buffers::add_to_linker(linker)?;
    headers::add_to_linker(linker)?;
    stream_control::add_to_linker(linker)?;
    http_call::add_to_linker(linker)?;
    grpc::add_to_linker(linker)?;
    shared_data::add_to_linker(linker)?;
    shared_queue::add_to_linker(linker)?;
    metrics::add_to_linker(linker)?;
    properties::add_to_linker(linker)?;
    foreign::add_to_linker(linker)?;
    legacy::add_to_linker(linker)?;
    Ok(())
}

/// Every host function name this crate links into `env` (for tests and docs).
pub const ENV_FUNCTIONS: &[&str] = &[
    "proxy_log",
    "proxy_get_log_level",
    "proxy_get_current_time_nanoseconds",
    "proxy_set_tick_period_milliseconds",
    "proxy_get_buffer_bytes",
    "proxy_set_buffer_bytes",
    "proxy_get_buffer_status",
    "proxy_get_header_map_pairs",
    "proxy_set_header_map_pairs",
    "proxy_get_header_map_size",
    "proxy_get_header_map_value",
    "proxy_add_header_map_value",
    "proxy_replace_header_map_value",
    "proxy_remove_header_map_value",
    "proxy_continue_stream",
    "proxy_close_stream",
    "proxy_send_local_response",
    "proxy_set_effective_context",
    "proxy_done",
    "proxy_http_call",
    "proxy_grpc_call",
    "proxy_grpc_stream",
    "proxy_grpc_send",
    "proxy_grpc_cancel",
    "proxy_grpc_close",
    "proxy_get_status",
    "proxy_get_shared_data",
    "proxy_set_shared_data",
    "proxy_register_shared_queue",
    "proxy_resolve_shared_queue",
    "proxy_enqueue_shared_queue",
    "proxy_dequeue_shared_queue",
    "proxy_define_metric",
    "proxy_increment_metric",
    "proxy_record_metric",
    "proxy_get_metric",
    "proxy_get_property",
    "proxy_set_property",
    "proxy_call_foreign_function",
    "proxy_get_configuration",
    "proxy_continue_request",
    "proxy_continue_response",
    "proxy_clear_route_cache",
];

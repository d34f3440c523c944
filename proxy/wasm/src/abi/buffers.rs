//! Buffers: `proxy_get_buffer_bytes`, `proxy_set_buffer_bytes`, `proxy_get_buffer_status`.
//!
//! | type | buffer | readable | writable |
//! |---|---|---|---|
//! | 0 HTTP_REQUEST_BODY | the request body chunk (or whole buffered body) under the current / paused `proxy_on_request_body` | HTTP context | yes |
//! | 1 HTTP_RESPONSE_BODY | same for the response | HTTP context | yes |
//! | 4 HTTP_CALL_RESPONSE_BODY | body of the call being delivered | during `proxy_on_http_call_response` | no |
//! | 6 VM_CONFIGURATION | `vm_configuration` bytes | any context | no |
//! | 7 PLUGIN_CONFIGURATION | the filter's `config:` as JSON bytes | any context | no |
//! | 8 CALL_DATA | arguments of the foreign function being served | during `proxy_on_foreign_function` | no |
//!
//! 2/3 (TCP data) and 5 (gRPC) are NOT_FOUND; other types are BAD_ARGUMENT. An empty
//! (or past-the-end) read is OK with a null pointer, which the SDKs read as "no data".
//! `set` replaces `size` bytes at `start` (clamped): `start=0,size=0` prepends, `start>=len`
//! appends, `start=0,size>=len` replaces everything.

use bytes::Bytes;
use wasmtime::Linker;
use wasmtime::Result;

use super::{read, return_bytes, return_none, status, write_u32, Ctx};
use crate::state::HostState;

/// `[start, start+max)` of `b`, clamped.
fn range_of(len: usize, start: usize, max: usize) -> std::ops::Range<usize> {
    let start = start.min(len);
    start..start.saturating_add(max).min(len)
}

fn slice_of(b: &[u8], start: usize, max: usize) -> Bytes {
    Bytes::copy_from_slice(&b[range_of(b.len(), start, max)])
}

/// `[start, start+max)` of buffer `t` (clamped), or a status. A body range is shared with the
/// stream (no copy); other buffers are copied, since the guest is called (to allocate) before
/// the range is written into its memory.
fn get_range(s: &HostState, t: i32, start: usize, max: usize) -> Result<Bytes, i32> {
    match t {
        0 | 1 => {
            let ctx = s.current_http().ok_or(status::NOT_FOUND)?;
            let st = ctx
                .stream
                .try_borrow()
                .map_err(|_| status::INTERNAL_FAILURE)?;
            let b = if t == 0 {
                &st.request_body
            } else {
                &st.response_body
            };
            Ok(b.slice(range_of(b.len(), start, max)))
        }
        4 => {
            let r = s.call_response.as_ref().ok_or(status::NOT_FOUND)?;
            Ok(slice_of(&r.body, start, max))
        }
        6 => Ok(slice_of(&s.plugin.spec.vm_configuration, start, max)),
        7 => Ok(slice_of(&s.plugin.spec.configuration, start, max)),
        8 => {
            let a = s.foreign_args.as_ref().ok_or(status::NOT_FOUND)?;
            Ok(slice_of(a, start, max))
        }
        2 | 3 | 5 => Err(status::NOT_FOUND),
        _ => Err(status::BAD_ARGUMENT),
    }
}

fn len_of(s: &HostState, t: i32) -> Result<usize, i32> {
    match t {
        0 | 1 => {
            let ctx = s.current_http().ok_or(status::NOT_FOUND)?;
            let st = ctx
                .stream
                .try_borrow()
                .map_err(|_| status::INTERNAL_FAILURE)?;
            Ok(if t == 0 {
                st.request_body.len()
            } else {
                st.response_body.len()
            })
        }
        4 => Ok(s
            .call_response
            .as_ref()
            .ok_or(status::NOT_FOUND)?
            .body
            .len()),
        6 => Ok(s.plugin.spec.vm_configuration.len()),
        7 => Ok(s.plugin.spec.configuration.len()),
        8 => Ok(s.foreign_args.as_ref().ok_or(status::NOT_FOUND)?.len()),
        2 | 3 | 5 => Err(status::NOT_FOUND),
        _ => Err(status::BAD_ARGUMENT),
    }
}

/// Replace `size` bytes at `start` (clamped) with `value`. A body still shared with the
/// received chunk is copied here, on its first write (the allocation is reused when the body
/// is not shared).
pub(crate) fn splice(b: &mut Bytes, start: usize, size: usize, value: &[u8]) {
    let mut v = Vec::from(std::mem::take(b));
    v.splice(range_of(v.len(), start, size), value.iter().copied());
    *b = Bytes::from(v);
}

pub(crate) fn add_to_linker(l: &mut Linker<HostState>) -> Result<()> {
    l.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        |mut c: Ctx<'_>, t: i32, start: i32, max: i32, ret_ptr: i32, ret_len: i32| -> Result<i32> {
            match get_range(c.data(), t, start as u32 as usize, max as u32 as usize) {
                Ok(v) if v.is_empty() => return_none(&mut c, ret_ptr, ret_len)?,
                Ok(v) => return_bytes(&mut c, &v, ret_ptr, ret_len)?,
                Err(s) => return Ok(s),
            }
            Ok(status::OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_set_buffer_bytes",
        |mut c: Ctx<'_>, t: i32, start: i32, size: i32, ptr: i32, len: i32| -> Result<i32> {
            let value = read(&mut c, ptr, len)?;
            let s = c.data();
            match t {
                0 | 1 => {
                    let Some(ctx) = s.current_http() else {
                        return Ok(status::NOT_FOUND);
                    };
                    let Ok(mut st) = ctx.stream.try_borrow_mut() else {
                        return Ok(status::INTERNAL_FAILURE);
                    };
                    let b = if t == 0 {
                        &mut st.request_body
                    } else {
                        &mut st.response_body
                    };
                    splice(b, start as u32 as usize, size as u32 as usize, &value);
                    Ok(status::OK)
                }
                2..=8 => Ok(status::NOT_FOUND),
                _ => Ok(status::BAD_ARGUMENT),
            }
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_buffer_status",
        |mut c: Ctx<'_>, t: i32, ret_len: i32, ret_flags: i32| -> Result<i32> {
            match len_of(c.data(), t) {
                Ok(n) => {
                    write_u32(&mut c, ret_len, n as u32)?;
                    write_u32(&mut c, ret_flags, 0)?;
                    Ok(status::OK)
                }
                Err(s) => Ok(s),
            }
        },
    )?;
    Ok(())
}

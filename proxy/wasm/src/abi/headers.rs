//! Header maps: `proxy_get_header_map_pairs`, `proxy_set_header_map_pairs`,
//! `proxy_get_header_map_size`, `proxy_get_header_map_value`, `proxy_add_header_map_value`,
//! `proxy_replace_header_map_value`, `proxy_remove_header_map_value`.
//!
//! | type | map | from |
//! |---|---|---|
//! | 0 HTTP_REQUEST_HEADERS | request headers incl. `:method :path :authority :scheme` | an HTTP context; read/write in every phase (writes matter until the request headers are forwarded, i.e. during or paused in `proxy_on_request_headers`) |
//! | 1 HTTP_REQUEST_TRAILERS | request trailers | HTTP context |
//! | 2 HTTP_RESPONSE_HEADERS | response headers incl. `:status` | HTTP context |
//! | 3 HTTP_RESPONSE_TRAILERS | response trailers | HTTP context |
//! | 6/7 HTTP_CALL_RESPONSE_HEADERS/TRAILERS | the call response being delivered (`:status` included) | during `proxy_on_http_call_response`, read-only |
//!
//! Names are case-insensitive and stored lower-case. Reading all pairs of an unavailable map
//! gives OK and an empty map (the Rust SDK accepts only OK there); a missing value is NOT_FOUND;
//! modifying an unavailable map is NOT_FOUND; an unknown map type is BAD_ARGUMENT. Changing the
//! request headers clears the route cache, as `proxy_clear_route_cache` does.

use wasmtime::Linker;
use wasmtime::Result;

use super::{read, return_bytes, return_none, status, with_guest_slices, write_u32, Ctx};
use crate::headers::HeaderList;
use crate::state::HostState;

/// Run `f` on map `t` of the current context (mutable), or return a status.
fn with_map<R>(
    s: &mut HostState,
    t: i32,
    write: bool,
    f: impl FnOnce(&mut HeaderList) -> R,
) -> Result<R, i32> {
    match t {
        0..=3 => {
            let ctx = s.current_http().ok_or(status::NOT_FOUND)?;
            let mut st = ctx
                .stream
                .try_borrow_mut()
                .map_err(|_| status::INTERNAL_FAILURE)?;
            if t == 0 && write {
                // As Envoy: a change to the request headers clears the route cache (the proxy
                // picks the route again once the request headers phase is over).
                st.route_cache_cleared = true;
            }
            let map = match t {
                0 => &mut st.request_headers,
                1 => &mut st.request_trailers,
                2 => &mut st.response_headers,
                _ => &mut st.response_trailers,
            };
            Ok(f(map))
        }
        6 | 7 => {
            if write {
                return Err(status::NOT_FOUND);
            }
            let r = s.call_response.as_mut().ok_or(status::NOT_FOUND)?;
            Ok(f(if t == 6 {
                &mut r.headers
            } else {
                &mut r.trailers
            }))
        }
        4 | 5 => Err(status::NOT_FOUND),
        _ => Err(status::BAD_ARGUMENT),
    }
}

/// Runs `f` on map `t` with the name at `(kp, kl)` and the value at `(vp, vl)` borrowed from
/// guest memory (no copy; the list copies what it keeps); a status when the map is not there.
fn with_map_kv(
    c: &mut Ctx<'_>,
    t: i32,
    k: (i32, i32),
    v: (i32, i32),
    write: bool,
    f: impl FnOnce(&mut HeaderList, &[u8], &[u8]),
) -> Result<i32> {
    with_guest_slices(c, k, v, |key, value, s| {
        with_map(s, t, write, |m| f(m, key, value))
            .map(|_| status::OK)
            .unwrap_or_else(|s| s)
    })
}

pub(crate) fn add_to_linker(l: &mut Linker<HostState>) -> Result<()> {
    l.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        |mut c: Ctx<'_>, t: i32, ret_ptr: i32, ret_len: i32| -> Result<i32> {
            match with_map(c.data_mut(), t, false, |m| m.serialize()) {
                Ok(bytes) => return_bytes(&mut c, &bytes, ret_ptr, ret_len)?,
                Err(status::BAD_ARGUMENT) => return Ok(status::BAD_ARGUMENT),
                Err(_) => {
                    let empty = HeaderList::new().serialize();
                    return_bytes(&mut c, &empty, ret_ptr, ret_len)?
                }
            }
            Ok(status::OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_header_map_size",
        |mut c: Ctx<'_>, t: i32, ret: i32| -> Result<i32> {
            match with_map(c.data_mut(), t, false, |m| m.serialize().len()) {
                Ok(n) => {
                    write_u32(&mut c, ret, n as u32)?;
                    Ok(status::OK)
                }
                Err(s) => Ok(s),
            }
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_set_header_map_pairs",
        |mut c: Ctx<'_>, t: i32, ptr: i32, len: i32| -> Result<i32> {
            let bytes = read(&mut c, ptr, len)?;
            let Some(new) = HeaderList::deserialize(&bytes) else {
                return Ok(status::BAD_ARGUMENT);
            };
            Ok(with_map(c.data_mut(), t, true, |m| *m = new)
                .map(|_| status::OK)
                .unwrap_or_else(|s| s))
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_header_map_value",
        |mut c: Ctx<'_>, t: i32, kp: i32, kl: i32, ret_ptr: i32, ret_len: i32| -> Result<i32> {
            let found = with_guest_slices(&mut c, (kp, kl), (0, 0), |key, _, s| {
                with_map(s, t, false, |m| m.get_held(key))
            })?;
            match found {
                Ok(Some(v)) => {
                    // Allocated even when empty, so SDKs see Some("") rather than None.
                    return_bytes(&mut c, v.as_ref(), ret_ptr, ret_len)?;
                    Ok(status::OK)
                }
                Ok(None) => {
                    return_none(&mut c, ret_ptr, ret_len)?;
                    Ok(status::NOT_FOUND)
                }
                Err(s) => Ok(s),
            }
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_add_header_map_value",
        |mut c: Ctx<'_>, t: i32, kp: i32, kl: i32, vp: i32, vl: i32| -> Result<i32> {
            with_map_kv(&mut c, t, (kp, kl), (vp, vl), true, |m, k, v| m.add(k, v))
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_replace_header_map_value",
        |mut c: Ctx<'_>, t: i32, kp: i32, kl: i32, vp: i32, vl: i32| -> Result<i32> {
            with_map_kv(&mut c, t, (kp, kl), (vp, vl), true, |m, k, v| m.set(k, v))
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        |mut c: Ctx<'_>, t: i32, kp: i32, kl: i32| -> Result<i32> {
            with_map_kv(&mut c, t, (kp, kl), (0, 0), true, |m, k, _| m.remove(k))
        },
    )?;
    Ok(())
}

//! Properties: `proxy_get_property(path, ret_value)` and `proxy_set_property(path, value)`.
//! The path is its segments joined by NUL bytes; one NUL after the last segment is allowed and
//! ignored, as Envoy does (the C++ SDK ends every segment with one). Callable from any context; stream properties
//! (request.*, response.*, connection.*...) need the effective context to be an HTTP context,
//! plugin_* are always available. Values set on an HTTP context are readable back by every
//! filter of the same stream; values set on the root context by that VM. See
//! [`crate::properties`] for the list and the encodings. Unknown: NOT_FOUND.

use wasmtime::Linker;
use wasmtime::Result;

use super::{read, return_bytes, return_none, status, Ctx};
use crate::state::HostState;

/// The path without the NUL that may end its last segment (`request\0path\0` = `request\0path`).
fn trimmed(mut path: Vec<u8>) -> Vec<u8> {
    if path.last() == Some(&0) {
        path.pop();
    }
    path
}

fn lookup(s: &HostState, raw: &[u8]) -> Option<Vec<u8>> {
    let segments: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
    match s.current_http() {
        Some(ctx) => {
            let st = ctx.stream.try_borrow().ok()?;
            crate::properties::get_property(
                &segments,
                Some(&st),
                &s.plugin.spec,
                &s.root_props,
                raw,
            )
        }
        None => {
            crate::properties::get_property(&segments, None, &s.plugin.spec, &s.root_props, raw)
        }
    }
}

pub(crate) fn add_to_linker(l: &mut Linker<HostState>) -> Result<()> {
    l.func_wrap(
        "env",
        "proxy_get_property",
        |mut c: Ctx<'_>, pp: i32, pl: i32, ret_ptr: i32, ret_len: i32| -> Result<i32> {
            let path = trimmed(read(&mut c, pp, pl)?);
            match lookup(c.data(), &path) {
                Some(v) if v.is_empty() => {
                    return_none(&mut c, ret_ptr, ret_len)?;
                    Ok(status::OK)
                }
                Some(v) => {
                    return_bytes(&mut c, &v, ret_ptr, ret_len)?;
                    Ok(status::OK)
                }
                None => Ok(status::NOT_FOUND),
            }
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_set_property",
        |mut c: Ctx<'_>, pp: i32, pl: i32, vp: i32, vl: i32| -> Result<i32> {
            let path = trimmed(read(&mut c, pp, pl)?);
            let value = read(&mut c, vp, vl)?;
            let s = c.data_mut();
            match s.current_http() {
                Some(ctx) => {
                    let Ok(mut st) = ctx.stream.try_borrow_mut() else {
                        return Ok(status::INTERNAL_FAILURE);
                    };
                    st.props.retain(|(k, _)| *k != path);
                    st.props.push((path, value));
                }
                None => {
                    s.root_props.retain(|(k, _)| *k != path);
                    s.root_props.push((path, value));
                }
            }
            Ok(status::OK)
        },
    )?;
    Ok(())
}

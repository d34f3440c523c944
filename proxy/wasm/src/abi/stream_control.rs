//! Stream control: `proxy_continue_stream(type)`, `proxy_close_stream(type)`,
//! `proxy_send_local_response(...)`, `proxy_set_effective_context(id)`, `proxy_done()`, and the
//! ABI 0.1.0 `proxy_continue_request()`, `proxy_continue_response()`,
//! `proxy_clear_route_cache()`.
//!
//! All act on the effective context, which must be an HTTP context (else NOT_FOUND; for
//! `proxy_set_effective_context` an unknown id is BAD_ARGUMENT). Continue resumes a stream
//! parked by a Pause (callable from the paused callback itself, a tick, an http-call response or
//! a queue callback after `proxy_set_effective_context`). A local response ends the filter
//! chain: the proxy answers with it instead of forwarding (from request phases) or replaces the
//! upstream response (from response phases). Close resets the stream.

use bytes::Bytes;
use wasmtime::Linker;
use wasmtime::Result;

use super::{read, status, Ctx};
use crate::headers::HeaderList;
use crate::state::HostState;
use crate::stream::LocalResponse;

fn resume(s: &HostState) -> i32 {
    match s.current_http() {
        Some(ctx) => {
            ctx.signal.resumed.set(true);
            ctx.signal.wake();
            status::OK
        }
        None => status::NOT_FOUND,
    }
}

pub(crate) fn add_to_linker(l: &mut Linker<HostState>) -> Result<()> {
    l.func_wrap(
        "env",
        "proxy_continue_stream",
        |c: Ctx<'_>, t: i32| -> Result<i32> {
            match t {
                0 | 1 => Ok(resume(c.data())),
                2 | 3 => Ok(status::NOT_FOUND),
                _ => Ok(status::BAD_ARGUMENT),
            }
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_continue_request",
        |c: Ctx<'_>| -> Result<i32> { Ok(resume(c.data())) },
    )?;
    l.func_wrap(
        "env",
        "proxy_continue_response",
        |c: Ctx<'_>| -> Result<i32> { Ok(resume(c.data())) },
    )?;
    l.func_wrap(
        "env",
        "proxy_close_stream",
        |c: Ctx<'_>, t: i32| -> Result<i32> {
            if !(0..=3).contains(&t) {
                return Ok(status::BAD_ARGUMENT);
            }
            let Some(ctx) = c.data().current_http() else {
                return Ok(status::NOT_FOUND);
            };
            if let Ok(mut st) = ctx.stream.try_borrow_mut() {
                st.reset = true;
            }
            ctx.signal.wake();
            Ok(status::OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_clear_route_cache",
        |c: Ctx<'_>| -> Result<i32> {
            if let Some(ctx) = c.data().current_http() {
                if let Ok(mut st) = ctx.stream.try_borrow_mut() {
                    st.route_cache_cleared = true;
                }
            }
            Ok(status::OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_send_local_response",
        |mut c: Ctx<'_>,
         code: i32,
         dp: i32,
         dl: i32,
         bp: i32,
         bl: i32,
         hp: i32,
         hl: i32,
         grpc: i32|
         -> Result<i32> {
            let details = read(&mut c, dp, dl)?;
            let body = read(&mut c, bp, bl)?;
            let headers = read(&mut c, hp, hl)?;
            if !(100..=999).contains(&code) {
                return Ok(status::BAD_ARGUMENT);
            }
            let Some(headers) = HeaderList::deserialize(&headers) else {
                return Ok(status::BAD_ARGUMENT);
            };
            let Some(ctx) = c.data().current_http() else {
                return Ok(status::NOT_FOUND);
            };
            let Ok(mut st) = ctx.stream.try_borrow_mut() else {
                return Ok(status::INTERNAL_FAILURE);
            };
            st.local_response = Some(LocalResponse {
                status: code as u16,
                headers,
                body: Bytes::from(body),
                details: String::from_utf8_lossy(&details).into_owned(),
                grpc_status: (grpc >= 0).then_some(grpc),
            });
            drop(st);
            ctx.signal.wake();
            Ok(status::OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_set_effective_context",
        |mut c: Ctx<'_>, id: i32| -> Result<i32> {
            let id = id as u32;
            let s = c.data_mut();
            if id == s.root_id || s.http.contains_key(&id) {
                s.effective = id;
                Ok(status::OK)
            } else {
                Ok(status::BAD_ARGUMENT)
            }
        },
    )?;
    l.func_wrap("env", "proxy_done", |_c: Ctx<'_>| -> Result<i32> {
        // Contexts are finalized by the host right after proxy_on_done; nothing is pending.
        Ok(status::OK)
    })?;
    Ok(())
}

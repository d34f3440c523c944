//! gRPC: `proxy_grpc_call`, `proxy_grpc_stream`, `proxy_grpc_send`, `proxy_grpc_cancel`,
//! `proxy_grpc_close` are linked so every module links, and answer UNIMPLEMENTED (weir has no
//! gRPC client for filters yet). `proxy_get_status` answers OK with gRPC code 12
//! (UNIMPLEMENTED) and no message.

use wasmtime::Linker;
use wasmtime::Result;

use super::{return_none, status, write_u32, Ctx};
use crate::state::HostState;

pub(crate) fn add_to_linker(l: &mut Linker<HostState>) -> Result<()> {
    l.func_wrap(
        "env",
        "proxy_grpc_call",
        |_c: Ctx<'_>,
         _a: i32,
         _b: i32,
         _c2: i32,
         _d: i32,
         _e: i32,
         _f: i32,
         _g: i32,
         _h: i32,
         _i: i32,
         _j: i32,
         _k: i32,
         _l: i32|
         -> Result<i32> { Ok(status::UNIMPLEMENTED) },
    )?;
    l.func_wrap(
        "env",
        "proxy_grpc_stream",
        |_c: Ctx<'_>,
         _a: i32,
         _b: i32,
         _c2: i32,
         _d: i32,
         _e: i32,
         _f: i32,
         _g: i32,
         _h: i32,
         _i: i32|
         -> Result<i32> { Ok(status::UNIMPLEMENTED) },
    )?;
    l.func_wrap(
        "env",
        "proxy_grpc_send",
        |_c: Ctx<'_>, _t: i32, _p: i32, _l: i32, _e: i32| -> Result<i32> {
            Ok(status::UNIMPLEMENTED)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_grpc_cancel",
        |_c: Ctx<'_>, _t: i32| -> Result<i32> { Ok(status::UNIMPLEMENTED) },
    )?;
    l.func_wrap(
        "env",
        "proxy_grpc_close",
        |_c: Ctx<'_>, _t: i32| -> Result<i32> { Ok(status::UNIMPLEMENTED) },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_status",
        |mut c: Ctx<'_>, code: i32, mp: i32, ml: i32| -> Result<i32> {
            write_u32(&mut c, code, 12)?;
            return_none(&mut c, mp, ml)?;
            Ok(status::OK)
        },
    )?;
    Ok(())
}

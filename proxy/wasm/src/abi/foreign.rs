//! `proxy_call_foreign_function(name, args, ret_value)`: calls a host extension by name through
//! [`crate::HostServices::call_foreign_function`]. Any context. Unknown name: NOT_FOUND; a
//! failing function: INTERNAL_FAILURE; empty results are OK with a null pointer.

use wasmtime::Linker;
use wasmtime::Result;

use super::{read, read_string, return_bytes, return_none, status, Ctx};
use crate::state::HostState;

pub(crate) fn add_to_linker(l: &mut Linker<HostState>) -> Result<()> {
    l.func_wrap(
        "env",
        "proxy_call_foreign_function",
        |mut c: Ctx<'_>,
         np: i32,
         nl: i32,
         ap: i32,
         al: i32,
         ret_ptr: i32,
         ret_len: i32|
         -> Result<i32> {
            let Some(name) = read_string(&mut c, np, nl)? else {
                return Ok(status::BAD_ARGUMENT);
            };
            let args = read(&mut c, ap, al)?;
            let services = c.data().services.clone();
            match services.call_foreign_function(&name, &args) {
                None => Ok(status::NOT_FOUND),
                Some(Err(e)) => {
                    super::logging::log(c.data(), 3, &format!("foreign function {name}: {e}"));
                    Ok(status::INTERNAL_FAILURE)
                }
                Some(Ok(v)) => {
                    if v.is_empty() {
                        return_none(&mut c, ret_ptr, ret_len)?;
                    } else {
                        return_bytes(&mut c, &v, ret_ptr, ret_len)?;
                    }
                    Ok(status::OK)
                }
            }
        },
    )?;
    Ok(())
}

//! ABI 0.1.0-only host functions: `proxy_get_configuration(ret_value)` returns the VM
//! configuration during `proxy_on_vm_start` and the plugin configuration otherwise (root
//! context). (`proxy_continue_request`, `proxy_continue_response` and `proxy_clear_route_cache`
//! live with the other stream-control calls in [`super::stream_control`].)

use wasmtime::Linker;
use wasmtime::Result;

use super::{return_bytes, return_none, status, Ctx};
use crate::state::{ConfigPhase, HostState};

pub(crate) fn add_to_linker(l: &mut Linker<HostState>) -> Result<()> {
    l.func_wrap(
        "env",
        "proxy_get_configuration",
        |mut c: Ctx<'_>, ret_ptr: i32, ret_len: i32| -> Result<i32> {
            let s = c.data();
            let bytes = match s.config_phase {
                ConfigPhase::VmStart => s.plugin.spec.vm_configuration.clone(),
                _ => s.plugin.spec.configuration.clone(),
            };
            if bytes.is_empty() {
                return_none(&mut c, ret_ptr, ret_len)?;
            } else {
                return_bytes(&mut c, &bytes, ret_ptr, ret_len)?;
            }
            Ok(status::OK)
        },
    )?;
    Ok(())
}

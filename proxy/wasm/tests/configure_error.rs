//! A filter whose `proxy_on_configure` returns false: the error names the filter and carries
//! the last warning/error the guest logged while configuring (what `weir validate` prints).

mod common;

use common::*;
use weir_wasm::{NoServices, PluginVm, WasmError, WasmHost};

fn filter(log_level: i32) -> String {
    format!(
        r#"(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  {prelude}
  (data (i32.const 16) "rate: expected a positive integer")
  (data (i32.const 64) "configuring")
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (drop (call $log (i32.const 2) (i32.const 64) (i32.const 11)))
    (drop (call $log (i32.const {log_level}) (i32.const 16) (i32.const 33)))
    (i32.const 0))
)"#,
        prelude = prelude("proxy_abi_version_0_2_1")
    )
}

fn configure_error(wat: &str) -> String {
    let host = WasmHost::new().unwrap();
    let plugin = prepared(&host, wat, spec("limit"));
    match PluginVm::new(&plugin, std::rc::Rc::new(NoServices)) {
        Err(e @ WasmError::Configure { .. }) => e.to_string(),
        other => panic!("expected a configure error, got {other:?}"),
    }
}

#[test]
fn configure_error_carries_the_guests_last_error_log() {
    let msg = configure_error(&filter(4));
    assert_eq!(
        msg,
        "filter limit: proxy_on_configure failed: returned false: rate: expected a positive integer"
    );
}

#[test]
fn info_logs_are_not_errors() {
    let msg = configure_error(&filter(2));
    assert_eq!(
        msg,
        "filter limit: proxy_on_configure failed: returned false"
    );
}

//! WAT filters for the tests (weir loads `.wat` text modules).

const HEAD: &str = r#"
  (memory (export "memory") 2)
  (global $bump (mut i32) (i32.const 8192))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32) (local $p i32)
    (local.set $p (global.get $bump))
    (global.set $bump (i32.add (local.get $p) (i32.add (local.get $n) (i32.const 8))))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
"#;

/// Logs `MSG` (info) from `proxy_on_request_headers` and counts requests in the filter-defined
/// counter `METRIC` (defined in `proxy_on_configure`).
pub fn logger(msg: &str, metric: &str) -> String {
    format!(
        r#"(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_define_metric" (func $define (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_increment_metric" (func $inc (param i32 i64) (result i32)))
  {HEAD}
  (data (i32.const 1024) "{msg}")
  (data (i32.const 3072) "{metric}")
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (drop (call $define (i32.const 0) (i32.const 3072) (i32.const {mlen}) (i32.const 2048)))
    (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $log (i32.const 2) (i32.const 1024) (i32.const {len})))
    (drop (call $inc (i32.load (i32.const 2048)) (i64.const 1)))
    (i32.const 0))
)
"#,
        len = msg.len(),
        mlen = metric.len(),
    )
}

/// Answers every request itself with `status` (a filter denial).
pub fn deny(status: u16) -> String {
    deny_with(status, "denied")
}

/// Answers every request itself with `status` and `status_code_details` `details`.
pub fn deny_with(status: u16, details: &str) -> String {
    format!(
        r#"(module
  (import "env" "proxy_send_local_response"
    (func $respond (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  {HEAD}
  (data (i32.const 1024) "{details}")
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $respond (i32.const {status}) (i32.const 1024) (i32.const {len})
      (i32.const 1024) (i32.const {len}) (i32.const 0) (i32.const 0) (i32.const -1)))
    (i32.const 1))
)
"#,
        len = details.len(),
    )
}

/// Declares only the `log` callback (`weir.callbacks`), which adds the `response.size` property
/// to the filter-defined counter `metric`: the response body bypasses the chain, and its size
/// must still reach the filter.
pub fn size_logger(metric: &str) -> String {
    property_logger("response", metric)
}

/// Like [`size_logger`], for the `size` property of `side` (`request` or `response`).
pub fn property_logger(side: &str, metric: &str) -> String {
    format!(
        r#"(module
  (import "env" "proxy_define_metric" (func $define (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_increment_metric" (func $inc (param i32 i64) (result i32)))
  (import "env" "proxy_get_property" (func $prop (param i32 i32 i32 i32) (result i32)))
  {HEAD}
  (@custom "weir.callbacks" "log")
  (data (i32.const 1024) "{side}\00size")
  (data (i32.const 3072) "{metric}")
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (drop (call $define (i32.const 0) (i32.const 3072) (i32.const {mlen}) (i32.const 2048)))
    (i32.const 1))
  (func (export "proxy_on_log") (param i32)
    (if (i32.eqz (call $prop (i32.const 1024) (i32.const {plen}) (i32.const 2056) (i32.const 2060)))
      (then (drop (call $inc (i32.load (i32.const 2048)) (i64.load (i32.load (i32.const 2056))))))))
  (func (export "proxy_on_delete") (param i32))
)
"#,
        mlen = metric.len(),
        plen = side.len() + 5,
    )
}

//! `proxy_set_shared_data` with an empty value deletes the key (what the proxy-wasm Rust SDK's
//! `remove_shared_data` sends), under the same CAS rule as a write; other writes are unchanged.

mod common;

use common::*;
use weir_wasm::{FilterChain, Flow, StreamInfo, WasmHost};

/// On request headers, records the status of each shared-data call as a one-digit header
/// (`0` OK, `1` NOT_FOUND, `8` CAS_MISMATCH):
/// - `a`: set k=v (cas 0), `b`: set k="" (cas 0, delete), `c`: get k;
/// - `d`: get c (remember its cas), then set c=w (cas 0, bumps the cas),
///   `e`: delete c with the stale cas, `f`: get c (still there),
///   `g`: delete c with its current cas, `h`: get c;
/// - `i`: delete an absent key with cas 0, `j`: with a non-zero cas.
fn filter() -> String {
    format!(
        r#"(module
  (import "env" "proxy_get_shared_data" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_shared_data" (func $set (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  {prelude}
  (data (i32.const 16) "k")
  (data (i32.const 20) "v")
  (data (i32.const 24) "c")
  (data (i32.const 28) "w")
  (data (i32.const 32) "none")
  (data (i32.const 48) "abcdefghij")
  (func $rec (param $i i32) (param $st i32)
    (i32.store8 (i32.const 300) (i32.add (i32.const 48) (local.get $st)))
    (drop (call $add (i32.const 0) (i32.add (i32.const 48) (local.get $i)) (i32.const 1)
      (i32.const 300) (i32.const 1))))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (local $stale i32)
    (call $rec (i32.const 0) (call $set (i32.const 16) (i32.const 1) (i32.const 20) (i32.const 1) (i32.const 0)))
    (call $rec (i32.const 1) (call $set (i32.const 16) (i32.const 1) (i32.const 20) (i32.const 0) (i32.const 0)))
    (call $rec (i32.const 2) (call $get (i32.const 16) (i32.const 1) (i32.const 200) (i32.const 204) (i32.const 208)))
    (call $rec (i32.const 3) (call $get (i32.const 24) (i32.const 1) (i32.const 200) (i32.const 204) (i32.const 208)))
    (local.set $stale (i32.load (i32.const 208)))
    (drop (call $set (i32.const 24) (i32.const 1) (i32.const 28) (i32.const 1) (i32.const 0)))
    (call $rec (i32.const 4) (call $set (i32.const 24) (i32.const 1) (i32.const 28) (i32.const 0) (local.get $stale)))
    (call $rec (i32.const 5) (call $get (i32.const 24) (i32.const 1) (i32.const 200) (i32.const 204) (i32.const 208)))
    (call $rec (i32.const 6) (call $set (i32.const 24) (i32.const 1) (i32.const 28) (i32.const 0) (i32.load (i32.const 208))))
    (call $rec (i32.const 7) (call $get (i32.const 24) (i32.const 1) (i32.const 200) (i32.const 204) (i32.const 208)))
    (call $rec (i32.const 8) (call $set (i32.const 32) (i32.const 4) (i32.const 28) (i32.const 0) (i32.const 0)))
    (call $rec (i32.const 9) (call $set (i32.const 32) (i32.const 4) (i32.const 28) (i32.const 0) (i32.const 12345)))
    (i32.const 0))
)"#,
        prelude = prelude("proxy_abi_version_0_2_1")
    )
}

#[test]
fn empty_value_deletes_the_key_under_the_cas_rule() {
    let host = WasmHost::new().unwrap();
    let sd = host.shared_data().clone();
    assert!(sd.set("shd-vm", b"c", b"initial", 0));
    run_local(async {
        let vm = vm(&host, &filter(), spec("shd"));
        let chain = FilterChain::new(vec![vm]);
        let mut s = chain.new_stream(StreamInfo::default());
        assert_eq!(
            s.on_request_headers(get_request("/"), true).await,
            Flow::Continue
        );
        let h = s.request_headers().clone();
        let got: Vec<(&str, &str)> = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]
            .into_iter()
            .map(|c| (c, h.get_str(c).unwrap_or("?")))
            .collect();
        let expect = [
            ("a", "0"), // set k=v
            ("b", "0"), // delete k
            ("c", "1"), // k is gone: NOT_FOUND, not an empty value
            ("d", "0"), // c exists
            ("e", "8"), // delete with a stale cas: CAS_MISMATCH
            ("f", "0"), // ... and c is still there
            ("g", "0"), // delete with the current cas
            ("h", "1"), // gone
            ("i", "0"), // deleting an absent key is OK
            ("j", "0"), // also with a cas (nothing to compare against)
        ];
        assert_eq!(got, expect);
    });
    assert_eq!(sd.get("shd-vm", b"k"), None);
    assert_eq!(sd.get("shd-vm", b"c"), None);
    assert!(sd.is_empty("shd-vm"), "deleted keys free their entries");
}

#[test]
fn host_api_delete_and_cas_semantics() {
    let host = WasmHost::new().unwrap();
    let sd = host.shared_data();
    assert!(sd.set("vm", b"x", b"1", 0));
    let (_, cas1) = sd.get("vm", b"x").unwrap();
    assert!(cas1 != 0);
    // A write with the right cas succeeds and changes the cas; the old cas is now stale.
    assert!(sd.set("vm", b"x", b"2", cas1));
    let (v, cas2) = sd.get("vm", b"x").unwrap();
    assert_eq!(v, b"2");
    assert_ne!(cas1, cas2);
    assert!(!sd.set("vm", b"x", b"3", cas1), "stale cas write");
    assert!(!sd.set("vm", b"x", Vec::new(), cas1), "stale cas delete");
    assert_eq!(sd.get("vm", b"x").unwrap().0, b"2");
    // A non-zero cas on an absent key creates it (what weir-sdk's create-if-absent relies on).
    assert!(sd.set("vm", b"y", b"new", u32::MAX));
    assert_eq!(sd.len("vm"), 2);
    assert!(sd.set("vm", b"x", Vec::new(), cas2));
    assert!(sd.remove("vm", b"y", 0));
    assert_eq!(sd.get("vm", b"x"), None);
    assert!(sd.is_empty("vm"));
    // Other vm_ids are untouched.
    assert!(sd.set("other", b"x", b"1", 0));
    assert!(sd.remove("vm", b"x", 0));
    assert_eq!(sd.len("other"), 1);
}

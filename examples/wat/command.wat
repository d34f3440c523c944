;; command.wat: a hand-written proxy-wasm filter in the WASI "command" style
;; (exports `_start`). It imports WASI file-system functions it never calls, as
;; toolchains often do, to show the host links them (as ENOSYS/ENOTCAPABLE stubs).
;; On every request it adds the request header `x-wat: command` (or
;; `x-wat: uninitialized` if `_start` never ran).
(module
  (import "wasi_snapshot_preview1" "fd_read"
    (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close"
    (func $fd_close (param i32) (result i32)))
  (import "env" "proxy_add_header_map_value"
    (func $add_header (param i32 i32 i32 i32 i32) (result i32)))

  (memory (export "memory") 2)

  (data (i32.const 16) "x-wat")
  (data (i32.const 32) "command")
  (data (i32.const 48) "uninitialized")

  (global $initialized (mut i32) (i32.const 0))
  (global $heap (mut i32) (i32.const 4096))

  (func (export "_start")
    (global.set $initialized (i32.const 1)))

  (func (export "proxy_abi_version_0_2_1"))

  (func $malloc (export "malloc") (param $size i32) (result i32)
    (local $ptr i32)
    (local $end i32)
    (local.set $ptr (global.get $heap))
    (local.set $end (i32.add (local.get $ptr) (i32.and (i32.add (local.get $size) (i32.const 7)) (i32.const -8))))
    (if (i32.gt_u (local.get $end) (i32.mul (memory.size) (i32.const 65536)))
      (then
        (if (i32.eq
              (memory.grow (i32.add (i32.div_u (i32.sub (local.get $end) (i32.mul (memory.size) (i32.const 65536))) (i32.const 65536)) (i32.const 1)))
              (i32.const -1))
          (then (return (i32.const 0))))))
    (global.set $heap (local.get $end))
    (local.get $ptr))

  (func (export "proxy_on_context_create") (param $context_id i32) (param $root_context_id i32))

  (func (export "proxy_on_vm_start") (param $root_context_id i32) (param $vm_config_size i32) (result i32)
    (i32.const 1))

  (func (export "proxy_on_configure") (param $root_context_id i32) (param $config_size i32) (result i32)
    (i32.const 1))

  (func (export "proxy_on_request_headers") (param $context_id i32) (param $num_headers i32) (param $eos i32) (result i32)
    (if (global.get $initialized)
      (then
        (drop (call $add_header (i32.const 0) (i32.const 16) (i32.const 5) (i32.const 32) (i32.const 7))))
      (else
        (drop (call $add_header (i32.const 0) (i32.const 16) (i32.const 5) (i32.const 48) (i32.const 13)))))
    (i32.const 0))

  ;; Never called: keeps the WASI imports referenced so no tool strips them.
  (func $unused (export "never_called") (result i32)
    (drop (call $fd_read (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)))
    (drop (call $path_open (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i64.const 0) (i64.const 0) (i32.const 0) (i32.const 0)))
    (call $fd_close (i32.const 3)))
)

;; reactor.wat: a hand-written proxy-wasm filter in the "reactor" style (WASI
;; `_initialize`, no `_start`). On every request it adds the request header
;; `x-wat: reactor` (or `x-wat: uninitialized` if the host forgot `_initialize`).
;;
;; weir loads .wat text directly; scripts/build-filters.sh also assembles it to
;; target/filters/reactor.wasm when `wat2wasm` (Debian package `wabt`) is present.
(module
  (import "env" "proxy_add_header_map_value"
    (func $add_header (param i32 i32 i32 i32 i32) (result i32)))

  (memory (export "memory") 2)

  ;; Static data: header name and the two possible values.
  (data (i32.const 16) "x-wat")
  (data (i32.const 32) "reactor")
  (data (i32.const 48) "uninitialized")

  (global $initialized (mut i32) (i32.const 0))
  ;; Bump allocator for buffers the host hands to the module.
  (global $heap (mut i32) (i32.const 4096))

  (func (export "_initialize")
    (global.set $initialized (i32.const 1)))

  (func (export "proxy_abi_version_0_2_1"))

  (func $malloc (export "malloc") (param $size i32) (result i32)
    (local $ptr i32)
    (local $end i32)
    (local.set $ptr (global.get $heap))
    (local.set $end (i32.add (local.get $ptr) (i32.and (i32.add (local.get $size) (i32.const 7)) (i32.const -8))))
    ;; Grow memory when the block would not fit.
    (if (i32.gt_u (local.get $end) (i32.mul (memory.size) (i32.const 65536)))
      (then
        (if (i32.eq
              (memory.grow (i32.add (i32.div_u (i32.sub (local.get $end) (i32.mul (memory.size) (i32.const 65536))) (i32.const 65536)) (i32.const 1)))
              (i32.const -1))
          (then (return (i32.const 0))))))
    (global.set $heap (local.get $end))
    (local.get $ptr))

  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (call $malloc (local.get $size)))

  (func (export "proxy_on_context_create") (param $context_id i32) (param $root_context_id i32))

  (func (export "proxy_on_vm_start") (param $root_context_id i32) (param $vm_config_size i32) (result i32)
    (i32.const 1))

  (func (export "proxy_on_configure") (param $root_context_id i32) (param $config_size i32) (result i32)
    (i32.const 1))

  ;; (context_id, num_headers, end_of_stream) -> Action (0 = Continue)
  (func (export "proxy_on_request_headers") (param $context_id i32) (param $num_headers i32) (param $eos i32) (result i32)
    (if (global.get $initialized)
      (then
        ;; map type 0 = HttpRequestHeaders
        (drop (call $add_header (i32.const 0) (i32.const 16) (i32.const 5) (i32.const 32) (i32.const 7))))
      (else
        (drop (call $add_header (i32.const 0) (i32.const 16) (i32.const 5) (i32.const 48) (i32.const 13)))))
    (i32.const 0))
)

// Example weir filter in plain C (freestanding: no libc, no SDK): adds the response
// header `x-c: <config>` (or `x-c: 1` with an empty config) to every response.
//
// Build (clang and wasm-ld from Debian's `clang` and `lld` packages):
//   clang --target=wasm32-unknown-unknown -O2 -nostdlib -ffreestanding \
//         -Wl,--no-entry -Wl,--strip-all -o example_c.wasm filter.c
// scripts/build-filters.sh does this when clang is present → target/filters/example_c.wasm.

typedef unsigned int u32;
typedef unsigned long size_t;

#define IMPORT(name) __attribute__((import_module("env"), import_name(#name)))
#define EXPORT(name) __attribute__((export_name(#name)))

enum { OK = 0 };
enum { MAP_RESPONSE_HEADERS = 2 };
enum { BUFFER_PLUGIN_CONFIGURATION = 7 };
enum { LOG_ERROR = 4 };

IMPORT(proxy_log) u32 proxy_log(u32 level, const char *msg, size_t len);
IMPORT(proxy_get_buffer_bytes)
u32 proxy_get_buffer_bytes(u32 type, u32 start, u32 max, char **ret_ptr, size_t *ret_len);
IMPORT(proxy_replace_header_map_value)
u32 proxy_replace_header_map_value(u32 map, const char *key, size_t key_len, const char *val,
                                   size_t val_len);

// === allocator: a bump allocator over linear memory (the host hands us buffers) ===

extern unsigned char __heap_base;
static unsigned long heap_top = 0;

EXPORT(malloc) void *malloc(size_t size) {
  if (heap_top == 0) heap_top = (unsigned long)&__heap_base;
  unsigned long p = (heap_top + 7) & ~7ul;
  unsigned long end = p + size;
  unsigned long have = __builtin_wasm_memory_size(0) * 65536ul;
  if (end > have) {
    if (__builtin_wasm_memory_grow(0, (end - have + 65535) / 65536) == (unsigned long)-1) return 0;
  }
  heap_top = end;
  return (void *)p;
}

EXPORT(proxy_on_memory_allocate) void *proxy_on_memory_allocate(size_t size) { return malloc(size); }

// === filter ===

static char *value = "1";
static size_t value_len = 1;

EXPORT(proxy_abi_version_0_2_1) void proxy_abi_version_0_2_1(void) {}

EXPORT(proxy_on_context_create) void proxy_on_context_create(u32 context_id, u32 root_id) {}

EXPORT(proxy_on_vm_start) u32 proxy_on_vm_start(u32 root_id, u32 vm_config_size) { return 1; }

EXPORT(proxy_on_configure) u32 proxy_on_configure(u32 root_id, u32 config_size) {
  if (config_size == 0) return 1;
  char *p = 0;
  size_t n = 0;
  if (proxy_get_buffer_bytes(BUFFER_PLUGIN_CONFIGURATION, 0, config_size, &p, &n) != OK) return 1;
  // The config arrives as JSON; a JSON string "..." is used without its quotes.
  if (n >= 2 && p[0] == '"' && p[n - 1] == '"') {
    p++;
    n -= 2;
  }
  for (size_t i = 0; i < n; i++) {
    if (p[i] == '\r' || p[i] == '\n') {
      static const char msg[] = "example_c: config must be one line";
      proxy_log(LOG_ERROR, msg, sizeof msg - 1);
      return 0;
    }
  }
  value = p;
  value_len = n;
  return 1;
}

EXPORT(proxy_on_response_headers)
u32 proxy_on_response_headers(u32 context_id, u32 num_headers, u32 end_of_stream) {
  proxy_replace_header_map_value(MAP_RESPONSE_HEADERS, "x-c", 3, value, value_len);
  return 0; // Continue
}

//! The proxy-wasm (ABI v0.2.1) host on wasmtime. TODO

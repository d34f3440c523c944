//! The proxy side of the proxy-wasm host (the host itself is the `weir-wasm` crate):
//! compiling and preparing a snapshot's filters ([`load`]), one VM per (filter, worker) and the
//! chain of every route ([`worker`]), `proxy_http_call` through the real pools
//! ([`services`]), and bodies through a chain ([`body`]), whose two sides share the request's
//! stream through a [`stream_lock`].

pub mod body;
pub mod load;
pub mod services;
pub mod stream_lock;
pub mod worker;

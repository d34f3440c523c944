//! [`callbacks!`](crate::callbacks!): tell weir which HTTP stream callbacks the filter
//! implements, so it does not call the others.
//!
//! A proxy-wasm host calls every stream callback of every filter: for a plain request through
//! four filters that is 28 guest calls (context create, request and response headers, response
//! body, done, log, delete). Most filters act in one or two of them; the SDK answers the rest
//! with its defaults (`Continue`, `true`), but each call still costs a trip into the VM, the
//! SDK's dispatch and its `proxy_set_effective_context` hostcall.
//!
//! `weir_sdk::callbacks!(request_headers, response_headers);` writes a custom section
//! `weir.callbacks` into the module listing the callbacks the filter overrides. weir then calls
//! only those of `request_headers`, `request_body`, `request_trailers`, `response_headers`,
//! `response_body`, `response_trailers`, `done` and `log`; a callback left out counts as the
//! SDK default (`Continue`; `done` → `true`). Context create and delete, and every root
//! callback (start, configure, tick, queue, HTTP call response), are always called. A module
//! without the section gets every callback, as on Envoy; other hosts ignore the section, so the
//! filter stays portable. When no filter of a chain takes a body's callbacks, that body (request
//! or response) goes past the chain as it is; its size and trailers still reach the filters'
//! properties (`request.size`, `response.trailers`...).
//!
//! List every callback the filter overrides: one left out is simply never called on weir.

/// Declares the HTTP stream callbacks this filter implements (see [the module](self)).
///
/// ```ignore
/// weir_sdk::callbacks!(request_headers, response_headers);
/// ```
#[macro_export]
macro_rules! callbacks {
    ($($name:ident),* $(,)?) => {
        const _: () = {
            const TEXT: &str = concat!($(stringify!($name), " "),*);
            #[cfg_attr(target_family = "wasm", link_section = "weir.callbacks")]
            #[used]
            static WEIR_CALLBACKS: [u8; TEXT.len()] = $crate::callbacks::section(TEXT);
        };
    };
}

/// The section's bytes: the callback names, separated by spaces (used by [`callbacks!`]).
#[doc(hidden)]
pub const fn section<const N: usize>(text: &str) -> [u8; N] {
    let bytes = text.as_bytes();
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = bytes[i];
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn section_holds_the_names() {
        const TEXT: &str = concat!(stringify!(request_headers), " ", stringify!(log), " ");
        let s: [u8; TEXT.len()] = super::section(TEXT);
        assert_eq!(&s, b"request_headers log ");
    }
}

//! [`Callbacks`]: the HTTP stream callbacks a module declares it implements, read from its
//! `weir.callbacks` custom section (written by weir-sdk's `callbacks!` macro).
//!
//! A proxy-wasm host calls every stream callback of every filter, and an SDK answers the ones a
//! filter does not override with its defaults. Each of those calls still costs a trip into the
//! VM and the SDK's dispatch (about 500 instructions), so a module may list, in a custom section
//! named `weir.callbacks`, the names of the stream callbacks it implements, separated by spaces
//! or commas:
//!
//! `request_headers request_body request_trailers response_headers response_body
//! response_trailers done log`
//!
//! The host then calls only those of the eight; one left out counts as the SDK default
//! (`Continue`, and `true` for `done`). `proxy_on_context_create`, `proxy_on_delete` and every
//! root callback are always called. A module without the section gets every callback (as on
//! Envoy); other hosts ignore the section. An unknown name is a compile error, so a typo cannot
//! silently switch a callback off. WAT text modules declare it with
//! `(@custom "weir.callbacks" "request_headers log")`.

use crate::metrics::Phase;

/// The custom section's name.
pub const SECTION: &str = "weir.callbacks";

/// The stream phases a module's section may leave out.
const OPTIONAL: [Phase; 8] = [
    Phase::RequestHeaders,
    Phase::RequestBody,
    Phase::RequestTrailers,
    Phase::ResponseHeaders,
    Phase::ResponseBody,
    Phase::ResponseTrailers,
    Phase::Done,
    Phase::Log,
];

/// Which callbacks the host makes: one bit per [`Phase`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Callbacks(u32);

impl Callbacks {
    /// Every callback (a module without the section).
    pub const ALL: Callbacks = Callbacks(u32::MAX);

    /// Whether the host calls the module's callback for `phase`.
    pub fn calls(self, phase: Phase) -> bool {
        self.0 & bit(phase) != 0
    }

    /// From a wasm binary: [`Callbacks::ALL`] without a `weir.callbacks` section (or for
    /// anything else); otherwise the listed callbacks plus every non-optional one. Several sections
    /// add up. Errors name an unknown callback.
    pub fn of_module(bytes: &[u8]) -> Result<Callbacks, String> {
        let mut listed: Option<u32> = None;
        for content in custom_sections(bytes, SECTION) {
            let text = std::str::from_utf8(content)
                .map_err(|_| format!("custom section {SECTION} is not UTF-8"))?;
            let mut bits = listed.unwrap_or(0);
            for name in text
                .split([' ', ',', '\n', '\t', '\0'])
                .filter(|n| !n.is_empty())
            {
                let phase = OPTIONAL
                    .iter()
                    .find(|p| p.as_str() == name)
                    .ok_or_else(|| {
                        let known: Vec<&str> = OPTIONAL.iter().map(|p| p.as_str()).collect();
                        format!(
                            "custom section {SECTION} names unknown callback `{name}` (known: {})",
                            known.join(", ")
                        )
                    })?;
                bits |= bit(*phase);
            }
            listed = Some(bits);
        }
        Ok(match listed {
            None => Callbacks::ALL,
            Some(bits) => {
                let optional = OPTIONAL.iter().fold(0, |acc, p| acc | bit(*p));
                Callbacks(!optional | bits)
            }
        })
    }
}

fn bit(phase: Phase) -> u32 {
    1 << (phase as u32)
}

/// The contents of every custom section named `name` in a wasm binary (nothing for anything
/// else: WAT text, or bytes that are cut short — the compiler reports those).
fn custom_sections<'a>(bytes: &'a [u8], name: &str) -> Vec<&'a [u8]> {
    let mut found = Vec::new();
    let Some(mut rest) = bytes.strip_prefix(b"\0asm").and_then(|b| b.get(4..)) else {
        return found;
    };
    while let Some((&id, after_id)) = rest.split_first() {
        let Some((size, body)) = leb_u32(after_id) else {
            break;
        };
        let Some((section, next)) = body.split_at_checked(size as usize) else {
            break;
        };
        if id == 0 {
            if let Some((len, named)) = leb_u32(section) {
                if let Some((n, content)) = named.split_at_checked(len as usize) {
                    if n == name.as_bytes() {
                        found.push(content);
                    }
                }
            }
        }
        rest = next;
    }
    found
}

/// An unsigned LEB128 `u32` and the bytes after it.
fn leb_u32(bytes: &[u8]) -> Option<(u32, &[u8])> {
    let mut value: u32 = 0;
    for (i, &b) in bytes.iter().enumerate().take(5) {
        value |= u32::from(b & 0x7f).checked_shl(7 * i as u32)?;
        if b & 0x80 == 0 {
            return Some((value, &bytes[i + 1..]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module_with(sections: &[(&str, &[u8])]) -> Vec<u8> {
        let mut m = b"\0asm\x01\0\0\0".to_vec();
        for (name, content) in sections {
            let mut body = vec![name.len() as u8];
            body.extend_from_slice(name.as_bytes());
            body.extend_from_slice(content);
            m.push(0);
            m.push(body.len() as u8);
            m.extend(body);
        }
        m
    }

    #[test]
    fn no_section_calls_everything() {
        let c = Callbacks::of_module(&module_with(&[("name", b"x")])).unwrap();
        assert_eq!(c, Callbacks::ALL);
        assert_eq!(Callbacks::of_module(b"(module)").unwrap(), Callbacks::ALL);
    }

    #[test]
    fn listed_callbacks_and_the_mandatory_ones_are_called() {
        let m = module_with(&[(SECTION, b"request_headers, log ")]);
        let c = Callbacks::of_module(&m).unwrap();
        for p in [
            Phase::RequestHeaders,
            Phase::Log,
            Phase::ContextCreate,
            Phase::Delete,
            Phase::Tick,
            Phase::Configure,
        ] {
            assert!(c.calls(p), "{p:?}");
        }
        for p in [
            Phase::RequestBody,
            Phase::ResponseHeaders,
            Phase::ResponseBody,
            Phase::Done,
        ] {
            assert!(!c.calls(p), "{p:?}");
        }
    }

    #[test]
    fn sections_add_up_and_an_empty_one_lists_none() {
        let m = module_with(&[(SECTION, b""), (SECTION, b"response_body")]);
        let c = Callbacks::of_module(&m).unwrap();
        assert!(c.calls(Phase::ResponseBody));
        assert!(!c.calls(Phase::RequestHeaders));
        let c = Callbacks::of_module(&module_with(&[(SECTION, b"")])).unwrap();
        assert!(!c.calls(Phase::RequestHeaders) && c.calls(Phase::Delete));
    }

    #[test]
    fn an_unknown_name_is_an_error() {
        let m = module_with(&[(SECTION, b"request_header")]);
        let e = Callbacks::of_module(&m).unwrap_err();
        assert!(e.contains("unknown callback `request_header`"), "{e}");
    }

    #[test]
    fn wat_text_declares_with_a_custom_annotation() {
        let wat = r#"(module (@custom "weir.callbacks" "response_body"))"#;
        let c = Callbacks::of_module(&wat::parse_str(wat).unwrap()).unwrap();
        assert!(c.calls(Phase::ResponseBody) && !c.calls(Phase::RequestHeaders));
        let plain = wat::parse_str("(module)").unwrap();
        assert_eq!(Callbacks::of_module(&plain).unwrap(), Callbacks::ALL);
    }

    #[test]
    fn truncated_bytes_are_no_section() {
        let mut m = module_with(&[(SECTION, b"log")]);
        m.truncate(m.len() - 2);
        assert_eq!(Callbacks::of_module(&m).unwrap(), Callbacks::ALL);
    }
}

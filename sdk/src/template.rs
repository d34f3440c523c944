//! `%property.path%` interpolation for header values, parsed once at configure
//! time and rendered per request. `%%` is a literal `%`.
//!
//! `"%source.address% via weir"` renders as `"10.0.0.7:50514 via weir"`. An unknown
//! property renders as an empty string.

use crate::properties;

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Property { dotted: String },
}

/// A parsed header-value template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// A template with an unterminated or empty `%...%`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid template {text:?}: {reason}")]
pub struct TemplateError {
    /// The template text.
    pub text: String,
    /// What was wrong.
    pub reason: &'static str,
}

// === impl Template ===

impl Template {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let err = |reason| TemplateError {
            text: text.to_string(),
            reason,
        };
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = text;
        while let Some(i) = rest.find('%') {
            lit.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            if let Some(stripped) = after.strip_prefix('%') {
                lit.push('%');
                rest = stripped;
                continue;
            }
            let end = after
                .find('%')
                .ok_or_else(|| err("unterminated %property%"))?;
            let name = &after[..end];
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(err("empty or malformed %property% name"));
            }
            if !lit.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut lit)));
            }
            parts.push(Part::Property {
                dotted: name.to_string(),
            });
            rest = &after[end + 1..];
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            parts.push(Part::Literal(lit));
        }
        Ok(Self { parts })
    }

    /// Whether rendering needs no host call (the text is constant).
    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Literal(_)))
    }

    /// Renders with `lookup(dotted_path)` supplying property values.
    pub fn render_with(&self, mut lookup: impl FnMut(&str) -> Option<String>) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Literal(s) => out.push_str(s),
                Part::Property { dotted } => {
                    if let Some(v) = lookup(dotted) {
                        out.push_str(&v);
                    }
                }
            }
        }
        out
    }

    /// Renders with properties read from the host; a plain literal is borrowed (no
    /// allocation per request).
    pub fn render_cow(&self) -> std::borrow::Cow<'_, str> {
        match self.as_literal() {
            Some(s) => std::borrow::Cow::Borrowed(s),
            None => std::borrow::Cow::Owned(self.render()),
        }
    }

    /// The text of a template without placeholders.
    pub fn as_literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Literal(s)] => Some(s),
            _ => None,
        }
    }

    /// Renders with properties read from the host.
    pub fn render(&self) -> String {
        self.render_with(|dotted| {
            let path = properties::split_path(dotted);
            properties::property_display(&path)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_renders() {
        let t = Template::parse("%source.address% via weir 100%%").unwrap();
        assert!(!t.is_literal());
        let s = t.render_with(|p| (p == "source.address").then(|| "1.2.3.4:5".to_string()));
        assert_eq!(s, "1.2.3.4:5 via weir 100%");
        assert!(Template::parse("plain").unwrap().is_literal());
        assert_eq!(
            Template::parse("plain").unwrap().as_literal(),
            Some("plain")
        );
        assert_eq!(Template::parse("").unwrap().as_literal(), Some(""));
        assert_eq!(t.as_literal(), None);
        assert!(Template::parse("%open").is_err());
        assert!(Template::parse("%%%").is_err());
        assert_eq!(Template::parse("%x%").unwrap().render_with(|_| None), "");
    }
}

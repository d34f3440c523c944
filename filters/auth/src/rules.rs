//! Authorization rules: allow/deny by principal, method and path prefix. Deny wins;
//! when any allow rule exists, a request must match one.

use serde::Deserialize;

/// `allow` or `deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Admit matching requests.
    Allow,
    /// Refuse matching requests with 403.
    Deny,
}

/// One rule as configured. An absent or empty list matches anything.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// What a match does.
    pub action: Action,
    /// Principals: exact, `prefix*`, or `*` (any authenticated principal).
    #[serde(default)]
    pub principals: Vec<String>,
    /// HTTP methods (case-insensitive).
    #[serde(default)]
    pub methods: Vec<String>,
    /// Path prefixes (the query string is ignored).
    #[serde(default)]
    pub paths: Vec<String>,
}

/// The outcome of evaluating the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Let the request through.
    Allow,
    /// 403.
    Deny,
}

fn principal_matches(pattern: &str, principal: Option<&str>) -> bool {
    let Some(p) = principal else { return false };
    if pattern == "*" {
        return true;
    }
    match pattern.strip_suffix('*') {
        Some(prefix) => p.starts_with(prefix),
        None => p == pattern,
    }
}

impl Rule {
    /// Upper-cases methods (done once at configure time).
    pub fn normalize(mut self) -> Self {
        for m in &mut self.methods {
            *m = m.to_ascii_uppercase();
        }
        self
    }

    /// Whether the rule applies to this request.
    pub fn matches(&self, principal: Option<&str>, method: &str, path: &str) -> bool {
        let path = path.split('?').next().unwrap_or(path);
        (self.principals.is_empty()
            || self
                .principals
                .iter()
                .any(|p| principal_matches(p, principal)))
            && (self.methods.is_empty() || self.methods.iter().any(|m| m == method))
            && (self.paths.is_empty() || self.paths.iter().any(|p| path.starts_with(p.as_str())))
    }
}

/// Evaluates `rules` (deny wins; with allow rules present, one must match).
pub fn evaluate(rules: &[Rule], principal: Option<&str>, method: &str, path: &str) -> Verdict {
    let mut any_allow = false;
    let mut allowed = false;
    for r in rules {
        let m = r.matches(principal, method, path);
        match r.action {
            Action::Deny if m => return Verdict::Deny,
            Action::Deny => {}
            Action::Allow => {
                any_allow = true;
                allowed |= m;
            }
        }
    }
    if any_allow && !allowed {
        Verdict::Deny
    } else {
        Verdict::Allow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(json: &str) -> Vec<Rule> {
        serde_json::from_str::<Vec<Rule>>(json)
            .unwrap()
            .into_iter()
            .map(Rule::normalize)
            .collect()
    }

    #[test]
    fn deny_wins_and_allow_list() {
        let r = rules(
            r#"[{"action":"allow","principals":["alice","spiffe://corp/ns/prod/*"]},
                {"action":"deny","methods":["delete"],"paths":["/admin"]}]"#,
        );
        assert_eq!(evaluate(&r, Some("alice"), "GET", "/x"), Verdict::Allow);
        assert_eq!(
            evaluate(&r, Some("spiffe://corp/ns/prod/sa/web"), "GET", "/x"),
            Verdict::Allow
        );
        assert_eq!(evaluate(&r, Some("bob"), "GET", "/x"), Verdict::Deny);
        assert_eq!(evaluate(&r, None, "GET", "/x"), Verdict::Deny);
        assert_eq!(
            evaluate(&r, Some("alice"), "DELETE", "/admin/users?x=1"),
            Verdict::Deny
        );
        assert_eq!(evaluate(&r, Some("alice"), "GET", "/admin"), Verdict::Allow);
    }

    #[test]
    fn only_denies() {
        let r = rules(r#"[{"action":"deny","principals":["*"],"paths":["/internal"]}]"#);
        assert_eq!(evaluate(&r, Some("x"), "GET", "/internal/a"), Verdict::Deny);
        assert_eq!(evaluate(&r, None, "GET", "/internal/a"), Verdict::Allow);
        assert_eq!(evaluate(&r, Some("x"), "GET", "/public"), Verdict::Allow);
        assert_eq!(evaluate(&[], None, "GET", "/"), Verdict::Allow);
    }
}

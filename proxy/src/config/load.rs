//! Loading `weir.yaml` into a [`Config`], reporting *every* error of the file at once as
//! `file:line:column: message`.
//!
//! How: the text is parsed with yaml-rust2's marked event API into a small tree whose every node
//! keeps its line and column ([`Node`]). A serde [`Deserializer`](serde::Deserializer) over that
//! tree then builds the [`Config`]:
//! - unknown keys are *collected* (each at its own line:column) and skipped instead of failing,
//!   using the field list serde passes to `deserialize_struct`;
//! - a type error is located at the offending node; the node is then pruned and deserialization
//!   retried, so that later type errors are found too (a "missing field" that only results from
//!   pruning is not reported);
//! - semantic errors from [`validate`](super::validate::validate) come as paths such as
//!   `listeners[0].routes[2].cluster`, located by walking the same tree.
//!
//! Nothing here panics on untrusted YAML: nesting depth and alias expansion are bounded.

use super::validate::validate;
use super::Config;
use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use serde::Deserialize;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::Path;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

// === Public API ===

/// One error in a config file, displayed as `file:line:column: message`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Every error of a config file, one per line, sorted by position.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors(pub Vec<ConfigError>);

/// Parses `text` (named `file` in errors): YAML syntax, unknown keys and types. No semantic
/// checks; see [`load_str_validated`].
pub fn load_str(file: &str, text: &str) -> Result<Config, ConfigErrors> {
    let parsed = parse(text);
    match parsed.config {
        Some(cfg) if parsed.errors.is_empty() => Ok(cfg),
        _ => Err(finish(file, parsed.errors)),
    }
}

/// Reads and parses a file (see [`load_str`]). No semantic checks; see [`load_file_validated`].
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    let (file, text) = read(path)?;
    load_str(&file, &text)
}

/// Parses `text` and runs every semantic check of [`validate`](super::validate), resolving
/// relative file names (TLS files, filter modules) against `base_dir`.
pub fn load_str_validated(file: &str, text: &str, base_dir: &Path) -> Result<Config, ConfigErrors> {
    match load_str_lenient(file, text, base_dir) {
        (Some(cfg), None) => Ok(cfg),
        (_, Some(errors)) => Err(errors),
        (None, None) => Err(finish(file, Vec::new())),
    }
}

/// [`load_str_validated`] that also hands back the config when it has errors but still
/// deserialized, so that later checks (compiling filter modules) can report their own errors in
/// the same run: unknown keys are skipped, and scalar values of the wrong type are left at
/// their defaults (their errors are reported, and the semantic checks run on the rest). A
/// file whose structure is broken (a missing required field, a map where a list belongs)
/// gives no config.
pub fn load_str_lenient(
    file: &str,
    text: &str,
    base_dir: &Path,
) -> (Option<Config>, Option<ConfigErrors>) {
    let Parsed {
        config,
        mut errors,
        root,
    } = parse(text);
    // Unknown keys and pruned scalars do not stop deserialization: the rest can be checked too.
    let Some(cfg) = config else {
        return (None, Some(finish(file, errors)));
    };
    for (path, message) in validate(&cfg, base_dir) {
        let mark = root.as_ref().map(|r| r.locate(&path)).unwrap_or_default();
        let message = if path.is_empty() {
            message
        } else {
            format!("{path}: {message}")
        };
        errors.push(Located { mark, message });
    }
    if errors.is_empty() {
        (Some(cfg), None)
    } else {
        (Some(cfg), Some(finish(file, errors)))
    }
}

/// Reads, parses and validates a file; relative paths inside resolve against its directory.
pub fn load_file_validated(path: &Path) -> Result<Config, ConfigErrors> {
    let (file, text) = read(path)?;
    let base_dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    load_str_validated(&file, &text, base_dir)
}

fn read(path: &Path) -> Result<(String, String), ConfigErrors> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => Ok((file, text)),
        Err(e) => Err(ConfigErrors(vec![ConfigError {
            file: file.clone(),
            line: 1,
            column: 1,
            message: format!("cannot read config: {e}"),
        }])),
    }
}

/// An error not yet tied to a file name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Located {
    mark: Mark,
    message: String,
}

fn finish(file: &str, mut errors: Vec<Located>) -> ConfigErrors {
    errors.sort();
    errors.dedup();
    ConfigErrors(
        errors
            .into_iter()
            .map(|e| ConfigError {
                file: file.to_string(),
                line: e.mark.line,
                column: e.mark.column,
                message: e.message,
            })
            .collect(),
    )
}

struct Parsed {
    /// The config when deserialization succeeded with nothing pruned but scalars (unknown keys
    /// allowed); complete only when `errors` is empty.
    config: Option<Config>,
    errors: Vec<Located>,
    root: Option<Node>,
}

/// Most type errors a file gets before we stop retrying.
const MAX_PASSES: usize = 64;

fn parse(text: &str) -> Parsed {
    // Editors on some systems start files with a byte-order mark; it is not part of the YAML.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let (root, mut errors) = match build_tree(text) {
        Ok(v) => v,
        Err(e) => {
            return Parsed {
                config: None,
                errors: vec![e],
                root: None,
            }
        }
    };
    // An empty file is an empty config (every section defaults).
    let root = root.unwrap_or(Node {
        id: usize::MAX,
        mark: Mark::default(),
        kind: Kind::Map(Vec::new()),
    });
    let unknown = RefCell::new(BTreeMap::new());
    let mut pruned = HashSet::new();
    let mut config = None;
    for _ in 0..MAX_PASSES {
        let ctx = Ctx {
            unknown: &unknown,
            pruned: &pruned,
        };
        match Config::deserialize(De {
            node: &root,
            path: String::new(),
            ctx: &ctx,
        }) {
            Ok(cfg) => {
                if only_scalars(&root, &pruned) {
                    config = Some(cfg);
                }
                break;
            }
            Err(e) => {
                let at = e.at.unwrap_or(At {
                    id: root.id,
                    mark: root.mark,
                    path: String::new(),
                    pruned_keys: Vec::new(),
                });
                // A required field we pruned ourselves is "missing" only as a consequence.
                let derived = e
                    .missing_field
                    .is_some_and(|f| at.pruned_keys.iter().any(|k| k == f));
                if !e.reported && !derived {
                    let message = if at.path.is_empty() {
                        e.msg
                    } else {
                        format!("{}: {}", at.path, e.msg)
                    };
                    errors.push(Located {
                        mark: at.mark,
                        message,
                    });
                }
                if at.id == root.id || !pruned.insert(at.id) {
                    break;
                }
            }
        }
    }
    errors.extend(unknown.into_inner().into_values());
    Parsed {
        config,
        errors,
        root: Some(root),
    }
}

/// Whether every node in `ids` is a scalar of the tree (pruning one leaves the field at its
/// default, and the structure around it intact).
fn only_scalars(root: &Node, ids: &HashSet<usize>) -> bool {
    fn count(node: &Node, ids: &HashSet<usize>) -> usize {
        match &node.kind {
            Kind::Scalar { .. } => usize::from(ids.contains(&node.id)),
            Kind::Seq(items) => items.iter().map(|n| count(n, ids)).sum(),
            Kind::Map(entries) => entries.iter().map(|(_, v)| count(v, ids)).sum(),
        }
    }
    ids.is_empty() || count(root, ids) == ids.len()
}

// === YAML tree with marks ===

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Mark {
    line: usize,
    column: usize,
}

impl Default for Mark {
    fn default() -> Self {
        Mark { line: 1, column: 1 }
    }
}

impl From<Marker> for Mark {
    fn from(m: Marker) -> Self {
        // yaml-rust2: line is 1-based, col 0-based.
        Mark {
            line: m.line().max(1),
            column: m.col() + 1,
        }
    }
}

#[derive(Debug, Clone)]
struct Node {
    id: usize,
    mark: Mark,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    /// `plain`: written without quotes or block style (so `10` may be a number).
    Scalar {
        value: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

/// Deepest nesting accepted (the schema needs about 8; `config:` blobs get the rest).
const MAX_DEPTH: usize = 64;
/// Nodes created by alias expansion, at most (guards against "billion laughs").
const MAX_ALIAS_NODES: usize = 100_000;

enum Frame {
    Seq {
        mark: Mark,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        mark: Mark,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
        seen: HashSet<String>,
    },
}

#[derive(Default)]
struct TreeBuilder {
    next_id: usize,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    docs: Vec<Node>,
    alias_nodes: usize,
    /// Fatal: the tree is unusable (too deep, alias bomb, unknown alias, several documents).
    fatal: Option<Located>,
    /// Not fatal: duplicate keys (the later one is dropped).
    errors: Vec<Located>,
}

impl TreeBuilder {
    fn id(&mut self) -> usize {
        self.next_id += 1;
        self.next_id
    }

    fn fail(&mut self, mark: Mark, message: String) {
        if self.fatal.is_none() {
            self.fatal = Some(Located { mark, message });
        }
    }

    fn complete(&mut self, node: Node, anchor: usize) {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries, key, seen, ..
            }) => match key.take() {
                None => *key = Some(node),
                Some(k) => {
                    if let Kind::Scalar { value, .. } = &k.kind {
                        if !seen.insert(value.clone()) {
                            let message = format!("duplicate key `{value}`");
                            self.errors.push(Located {
                                mark: k.mark,
                                message,
                            });
                            return;
                        }
                    }
                    entries.push((k, node));
                }
            },
        }
    }

    /// Applies YAML merge keys (`<<: *base` or `<<: [*a, *b]`): the merged maps' entries are
    /// added unless the map sets the key itself (earlier sources win over later ones).
    fn merge_keys(&mut self, entries: Vec<(Node, Node)>) -> Vec<(Node, Node)> {
        let is_merge =
            |k: &Node| matches!(&k.kind, Kind::Scalar { value, plain: true } if value == "<<");
        if !entries.iter().any(|(k, _)| is_merge(k)) {
            return entries;
        }
        let (merges, mut own): (Vec<_>, Vec<_>) =
            entries.into_iter().partition(|(k, _)| is_merge(k));
        let mut keys: HashSet<String> = own
            .iter()
            .filter_map(|(k, _)| k.scalar().map(str::to_string))
            .collect();
        for (key, value) in merges {
            let sources = match value.kind {
                Kind::Map(_) => vec![value],
                Kind::Seq(items) if items.iter().all(|n| matches!(n.kind, Kind::Map(_))) => items,
                _ => {
                    let message =
                        "a merge key `<<` takes a mapping or a list of mappings".to_string();
                    self.errors.push(Located {
                        mark: key.mark,
                        message,
                    });
                    continue;
                }
            };
            for source in sources {
                let Kind::Map(src) = source.kind else {
                    continue;
                };
                for (k, v) in src {
                    if k.scalar().is_none_or(|name| keys.insert(name.to_string())) {
                        own.push((k, v));
                    }
                }
            }
        }
        own
    }

    /// A copy of an anchored node with fresh ids, counted against [`MAX_ALIAS_NODES`].
    fn renumber(&mut self, node: &Node) -> Option<Node> {
        self.alias_nodes += 1;
        if self.alias_nodes > MAX_ALIAS_NODES {
            return None;
        }
        let kind = match &node.kind {
            Kind::Scalar { .. } => node.kind.clone(),
            Kind::Seq(items) => Kind::Seq(
                items
                    .iter()
                    .map(|n| self.renumber(n))
                    .collect::<Option<_>>()?,
            ),
            Kind::Map(entries) => Kind::Map(
                entries
                    .iter()
                    .map(|(k, v)| Some((self.renumber(k)?, self.renumber(v)?)))
                    .collect::<Option<_>>()?,
            ),
        };
        Some(Node {
            id: self.id(),
            mark: node.mark,
            kind,
        })
    }
}

impl MarkedEventReceiver for TreeBuilder {
    fn on_event(&mut self, ev: Event, marker: Marker) {
        if self.fatal.is_some() {
            return;
        }
        let mark = Mark::from(marker);
        match ev {
            Event::Scalar(value, style, anchor, tag) => {
                let plain = style == TScalarStyle::Plain && !is_str_tag(&tag);
                let node = Node {
                    id: self.id(),
                    mark,
                    kind: Kind::Scalar { value, plain },
                };
                self.complete(node, anchor);
            }
            Event::SequenceStart(..) | Event::MappingStart(..) if self.stack.len() >= MAX_DEPTH => {
                self.fail(mark, format!("nesting deeper than {MAX_DEPTH} levels"));
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Seq {
                mark,
                anchor,
                items: Vec::new(),
            }),
            Event::MappingStart(anchor, _) => self.stack.push(Frame::Map {
                mark,
                anchor,
                entries: Vec::new(),
                key: None,
                seen: HashSet::new(),
            }),
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Frame::Seq {
                        mark,
                        anchor,
                        items,
                    }) => (
                        Node {
                            id: self.id(),
                            mark,
                            kind: Kind::Seq(items),
                        },
                        anchor,
                    ),
                    Some(Frame::Map {
                        mark,
                        anchor,
                        entries,
                        ..
                    }) => {
                        // A block mapping is only recognised at its first `:`; point at its first key.
                        let mark = entries.first().map_or(mark, |(k, _)| k.mark.min(mark));
                        let entries = self.merge_keys(entries);
                        (
                            Node {
                                id: self.id(),
                                mark,
                                kind: Kind::Map(entries),
                            },
                            anchor,
                        )
                    }
                    None => return,
                };
                self.complete(node, anchor);
            }
            Event::Alias(anchor) => {
                let Some(target) = self.anchors.get(&anchor).cloned() else {
                    return self.fail(mark, "alias to an unknown anchor".into());
                };
                match self.renumber(&target) {
                    Some(mut node) => {
                        node.mark = mark;
                        self.complete(node, 0);
                    }
                    None => self.fail(
                        mark,
                        format!("aliases expand to more than {MAX_ALIAS_NODES} nodes"),
                    ),
                }
            }
            Event::DocumentStart if !self.docs.is_empty() => {
                self.fail(mark, "more than one YAML document in a config file".into());
            }
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

fn is_str_tag(tag: &Option<Tag>) -> bool {
    tag.as_ref()
        .is_some_and(|t| t.suffix == "str" || t.suffix == "tag:yaml.org,2002:str")
}

/// Parses YAML into a marked tree: `Err` for a syntax error (the only error then),
/// otherwise the root (None for an empty file) and any duplicate-key errors.
fn build_tree(text: &str) -> Result<(Option<Node>, Vec<Located>), Located> {
    let mut builder = TreeBuilder::default();
    // yaml-rust2 asserts on some malformed streams; never let untrusted YAML take us down.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut parser = Parser::new_from_str(text);
        parser.load(&mut builder, true)
    }));
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            return Err(Located {
                mark: Mark::from(*e.marker()),
                message: format!("YAML syntax error: {}", e.info()),
            })
        }
        Err(_) => {
            return Err(Located {
                mark: Mark::default(),
                message: "YAML syntax error".into(),
            })
        }
    }
    if let Some(fatal) = builder.fatal {
        return Err(fatal);
    }
    Ok((builder.docs.pop(), builder.errors))
}

// === Path lookup ===

/// One step of a path such as `listeners[0].routes[2].split["a.b"]`.
#[derive(Debug, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// Splits a validation path into steps; `.key`, `[3]` and `["any key"]` (JSON string) forms.
fn parse_path(path: &str) -> Vec<Seg> {
    let mut segs = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            rest = r;
            continue;
        }
        if let Some(r) = rest.strip_prefix('[') {
            if r.starts_with('"') {
                // A JSON string: find its closing quote by letting serde_json read it.
                let mut stream = serde_json::Deserializer::from_str(r).into_iter::<String>();
                if let Some(Ok(key)) = stream.next() {
                    let used = stream.byte_offset();
                    segs.push(Seg::Key(key));
                    rest = r[used..].strip_prefix(']').unwrap_or(&r[used..]);
                    continue;
                }
                break;
            }
            let end = r.find(']').unwrap_or(r.len());
            match r[..end].trim().parse() {
                Ok(i) => segs.push(Seg::Index(i)),
                Err(_) => segs.push(Seg::Key(r[..end].to_string())),
            }
            rest = r.get(end + 1..).unwrap_or("");
            continue;
        }
        let end = rest.find(['.', '[']).unwrap_or(rest.len());
        segs.push(Seg::Key(rest[..end].to_string()));
        rest = &rest[end..];
    }
    segs
}

impl Node {
    /// The line:column of the node a path names, or of its deepest existing ancestor.
    fn locate(&self, path: &str) -> Mark {
        let mut node = self;
        for seg in parse_path(path) {
            let next = match (&node.kind, &seg) {
                (Kind::Map(entries), Seg::Key(k)) => entries
                    .iter()
                    .find(|(key, _)| key.scalar() == Some(k.as_str()))
                    .map(|(_, v)| v),
                (Kind::Map(entries), Seg::Index(i)) => {
                    let k = i.to_string();
                    entries
                        .iter()
                        .find(|(key, _)| key.scalar() == Some(k.as_str()))
                        .map(|(_, v)| v)
                }
                (Kind::Seq(items), Seg::Index(i)) => items.get(*i),
                _ => None,
            };
            match next {
                Some(n) => node = n,
                None => break,
            }
        }
        node.mark
    }

    fn scalar(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar { value, .. } => Some(value),
            _ => None,
        }
    }
}

// === Scalar resolution (YAML 1.2 core schema, as serde_yaml) ===

fn is_null(s: &str) -> bool {
    matches!(s, "" | "~" | "null" | "Null" | "NULL")
}

fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

enum Int {
    U(u64),
    I(i64),
}

fn parse_int(s: &str) -> Option<Int> {
    let (neg, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, body) = if let Some(h) = digits.strip_prefix("0x") {
        (16, h)
    } else if let Some(o) = digits.strip_prefix("0o") {
        (8, o)
    } else {
        (10, digits)
    };
    if body.is_empty()
        || !body.chars().all(|c| c.is_digit(radix) || c == '_')
        || body.starts_with('_')
    {
        return None;
    }
    let body = body.replace('_', "");
    let magnitude = u64::from_str_radix(&body, radix).ok()?;
    if neg {
        if magnitude == 0 {
            return Some(Int::U(0));
        }
        let v = 0i64.checked_sub_unsigned(magnitude)?;
        Some(Int::I(v))
    } else {
        Some(Int::U(magnitude))
    }
}

fn parse_float(s: &str) -> Option<f64> {
    match s {
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Some(f64::NAN),
        _ => {}
    }
    let body = s.strip_prefix(['-', '+']).unwrap_or(s);
    // Rust accepts "inf"/"nan"/"infinity"; YAML does not.
    if !body.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return None;
    }
    s.parse().ok()
}

// === serde Deserializer over the tree ===

/// Shared by every node of one deserialization pass.
struct Ctx<'a> {
    /// Unknown keys found so far (all passes), by key node id.
    unknown: &'a RefCell<BTreeMap<usize, Located>>,
    /// Nodes removed after a type error, skipped from now on.
    pruned: &'a HashSet<usize>,
}

impl Ctx<'_> {
    fn unknown_key(&self, key: &Node, path: &str, expected: &[&str]) {
        let name = key.scalar().unwrap_or("<non-string key>");
        let mut message = if path.is_empty() {
            format!("unknown key `{name}`")
        } else {
            format!("{path}: unknown key `{name}`")
        };
        if !expected.is_empty() {
            let list = expected
                .iter()
                .map(|f| format!("`{f}`"))
                .collect::<Vec<_>>()
                .join(", ");
            message.push_str(&format!(" (expected one of {list})"));
        }
        self.unknown.borrow_mut().insert(
            key.id,
            Located {
                mark: key.mark,
                message,
            },
        );
    }
}

/// Where a deserialization error happened.
#[derive(Debug)]
struct At {
    id: usize,
    mark: Mark,
    path: String,
    /// Keys of this map whose values were pruned in an earlier pass.
    pruned_keys: Vec<String>,
}

#[derive(Debug)]
struct DeError {
    msg: String,
    at: Option<At>,
    missing_field: Option<&'static str>,
    /// Already turned into errors elsewhere (e.g. as unknown keys): prune silently.
    reported: bool,
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            msg: msg.to_string(),
            at: None,
            missing_field: None,
            reported: false,
        }
    }

    fn missing_field(field: &'static str) -> Self {
        DeError {
            msg: format!("missing field `{field}`"),
            at: None,
            missing_field: Some(field),
            reported: false,
        }
    }
}

struct De<'a> {
    node: &'a Node,
    path: String,
    ctx: &'a Ctx<'a>,
}

fn child_path(path: &str, key: &str) -> String {
    let simple = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (path.is_empty(), simple) {
        (true, true) => key.to_string(),
        (false, true) => format!("{path}.{key}"),
        (_, false) => format!("{path}[{}]", serde_json::Value::String(key.to_string())),
    }
}

impl<'a> De<'a> {
    fn child(&self, node: &'a Node, path: String) -> De<'a> {
        De {
            node,
            path,
            ctx: self.ctx,
        }
    }

    fn unexpected(&self) -> de::Unexpected<'a> {
        match &self.node.kind {
            Kind::Scalar { value, plain: true } if is_null(value) => de::Unexpected::Unit,
            Kind::Scalar { value, plain: true } => {
                match (parse_bool(value), parse_int(value), parse_float(value)) {
                    (Some(b), _, _) => de::Unexpected::Bool(b),
                    (_, Some(Int::U(u)), _) => de::Unexpected::Unsigned(u),
                    (_, Some(Int::I(i)), _) => de::Unexpected::Signed(i),
                    (_, _, Some(f)) => de::Unexpected::Float(f),
                    _ => de::Unexpected::Str(value),
                }
            }
            Kind::Scalar { value, .. } => de::Unexpected::Str(value),
            Kind::Seq(_) => de::Unexpected::Seq,
            Kind::Map(_) => de::Unexpected::Map,
        }
    }

    fn invalid<V: Visitor<'a>, T>(&self, visitor: &V) -> Result<T, DeError> {
        Err(de::Error::invalid_type(self.unexpected(), visitor))
    }

    /// Ties an error raised at or below this node to the innermost node, once.
    fn locate<T>(&self, r: Result<T, DeError>) -> Result<T, DeError> {
        r.map_err(|mut e| {
            if e.at.is_none() {
                self.explain_untagged(&mut e);
                let pruned_keys = match &self.node.kind {
                    Kind::Map(entries) => entries
                        .iter()
                        .filter(|(_, v)| self.ctx.pruned.contains(&v.id))
                        .filter_map(|(k, _)| k.scalar().map(str::to_string))
                        .collect(),
                    _ => Vec::new(),
                };
                e.at = Some(At {
                    id: self.node.id,
                    mark: self.node.mark,
                    path: self.path.clone(),
                    pruned_keys,
                });
            }
            e
        })
    }

    /// serde's untagged enums say only "data did not match any variant"; say what fits.
    fn explain_untagged(&self, e: &mut DeError) {
        if e.msg.contains("untagged enum ValueMatch") {
            const RULE: &[&str] = &["exact", "prefix", "regex", "present"];
            if let Kind::Map(entries) = &self.node.kind {
                let mut any = false;
                for (k, _) in entries
                    .iter()
                    .filter(|(k, _)| !k.scalar().is_some_and(|s| RULE.contains(&s)))
                {
                    self.ctx.unknown_key(k, &self.path, RULE);
                    any = true;
                }
                e.reported = any;
            }
            e.msg =
                "expected a string (exact match) or a map with one of `exact`, `prefix`, `regex`, \
                     `present` (quote values such as \"true\" or \"1\")"
                    .into();
        } else if e.msg.contains("untagged enum OneOrMany") {
            e.msg = "expected a string or a list of strings".into();
        }
    }

    fn scalar_str(&self) -> Option<&'a str> {
        match &self.node.kind {
            Kind::Scalar { value, plain } if !(*plain && is_null(value)) => Some(value),
            _ => None,
        }
    }

    fn plain(&self) -> Option<&'a str> {
        match &self.node.kind {
            Kind::Scalar { value, plain: true } => Some(value),
            _ => None,
        }
    }

    fn any<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        match &self.node.kind {
            Kind::Scalar { value, plain: true } => {
                if is_null(value) {
                    v.visit_unit()
                } else if let Some(b) = parse_bool(value) {
                    v.visit_bool(b)
                } else if let Some(i) = parse_int(value) {
                    match i {
                        Int::U(u) => v.visit_u64(u),
                        Int::I(i) => v.visit_i64(i),
                    }
                } else if let Some(f) = parse_float(value) {
                    v.visit_f64(f)
                } else {
                    v.visit_str(value)
                }
            }
            Kind::Scalar { value, .. } => v.visit_str(value),
            Kind::Seq(_) => self.seq(v),
            Kind::Map(_) => self.map(v, None),
        }
    }

    fn seq<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        match &self.node.kind {
            Kind::Seq(items) => v.visit_seq(SeqAcc {
                de: &self,
                items: items.iter().enumerate(),
            }),
            _ => self.invalid(&v),
        }
    }

    /// `fields`: a struct's known keys; others are recorded as unknown and skipped.
    fn map<V: Visitor<'a>>(
        self,
        v: V,
        fields: Option<&'static [&'static str]>,
    ) -> Result<V::Value, DeError> {
        match &self.node.kind {
            Kind::Map(entries) => v.visit_map(MapAcc {
                de: &self,
                entries: entries.iter(),
                value: None,
                fields,
            }),
            _ => self.invalid(&v),
        }
    }

    fn int<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        match self.plain().and_then(parse_int) {
            Some(Int::U(u)) => v.visit_u64(u),
            Some(Int::I(i)) => v.visit_i64(i),
            None => self.invalid(&v),
        }
    }

    fn float<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        match self.plain() {
            Some(s) => match (parse_int(s), parse_float(s)) {
                (Some(Int::U(u)), _) => v.visit_u64(u),
                (Some(Int::I(i)), _) => v.visit_i64(i),
                (None, Some(f)) => v.visit_f64(f),
                _ => self.invalid(&v),
            },
            None => self.invalid(&v),
        }
    }
}

struct SeqAcc<'a, 'd> {
    de: &'d De<'a>,
    items: std::iter::Enumerate<std::slice::Iter<'a, Node>>,
}

impl<'a> de::SeqAccess<'a> for SeqAcc<'a, '_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'a>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        for (i, node) in self.items.by_ref() {
            if self.de.ctx.pruned.contains(&node.id) {
                continue;
            }
            let child = self.de.child(node, format!("{}[{i}]", self.de.path));
            // Errors raised after our deserializer returned (untagged enums) still belong here.
            let at = self.de.child(node, child.path.clone());
            return at.locate(seed.deserialize(child)).map(Some);
        }
        Ok(None)
    }
}

struct MapAcc<'a, 'd> {
    de: &'d De<'a>,
    entries: std::slice::Iter<'a, (Node, Node)>,
    value: Option<(&'a Node, String)>,
    fields: Option<&'static [&'static str]>,
}

impl<'a> de::MapAccess<'a> for MapAcc<'a, '_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'a>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        for (key, value) in self.entries.by_ref() {
            if self.de.ctx.pruned.contains(&value.id) {
                continue;
            }
            let name = key.scalar().unwrap_or("");
            if let Some(fields) = self.fields {
                if !fields.contains(&name) {
                    self.de.ctx.unknown_key(key, &self.de.path, fields);
                    continue;
                }
            }
            self.value = Some((value, child_path(&self.de.path, name)));
            let key_path = self.de.path.clone();
            return seed.deserialize(self.de.child(key, key_path)).map(Some);
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'a>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        match self.value.take() {
            Some((node, path)) => {
                let at = self.de.child(node, path.clone());
                at.locate(seed.deserialize(self.de.child(node, path)))
            }
            None => Err(de::Error::custom("value requested before key")),
        }
    }
}

macro_rules! forward {
    ($($method:ident => $target:ident),* $(,)?) => {
        $(
            fn $method<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
                let r = De { node: self.node, path: self.path.clone(), ctx: self.ctx }.$target(v);
                self.locate(r)
            }
        )*
    };
}

impl<'a> de::Deserializer<'a> for De<'a> {
    type Error = DeError;

    forward! {
        deserialize_any => any,
        deserialize_i8 => int, deserialize_i16 => int, deserialize_i32 => int, deserialize_i64 => int,
        deserialize_u8 => int, deserialize_u16 => int, deserialize_u32 => int, deserialize_u64 => int,
        deserialize_f32 => float, deserialize_f64 => float,
        deserialize_seq => seq,
    }

    fn deserialize_bool<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        let r = match self.plain().and_then(parse_bool) {
            Some(b) => v.visit_bool(b),
            None => self.invalid(&v),
        };
        self.locate(r)
    }

    fn deserialize_str<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        let r = match self.scalar_str() {
            Some(s) => v.visit_str(s),
            None => self.invalid(&v),
        };
        self.locate(r)
    }

    fn deserialize_string<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_char<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_identifier<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_bytes<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_byte_buf<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_option<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        let r = match &self.node.kind {
            Kind::Scalar { value, plain: true } if is_null(value) => v.visit_none(),
            _ => v.visit_some(De {
                node: self.node,
                path: self.path.clone(),
                ctx: self.ctx,
            }),
        };
        self.locate(r)
    }

    fn deserialize_unit<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        let r = match self.plain() {
            Some(s) if is_null(s) => v.visit_unit(),
            _ => self.invalid(&v),
        };
        self.locate(r)
    }

    fn deserialize_unit_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(v)
    }

    fn deserialize_newtype_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, DeError> {
        let r = v.visit_newtype_struct(De {
            node: self.node,
            path: self.path.clone(),
            ctx: self.ctx,
        });
        self.locate(r)
    }

    fn deserialize_tuple<V: Visitor<'a>>(self, _len: usize, v: V) -> Result<V::Value, DeError> {
        self.deserialize_seq(v)
    }

    fn deserialize_tuple_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _len: usize,
        v: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(v)
    }

    fn deserialize_map<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        let r = De {
            node: self.node,
            path: self.path.clone(),
            ctx: self.ctx,
        }
        .map(v, None);
        self.locate(r)
    }

    fn deserialize_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        let r = De {
            node: self.node,
            path: self.path.clone(),
            ctx: self.ctx,
        }
        .map(v, Some(fields));
        self.locate(r)
    }

    fn deserialize_enum<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        // Only unit variants (`lb: ring_hash`) are used in the schema.
        let r = match self.scalar_str() {
            Some(s) => v.visit_enum(IntoDeserializer::<DeError>::into_deserializer(s)),
            None => self.invalid(&v),
        };
        self.locate(r)
    }

    fn deserialize_ignored_any<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        v.visit_unit()
    }
}

// === Tests ===

#[cfg(test)]
mod tests {
    use super::*;

    fn errs(text: &str) -> Vec<String> {
        match load_str("w.yaml", text) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn minimal_config_loads() {
        let cfg = load_str(
            "w.yaml",
            "listeners:\n  - name: edge\n    address: 127.0.0.1:8080\n    routes:\n      - cluster: a\nclusters:\n  - name: a\n    endpoints: [127.0.0.1:9000]\n    lb: ring_hash\n",
        )
        .unwrap();
        assert_eq!(cfg.listeners[0].name, "edge");
        assert_eq!(cfg.clusters[0].lb, super::super::LbPolicy::RingHash);
    }

    #[test]
    fn empty_file_is_empty_config() {
        assert_eq!(load_str("w.yaml", "").unwrap(), Config::default());
        assert_eq!(
            load_str("w.yaml", "# nothing\n").unwrap(),
            Config::default()
        );
    }

    #[test]
    fn unknown_keys_at_every_depth_each_located() {
        let text = "\
admin: 127.0.0.1:9901
bogus: 1
listeners:
  - name: edge
    address: 127.0.0.1:8080
    adress: typo
    routes:
      - match: { path_prefix: /, pth: /x }
        cluster: a
        retries: { attempts: 2, tries: 3 }
clusters:
  - name: a
    endpoints: [127.0.0.1:9000]
    pool: { max_idle: 3 }
";
        assert_eq!(
            errs(text),
            vec![
                "w.yaml:2:1: unknown key `bogus` (expected one of `admin`, `listeners`, `clusters`, `filters`, `access_log`, `tracing`)",
                "w.yaml:6:5: listeners[0]: unknown key `adress` (expected one of `name`, `address`, `tls`, `filters`, `routes`, `limits`, `access_log`)",
                "w.yaml:8:34: listeners[0].routes[0].match: unknown key `pth` (expected one of `path`, `path_prefix`, `path_regex`, `method`, `headers`, `query`, `hosts`)",
                "w.yaml:10:33: listeners[0].routes[0].retries: unknown key `tries` (expected one of `attempts`, `per_try_timeout`, `on`)",
                "w.yaml:14:13: clusters[0].pool: unknown key `max_idle` (expected one of `max_idle_per_endpoint`, `idle_timeout`)",
            ]
        );
    }

    #[test]
    fn unknown_key_inside_value_rule() {
        let text = "listeners:\n  - name: e\n    address: 127.0.0.1:1\n    routes:\n      - match:\n          headers:\n            x-a: { regex: a, flags: i }\n        cluster: a\n";
        assert_eq!(
            errs(text),
            vec!["w.yaml:7:30: listeners[0].routes[0].match.headers.x-a: unknown key `flags` (expected one of `exact`, `prefix`, `regex`, `present`)"]
        );
    }

    #[test]
    fn syntax_error_is_the_one_error_with_location() {
        let e = errs("listeners:\n  - name: edge\n    address: [1, 2\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("w.yaml:4:1: YAML syntax error:"), "{e:?}");
        let e = errs("a: b\n  c: d\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("w.yaml:2:4: YAML syntax error: mapping values are not allowed"),
            "{e:?}"
        );
    }

    #[test]
    fn type_errors_all_reported_with_location() {
        let text = "\
listeners:
  - name: edge
    address: 127.0.0.1:8080
    routes:
      - cluster: a
        timeout: soon
        retries: { attempts: many }
clusters:
  - name: a
    endpoints: 127.0.0.1:9000
    lb: fastest
    http2: maybe
";
        let e = errs(text);
        assert_eq!(e.len(), 5, "{e:#?}");
        assert!(
            e[0].starts_with(
                "w.yaml:6:18: listeners[0].routes[0].timeout: invalid duration \"soon\""
            ),
            "{e:#?}"
        );
        assert_eq!(
            e[1],
            "w.yaml:7:30: listeners[0].routes[0].retries.attempts: invalid type: string \"many\", expected u32"
        );
        assert_eq!(
            e[2],
            "w.yaml:10:16: clusters[0].endpoints: invalid type: string \"127.0.0.1:9000\", expected a sequence"
        );
        assert!(
            e[3].starts_with("w.yaml:11:9: clusters[0].lb: unknown variant `fastest`"),
            "{e:#?}"
        );
        assert_eq!(
            e[4],
            "w.yaml:12:12: clusters[0].http2: invalid type: string \"maybe\", expected a boolean"
        );
    }

    #[test]
    fn missing_field_is_located_at_its_map() {
        let e = errs("listeners:\n  - name: edge\n    routes: []\n");
        assert_eq!(e, vec!["w.yaml:2:5: listeners[0]: missing field `address`"]);
    }

    #[test]
    fn crlf_and_byte_order_mark() {
        assert_eq!(errs("admin: 127.0.0.1:1\r\nbogus: 2\r\n").len(), 1);
        let e = errs("\u{feff}admin: 127.0.0.1:1\nbogus: 2\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("w.yaml:2:1: unknown key `bogus`"), "{e:?}");
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let e = errs("admin: 127.0.0.1:1\nadmin: 127.0.0.1:2\n");
        assert_eq!(e, vec!["w.yaml:2:1: duplicate key `admin`"]);
    }

    #[test]
    fn scalars_resolve_like_yaml() {
        let cfg = load_str(
            "w.yaml",
            "listeners:\n  - name: 1234\n    address: '127.0.0.1:1'\n    routes:\n      - cluster: a\n        mirror: { cluster: b, percent: 5 }\n        match: { method: [GET, POST], headers: { x-a: \"true\", x-b: { present: true } } }\n",
        )
        .unwrap();
        let l = &cfg.listeners[0];
        assert_eq!(l.name, "1234");
        assert_eq!(l.routes[0].mirror.as_ref().unwrap().percent, 5.0);
        assert_eq!(
            l.routes[0].matcher.method.as_ref().unwrap().to_vec(),
            vec!["GET", "POST"]
        );
        // An unquoted `true` header value is a bool, not a string: the error says to quote it.
        let e = errs("listeners:\n  - name: e\n    address: 127.0.0.1:1\n    routes:\n      - match: { headers: { x-a: true } }\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with(
                "w.yaml:5:34: listeners[0].routes[0].match.headers.x-a: expected a string"
            ),
            "{e:?}"
        );
    }

    #[test]
    fn filter_config_is_any_yaml() {
        let cfg = load_str(
            "w.yaml",
            "filters:\n  - name: h\n    module: sha256:00\n    config: { a: [1, -2, 1.5, true, null, x], b: { c: \"d\" } }\n",
        )
        .unwrap();
        assert_eq!(
            cfg.filters[0].config,
            Some(serde_json::json!({"a": [1, -2, 1.5, true, null, "x"], "b": {"c": "d"}}))
        );
    }

    #[test]
    fn anchors_and_aliases() {
        let cfg = load_str(
            "w.yaml",
            "clusters:\n  - name: a\n    endpoints: &eps [127.0.0.1:1, 127.0.0.1:2]\n  - name: b\n    endpoints: *eps\n",
        )
        .unwrap();
        assert_eq!(
            cfg.clusters[1].endpoints,
            vec!["127.0.0.1:1", "127.0.0.1:2"]
        );
    }

    #[test]
    fn merge_keys() {
        let cfg = load_str(
            "w.yaml",
            "x-base: &base { lb: random, endpoints: [127.0.0.1:1] }\n",
        );
        // `x-base` is not a key of the schema: reported, even though the merge below works.
        assert!(cfg.is_err());
        let cfg = load_str(
            "w.yaml",
            "clusters:\n  - &a { name: a, lb: random, endpoints: [127.0.0.1:1] }\n  - <<: *a\n    name: b\n",
        )
        .unwrap();
        assert_eq!(cfg.clusters[1].name, "b");
        assert_eq!(cfg.clusters[1].lb, super::super::LbPolicy::Random);
        assert_eq!(cfg.clusters[1].endpoints, vec!["127.0.0.1:1"]);
        assert_eq!(
            errs("clusters:\n  - <<: 3\n    name: b\n    endpoints: []\n"),
            vec!["w.yaml:2:5: a merge key `<<` takes a mapping or a list of mappings"]
        );
    }

    #[test]
    fn genuinely_missing_field_reported_next_to_a_type_error() {
        // (serde reports the first missing field only; one declared after a pruned field stays hidden.)
        let e = errs("listeners:\n  - address: [x]\n    routes: []\n");
        assert_eq!(
            e,
            vec![
                "w.yaml:2:5: listeners[0]: missing field `name`",
                "w.yaml:2:14: listeners[0].address: invalid type: sequence, expected a string",
            ]
        );
    }

    #[test]
    fn hostile_yaml_does_not_panic() {
        let deep = format!(
            "filters:\n  - name: x\n    module: m\n    config: {}{}\n",
            "[".repeat(100),
            "]".repeat(100)
        );
        let e = errs(&deep);
        assert!(e[0].contains("nesting deeper"), "{e:?}");
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            bomb.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"));
        }
        let e = errs(&bomb);
        assert!(e[0].contains("aliases expand"), "{e:?}");
        for text in [
            "---\na: 1\n---\nb: 2\n",
            "[",
            "{",
            "a: *nope",
            "\t- x",
            "- a\nb: c",
            "!!binary x",
            "? [a]\n: b",
            "%YAML 1.2\n",
        ] {
            let _ = load_str("w.yaml", text);
        }
        assert!(errs("---\nadmin: a\n---\nadmin: b\n")[0].contains("more than one YAML document"));
    }

    #[test]
    fn every_prefix_and_byte_flip_of_a_config_is_handled() {
        let text = "admin: 127.0.0.1:9901\nlisteners:\n  - name: edge\n    address: 127.0.0.1:8080\n    routes:\n      - match: { path_prefix: /a, headers: { x: { regex: \"^a\" } }, method: [GET] }\n        split: { a: 1, \"b.c\": 2 }\n        retries: { attempts: 2, on: [5xx] }\nclusters:\n  - &c { name: a, endpoints: [\"[::1]:1\"], lb: ring_hash, hash_on: source_ip }\n  - <<: *c\n    name: b.c\nfilters:\n  - name: f\n    module: x.wasm\n    config: { a: [1, 2.5, ~, 'q'], b: |\n        text\n      }\n";
        let base = Path::new("/nonexistent-weir-dir");
        let mut cuts: Vec<usize> = (0..=text.len())
            .filter(|i| text.is_char_boundary(*i))
            .collect();
        cuts.dedup();
        for i in cuts {
            let _ = load_str_validated("w.yaml", &text[..i], base);
        }
        let specials = [
            b'[', b']', b'{', b'}', b':', b'-', b'&', b'*', b'"', b'\'', b'\n', b' ', b'#', b'|',
            b'!',
        ];
        for i in 0..text.len() {
            for &c in &specials {
                let mut bytes = text.as_bytes().to_vec();
                bytes[i] = c;
                if let Ok(t) = String::from_utf8(bytes) {
                    let _ = load_str_validated("w.yaml", &t, base);
                }
            }
        }
    }

    #[test]
    fn path_parsing() {
        assert_eq!(
            parse_path("listeners[0].routes[12].split[\"a.b]\"].x"),
            vec![
                Seg::Key("listeners".into()),
                Seg::Index(0),
                Seg::Key("routes".into()),
                Seg::Index(12),
                Seg::Key("split".into()),
                Seg::Key("a.b]".into()),
                Seg::Key("x".into()),
            ]
        );
        assert_eq!(child_path("", "admin"), "admin");
        assert_eq!(child_path("a", "x.y"), "a[\"x.y\"]");
    }

    #[test]
    fn semantic_errors_located_at_their_node() {
        let text = "\
listeners:
  - name: edge
    address: 127.0.0.1:8080
    routes:
      - cluster: nowhere
      - split: { \"v.1\": 0 }
clusters: []
";
        let e = load_str_validated("w.yaml", text, Path::new(".")).unwrap_err();
        let e: Vec<String> = e.0.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            e,
            vec![
                "w.yaml:5:18: listeners[0].routes[0].cluster: unknown cluster `nowhere`",
                "w.yaml:6:16: listeners[0].routes[1].split: weights must total more than 0",
                "w.yaml:6:25: listeners[0].routes[1].split[\"v.1\"]: unknown cluster `v.1`",
            ]
        );
    }

    #[test]
    fn unknown_keys_and_semantic_errors_reported_together() {
        let text = "listeners:\n  - name: e\n    address: nope\n    colour: red\n";
        let e = load_str_validated("w.yaml", text, Path::new(".")).unwrap_err();
        assert_eq!(e.0.len(), 2, "{e}");
        assert_eq!((e.0[0].line, e.0[0].column), (3, 14));
        assert_eq!((e.0[1].line, e.0[1].column), (4, 5));
    }

    #[test]
    fn load_file_reports_unreadable_file() {
        let e = load_file(Path::new("/nonexistent/weir.yaml")).unwrap_err();
        assert_eq!(e.0.len(), 1);
        assert!(
            e.to_string()
                .starts_with("/nonexistent/weir.yaml:1:1: cannot read config:"),
            "{e}"
        );
    }
}

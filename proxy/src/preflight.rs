//! Preflight: the full check of `weir validate` for a config that is not running — parse and
//! validate the YAML, read and compile every filter module, build the snapshot (routes,
//! clusters, TLS) and instantiate every filter once as a worker would (`_initialize`,
//! `proxy_on_vm_start`, `proxy_on_configure`) — so that a tool that *publishes* configs
//! (`weir-control push`, `weir-control serve --dir`) refuses what a proxy would NACK.
//!
//! Differences from `weir validate` are only about side effects: no access log file is opened
//! (or created), no span exporter and no health checker is started. Module bytes may be
//! handed in memory, by filter name; other filters' modules are read as a proxy reads them (a
//! path relative to `base_dir`, or `sha256:<hex>` under `base_dir/modules`).
//!
//! Blocking (compiles modules): call it off async workers (`spawn_blocking`). It runs on its own
//! thread, so it works from any context.

use crate::config::{self, AccessLog, Config};
use crate::metrics::Registry;
use crate::snapshot::Snapshot;
use bytes::Bytes;
use sha2::Digest;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Module bytes by filter name.
pub type Modules = HashMap<String, Bytes>;

/// Compiles, builds and configures everything `cfg` (already validated, e.g. by
/// [`config::load_str_validated`]) needs. Every error is returned, one line each, as
/// `weir validate` prints them (`filter NAME: …`, `listener NAME: …`).
pub fn check(cfg: &Config, base_dir: &Path, modules: &Modules) -> Result<(), Vec<String>> {
    std::thread::scope(|s| {
        let worker = std::thread::Builder::new()
            .name("weir-preflight".into())
            .spawn_scoped(s, || check_here(cfg, base_dir, modules));
        match worker {
            Ok(handle) => handle
                .join()
                .unwrap_or_else(|_| Err(vec!["validation failed: internal error".to_string()])),
            Err(e) => Err(vec![format!("cannot start the validation thread: {e}")]),
        }
    })
}

/// Parses and validates `text` (named `file` in errors; relative files resolve against
/// `base_dir`), then runs [`check`]. Errors are one line each: YAML and schema errors as
/// `file:line:column: message`; an error of a filter as `file:line:column: filter NAME: …`
/// located at the filter's `config:` (for `proxy_on_vm_start`/`proxy_on_configure` failures)
/// or `module:`; any other error as `file: message`.
pub fn check_str(
    file: &str,
    text: &str,
    base_dir: &Path,
    modules: &Modules,
) -> Result<Config, Vec<String>> {
    let (cfg, yaml_errors) = config::load_str_lenient(file, text, base_dir);
    let Some(cfg) = cfg else {
        return Err(lines(yaml_errors));
    };
    let Some(yaml_errors) = yaml_errors else {
        return match check(&cfg, base_dir, modules) {
            Ok(()) => Ok(cfg),
            Err(errors) => Err(locate(file, text, &cfg, errors)),
        };
    };
    // The YAML has errors, yet its filters can still be compiled and configured, so that one
    // run reports everything: only filters with no error of their own, and nothing else (the
    // listeners and clusters were checked with the YAML).
    let clean = |i: usize| {
        let at = format!("filters[{i}]");
        !yaml_errors.0.iter().any(|e| {
            e.message
                .strip_prefix(&at)
                .is_some_and(|rest| rest.starts_with(['.', ':']))
        })
    };
    let filters_only = Config {
        filters: cfg
            .filters
            .iter()
            .enumerate()
            .filter(|(i, _)| clean(*i))
            .map(|(_, f)| f.clone())
            .collect(),
        ..Config::default()
    };
    let mut all = lines(Some(yaml_errors));
    if let Err(errors) = check(&filters_only, base_dir, modules) {
        all.extend(locate(file, text, &cfg, errors));
    }
    Err(all)
}

fn lines(errors: Option<config::ConfigErrors>) -> Vec<String> {
    errors
        .map(|e| e.0.iter().map(|e| e.to_string()).collect())
        .unwrap_or_default()
}

fn check_here(cfg: &Config, base_dir: &Path, modules: &Modules) -> Result<(), Vec<String>> {
    let wasm = weir_wasm::WasmHost::new().map_err(|e| vec![e.to_string()])?;
    let mut errors = Vec::new();
    let mut cfg = cfg.clone();
    // Modules given in memory: compile them into the host's cache and refer to them by digest,
    // which the snapshot's filter loading takes from the cache without reading any file.
    let mut failed = HashSet::new();
    for f in &mut cfg.filters {
        let Some(bytes) = modules.get(&f.name) else {
            continue;
        };
        match wasm.compile(bytes) {
            Ok(_) => f.module = format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes))),
            Err(e) => {
                errors.push(format!("filter {}: {e}", f.name));
                failed.insert(f.name.clone());
            }
        }
    }
    // Filters already reported are left out, so that the rest is still checked.
    cfg.filters.retain(|f| !failed.contains(&f.name));
    for l in &mut cfg.listeners {
        l.filters.retain(|n| !failed.contains(n));
        for r in &mut l.routes {
            r.filters.retain(|n| !failed.contains(n));
        }
        // No side effects: access logs are not opened (a file would be created).
        l.access_log = None;
    }
    cfg.access_log = Some(AccessLog { path: "off".into() });
    cfg.tracing = None; // its settings were validated with the YAML; no exporter thread
    let metrics = Registry::default();
    // No tokio runtime is current on this thread: clusters start no health checker.
    let snap = match Snapshot::build(0, cfg, base_dir, None, &metrics, &wasm) {
        Ok(s) => s,
        Err(e) => {
            errors.extend(e);
            return Err(errors);
        }
    };
    // Instantiate every filter once, as a worker would: proxy_on_vm_start + proxy_on_configure.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| vec![e.to_string()])?;
    let local = tokio::task::LocalSet::new();
    let prepared = local.block_on(&rt, async {
        let services: std::rc::Rc<dyn weir_wasm::HostServices> =
            std::rc::Rc::new(weir_wasm::NoServices);
        crate::wasm::worker::WorkerFilters::prepare(&snap, services).map(|_| ())
    });
    if let Err(e) = prepared {
        errors.extend(e);
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

// === locating filter errors in the YAML ===

/// Prefixes every error with `file:line:column: ` where it names a filter found in `text`,
/// else with `file: `.
pub(crate) fn locate(file: &str, text: &str, cfg: &Config, errors: Vec<String>) -> Vec<String> {
    let root = yaml_tree(text);
    errors
        .into_iter()
        .map(|e| {
            let at = filter_of(&e, cfg).and_then(|(i, name)| {
                let item = root.as_ref()?.get("filters")?.index(i)?;
                // The YAML item must be that filter (it is, unless merge keys reorder things).
                if item.get("name").and_then(YNode::scalar) != Some(name) {
                    return None;
                }
                let key = if e.contains("proxy_on_configure failed")
                    || e.contains("proxy_on_vm_start failed")
                {
                    "config"
                } else {
                    "module"
                };
                Some(
                    item.key(key)
                        .or_else(|| item.key("name"))
                        .unwrap_or(item)
                        .mark,
                )
            });
            match at {
                Some((line, column)) => format!("{file}:{line}:{column}: {e}"),
                None => format!("{file}: {e}"),
            }
        })
        .collect()
}

/// The index and name of the filter an error is about (`filter NAME: …`; the longest name
/// that fits, since names may contain `: `).
fn filter_of<'a>(error: &str, cfg: &'a Config) -> Option<(usize, &'a str)> {
    let rest = error.strip_prefix("filter ")?;
    cfg.filters
        .iter()
        .enumerate()
        .filter(|(_, f)| {
            rest.strip_prefix(f.name.as_str())
                .is_some_and(|r| r.starts_with(':'))
        })
        .max_by_key(|(_, f)| f.name.len())
        .map(|(i, f)| (i, f.name.as_str()))
}

/// Deeper YAML is not located (the config loader refuses it anyway).
const MAX_DEPTH: usize = 128;

/// A YAML node with its position (line and column, 1-based).
struct YNode {
    mark: (usize, usize),
    kind: YKind,
}

enum YKind {
    Scalar(String),
    Other,
    Seq(Vec<YNode>),
    Map(Vec<(YNode, YNode)>),
}

impl YNode {
    fn scalar(&self) -> Option<&str> {
        match &self.kind {
            YKind::Scalar(s) => Some(s),
            _ => None,
        }
    }

    fn entry(&self, key: &str) -> Option<&(YNode, YNode)> {
        match &self.kind {
            YKind::Map(entries) => entries.iter().find(|(k, _)| k.scalar() == Some(key)),
            _ => None,
        }
    }

    /// The value of `key` in a mapping.
    fn get(&self, key: &str) -> Option<&YNode> {
        self.entry(key).map(|(_, v)| v)
    }

    /// The key node `key` of a mapping (where `key:` is written).
    fn key(&self, key: &str) -> Option<&YNode> {
        self.entry(key).map(|(k, _)| k)
    }

    fn index(&self, i: usize) -> Option<&YNode> {
        match &self.kind {
            YKind::Seq(items) => items.get(i),
            _ => None,
        }
    }
}

enum Frame {
    Seq((usize, usize), Vec<YNode>),
    Map((usize, usize), Vec<(YNode, YNode)>, Option<YNode>),
}

#[derive(Default)]
struct TreeBuilder {
    stack: Vec<Frame>,
    root: Option<YNode>,
    /// Nesting past [`MAX_DEPTH`] seen: give up.
    too_deep: bool,
}

impl TreeBuilder {
    fn complete(&mut self, node: YNode) {
        match self.stack.last_mut() {
            Some(Frame::Seq(_, items)) => items.push(node),
            Some(Frame::Map(_, entries, key)) => match key.take() {
                Some(k) => entries.push((k, node)),
                None => *key = Some(node),
            },
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
        }
    }
}

impl MarkedEventReceiver for TreeBuilder {
    fn on_event(&mut self, ev: Event, marker: Marker) {
        if self.too_deep {
            return;
        }
        let mark = (marker.line().max(1), marker.col() + 1);
        match ev {
            Event::SequenceStart(..) | Event::MappingStart(..) if self.stack.len() >= MAX_DEPTH => {
                self.too_deep = true;
            }
            Event::Scalar(value, ..) => self.complete(YNode {
                mark,
                kind: YKind::Scalar(value),
            }),
            Event::Alias(_) => self.complete(YNode {
                mark,
                kind: YKind::Other,
            }),
            Event::SequenceStart(..) => self.stack.push(Frame::Seq(mark, Vec::new())),
            Event::MappingStart(..) => self.stack.push(Frame::Map(mark, Vec::new(), None)),
            Event::SequenceEnd | Event::MappingEnd => {
                let node = match self.stack.pop() {
                    Some(Frame::Seq(mark, items)) => YNode {
                        mark,
                        kind: YKind::Seq(items),
                    },
                    Some(Frame::Map(mark, entries, _)) => YNode {
                        // A block mapping's start mark is not where it is written: use its
                        // first key's.
                        mark: entries.first().map_or(mark, |(k, _)| k.mark),
                        kind: YKind::Map(entries),
                    },
                    None => return,
                };
                self.complete(node);
            }
            _ => {}
        }
    }
}

/// The first document of `text` with positions; `None` when it is not YAML (or too deep).
fn yaml_tree(text: &str) -> Option<YNode> {
    let mut builder = TreeBuilder::default();
    Parser::new_from_str(text).load(&mut builder, false).ok()?;
    if builder.too_deep {
        return None;
    }
    builder.root
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_filter_errors() {
        let text = "listeners: []\nfilters:\n  - name: a\n    module: a.wasm\n  - name: \"b: c\"\n    module: b.wasm\n    config: { x: 1 }\n";
        let cfg: Config = serde_yaml::from_str(text).unwrap();
        let errors = vec![
            "filter a: invalid wasm module: nope".to_string(),
            "filter b: c: proxy_on_configure failed: returned false".to_string(),
            "listener l: something".to_string(),
        ];
        let got = locate("w.yaml", text, &cfg, errors);
        assert_eq!(
            got,
            vec![
                "w.yaml:4:5: filter a: invalid wasm module: nope",
                "w.yaml:7:5: filter b: c: proxy_on_configure failed: returned false",
                "w.yaml: listener l: something",
            ]
        );
    }

    #[test]
    fn bad_module_bytes_and_missing_files_are_errors() {
        let dir = std::env::temp_dir().join(format!("weir-preflight-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.wasm"), b"\0asm\x01\0\0\0garbage").unwrap();
        std::fs::write(dir.join("b.wasm"), b"\0asm\x01\0\0\0").unwrap();
        let text = "filters:\n  - name: a\n    module: a.wasm\n  - name: b\n    module: b.wasm\n";
        let errors = check_str("w.yaml", text, &dir, &Modules::new()).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].starts_with("w.yaml:3:5: filter a: "),
            "{errors:?}"
        );
        assert!(
            errors[1].starts_with("w.yaml:5:5: filter b: "),
            "{errors:?}"
        );
        // Bytes given in memory win over the file.
        let modules = Modules::from([("a".to_string(), Bytes::from_static(b"\0asm\x01\0\0\0"))]);
        let errors = check_str("w.yaml", text, &dir, &modules).unwrap_err();
        assert!(
            errors.iter().all(|e| !e.contains("invalid wasm")),
            "{errors:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

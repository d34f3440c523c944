//! The desired state: a config YAML plus the modules it references, validated and made
//! content-addressed (every filter's `module:` rewritten to `sha256:<hex>`).
//!
//! Used by the server (for the watched directory and for pushes) and by `weir-control push`
//! (to validate locally and to know which modules to upload). [`resolve`] checks the YAML and
//! finds the modules; [`check`] (or [`resolve_checked`]) also compiles and configures every
//! filter as a proxy would, so what a proxy would NACK is refused before it is published.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde_yaml::Value;
use weir::control::wire::{is_sha256_hex, sha256_hex, SHA256_PREFIX};

/// First 8 bytes of every core wasm module: `\0asm` + version 1.
const WASM_HEADER: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];

/// A validated, content-addressed desired state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// The config YAML sent to proxies (modules as `sha256:<hex>`).
    pub config: String,
    /// Filter name → sha256 hex.
    pub modules: BTreeMap<String, String>,
    /// sha256 hex → module bytes, for every module of `modules`.
    pub blobs: BTreeMap<String, Bytes>,
    /// sha256 hex of `config`; it names every module too, so it identifies the whole state.
    pub fingerprint: String,
}

/// Whether path references (`module: some/file.wasm`) are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathRefs {
    /// Relative to the base directory (absolute paths as they are).
    Allowed,
    /// Not allowed (pushes must reference modules by digest).
    Forbidden,
}

/// Every error found, one line each (`file: message` or `file:line:column: message`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct Invalid(pub Vec<String>);

/// Validates `text` (named `file` in errors) with weir's full config validation (relative
/// files resolve against `base_dir`) and resolves its modules: path references (if `paths`
/// allows them) against `base_dir`, `sha256:<hex>` references through `known`. Every module
/// must be a wasm module.
pub fn resolve(
    file: &str,
    text: &str,
    base_dir: &Path,
    paths: PathRefs,
    known: &dyn Fn(&str) -> Option<Bytes>,
) -> Result<Desired, Invalid> {
    let config = match weir::config::load_str_validated(file, text, base_dir) {
        Ok(config) => config,
        // Modules given by path can still be compiled and configured: `weir validate`'s check
        // reports the same YAML errors, then theirs, in one run.
        Err(e) => {
            let all = match paths {
                PathRefs::Allowed => {
                    weir::preflight::check_str(file, text, base_dir, &Default::default()).err()
                }
                PathRefs::Forbidden => None,
            };
            return Err(Invalid(
                all.unwrap_or_else(|| e.0.iter().map(|e| e.to_string()).collect()),
            ));
        }
    };
    let mut errors = Vec::new();
    let mut modules = BTreeMap::new();
    let mut blobs = BTreeMap::new();
    let mut refs = BTreeMap::new(); // original module string → hex
    for filter in &config.filters {
        let bytes = if let Some(hex) = filter.module.strip_prefix(SHA256_PREFIX) {
            if !is_sha256_hex(hex) {
                errors.push(format!(
                    "{file}: filter {}: invalid module digest {:?}",
                    filter.name, filter.module
                ));
                continue;
            }
            match known(hex) {
                Some(b) => b,
                None => {
                    errors.push(format!(
                        "{file}: filter {}: unknown module {} (upload it first)",
                        filter.name, filter.module
                    ));
                    continue;
                }
            }
        } else {
            if paths == PathRefs::Forbidden {
                errors.push(format!(
                    "{file}: filter {}: module {:?} must be a sha256:<hex> reference here",
                    filter.name, filter.module
                ));
                continue;
            }
            let path = base_dir.join(&filter.module);
            match std::fs::read(&path) {
                // A WAT file (as `weir run` accepts) is published as its binary module.
                Ok(b) if !b.starts_with(&WASM_HEADER) => match wat::parse_bytes(&b) {
                    Ok(binary) => Bytes::from(binary.into_owned()),
                    Err(e) => {
                        let detail = e.to_string();
                        let detail = detail.lines().next().unwrap_or_default();
                        errors.push(format!(
                            "{file}: filter {}: module {:?} is neither a WebAssembly module nor \
                             WAT text: {detail}",
                            filter.name, filter.module
                        ));
                        continue;
                    }
                },
                Ok(b) => Bytes::from(b),
                Err(e) => {
                    errors.push(format!(
                        "{file}: filter {}: module {}: {e}",
                        filter.name,
                        path.display()
                    ));
                    continue;
                }
            }
        };
        if !bytes.starts_with(&WASM_HEADER) {
            errors.push(format!(
                "{file}: filter {}: module {:?} is not a WebAssembly module",
                filter.name, filter.module
            ));
            continue;
        }
        let hex = sha256_hex(&bytes);
        if let Some(expected) = filter.module.strip_prefix(SHA256_PREFIX) {
            if expected != hex {
                errors.push(format!(
                    "{file}: filter {}: module content does not match {}",
                    filter.name, filter.module
                ));
                continue;
            }
        }
        refs.insert(filter.module.clone(), hex.clone());
        modules.insert(filter.name.clone(), hex.clone());
        blobs.insert(hex, bytes);
    }
    if !errors.is_empty() {
        return Err(Invalid(errors));
    }
    let config = rewrite_modules(file, text, |module| {
        refs.get(module).map(|hex| format!("{SHA256_PREFIX}{hex}"))
    })?;
    // The rewritten text must still be a valid config (it only differs in module strings).
    weir::config::load_str(file, &config)
        .map_err(|e| Invalid(e.0.iter().map(|e| e.to_string()).collect()))?;
    let fingerprint = sha256_hex(config.as_bytes());
    Ok(Desired {
        config,
        modules,
        blobs,
        fingerprint,
    })
}

/// Everything a proxy does when it applies `text` (as `weir validate` does it; see
/// [`weir::preflight`]): builds the snapshot and compiles, instantiates and configures every
/// filter (`proxy_on_vm_start`, `proxy_on_configure`) with the modules of `d`. Errors one per
/// line, `file:line:column: filter NAME: …` where the filter is found in `text`. Blocking.
pub fn check(file: &str, text: &str, base_dir: &Path, d: &Desired) -> Result<(), Invalid> {
    let modules: weir::preflight::Modules = d
        .modules
        .iter()
        .filter_map(|(name, hex)| Some((name.clone(), d.blobs.get(hex)?.clone())))
        .collect();
    weir::preflight::check_str(file, text, base_dir, &modules)
        .map(|_| ())
        .map_err(Invalid)
}

/// [`resolve`], then [`check`]: what may be published. Blocking.
pub fn resolve_checked(
    file: &str,
    text: &str,
    base_dir: &Path,
    paths: PathRefs,
    known: &dyn Fn(&str) -> Option<Bytes>,
) -> Result<Desired, Invalid> {
    let d = resolve(file, text, base_dir, paths, known)?;
    check(file, text, base_dir, &d)?;
    Ok(d)
}

/// Re-serialises `text` with every `filters[*].module` string replaced by `map(module)` (when
/// it returns `Some`). Comments and formatting are not preserved.
pub fn rewrite_modules(
    file: &str,
    text: &str,
    map: impl Fn(&str) -> Option<String>,
) -> Result<String, Invalid> {
    let mut doc: Value =
        serde_yaml::from_str(text).map_err(|e| Invalid(vec![format!("{file}: {e}")]))?;
    if let Some(Value::Sequence(filters)) = doc.get_mut("filters") {
        for filter in filters {
            if let Some(module) = filter.get_mut("module") {
                if let Some(new) = module.as_str().and_then(&map) {
                    *module = Value::String(new);
                }
            }
        }
    }
    serde_yaml::to_string(&doc).map_err(|e| Invalid(vec![format!("{file}: {e}")]))
}

/// Module path strings of `filters[*].module` that are not digests (for change detection).
pub fn module_paths(text: &str) -> Vec<String> {
    let Ok(doc) = serde_yaml::from_str::<Value>(text) else {
        return Vec::new();
    };
    let Some(Value::Sequence(filters)) = doc.get("filters") else {
        return Vec::new();
    };
    filters
        .iter()
        .filter_map(|f| f.get("module").and_then(Value::as_str))
        .filter(|m| !m.starts_with(SHA256_PREFIX))
        .map(str::to_string)
        .collect()
}

/// The desired-state file of a directory: `weir.yaml`, else the single `*.yaml`/`*.yml`.
pub fn config_file(dir: &Path) -> Result<PathBuf, String> {
    let main = dir.join("weir.yaml");
    if main.is_file() {
        return Ok(main);
    }
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
        })
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(format!(
            "{}: no weir.yaml (or other *.yaml) found",
            dir.display()
        )),
        _ => Err(format!(
            "{}: several *.yaml files and no weir.yaml; which one is the config?",
            dir.display()
        )),
    }
}

/// Whether `hex` names a module (a safe file name).
pub fn valid_digest(hex: &str) -> bool {
    is_sha256_hex(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wasm(tag: u8) -> Vec<u8> {
        let mut m = WASM_HEADER.to_vec();
        m.extend_from_slice(&[0, 3, b'a', b'b', tag]); // a custom section, so content differs
        m
    }

    #[test]
    fn rewrites_paths_to_digests() {
        let dir = std::env::temp_dir().join(format!("weir-control-desired-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.wasm"), wasm(1)).unwrap();
        let text = "# comment\nfilters:\n  - name: a\n    module: a.wasm\n    config: {x: 1}\n";
        let d = resolve("weir.yaml", text, &dir, PathRefs::Allowed, &|_| None).unwrap();
        let hex = sha256_hex(&wasm(1));
        assert_eq!(d.modules["a"], hex);
        assert!(d.config.contains(&format!("sha256:{hex}")), "{}", d.config);
        assert_eq!(d.blobs[&hex].as_ref(), wasm(1).as_slice());
        // The same state resolves to the same fingerprint; a digest ref to a known module too.
        let again = resolve("weir.yaml", &d.config, &dir, PathRefs::Forbidden, &|h| {
            d.blobs.get(h).cloned()
        })
        .unwrap();
        assert_eq!(again.fingerprint, d.fingerprint);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn wat_files_are_published_as_binary_modules() {
        let dir = std::env::temp_dir().join(format!("weir-control-wat-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("f.wat"), "(module (memory (export \"memory\") 1))").unwrap();
        std::fs::write(dir.join("g.wat"), "not wat").unwrap();
        let text = "filters:\n  - name: f\n    module: f.wat\n";
        let d = resolve("weir.yaml", text, &dir, PathRefs::Allowed, &|_| None).unwrap();
        let blob = &d.blobs[&d.modules["f"]];
        assert!(
            blob.starts_with(&WASM_HEADER),
            "published as a binary module"
        );
        assert_eq!(
            d.modules["f"],
            sha256_hex(blob),
            "named by the binary's digest"
        );
        let text = "filters:\n  - name: g\n    module: g.wat\n";
        let err = resolve("weir.yaml", text, &dir, PathRefs::Allowed, &|_| None).unwrap_err();
        assert!(
            err.0[0].contains("neither a WebAssembly module nor WAT"),
            "{err}"
        );
        assert!(!err.0[0].contains('\n'), "one line: {err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn yaml_and_module_errors_in_one_run() {
        let dir = std::env::temp_dir().join(format!("weir-control-mixed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("bad.wasm"), "not a module").unwrap();
        let text = "colour: blue\nfilters:\n  - name: f\n    module: bad.wasm\n";
        let err = resolve("w.yaml", text, &dir, PathRefs::Allowed, &|_| None).unwrap_err();
        assert_eq!(err.0.len(), 2, "{err}");
        assert!(err.0[0].contains("colour"), "{err}");
        assert!(err.0[1].contains("filter f"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn reports_every_error() {
        let text =
            "filters:\n  - name: a\n    module: missing.wasm\n  - name: b\n    module: sha256:00\n";
        let err = resolve(
            "w.yaml",
            text,
            Path::new("/nonexistent"),
            PathRefs::Allowed,
            &|_| None,
        )
        .unwrap_err();
        assert_eq!(err.0.len(), 2, "{err}");
        let err = resolve(
            "w.yaml",
            "filters: [",
            Path::new("."),
            PathRefs::Forbidden,
            &|_| None,
        )
        .unwrap_err();
        assert!(err.0[0].starts_with("w.yaml:"), "{err}");
        let err = resolve(
            "w.yaml",
            "filters:\n  - name: a\n    module: a.wasm\n",
            Path::new("."),
            PathRefs::Forbidden,
            &|_| None,
        )
        .unwrap_err();
        assert!(err.0[0].contains("a.wasm"), "{err}");
    }
}

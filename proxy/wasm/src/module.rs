//! [`CompiledModule`]: a validated, compiled and pre-linked filter module (wasmtime `Module` +
//! `InstancePre`), shared by every VM of every worker and cached by the sha256 of its bytes.

use std::fmt;

use wasmtime::{Engine, ExternType, InstancePre, Linker, Module};

use crate::callbacks::Callbacks;
use crate::error::WasmError;
use crate::state::HostState;

/// The proxy-wasm ABI a module declares through its marker export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbiVersion {
    V0_1_0,
    V0_2_0,
    V0_2_1,
}

impl fmt::Display for AbiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AbiVersion::V0_1_0 => "0.1.0",
            AbiVersion::V0_2_0 => "0.2.0",
            AbiVersion::V0_2_1 => "0.2.1",
        })
    }
}

/// A filter module ready to instantiate.
pub struct CompiledModule {
    pub(crate) sha256: [u8; 32],
    pub(crate) module: Module,
    pub(crate) pre: InstancePre<HostState>,
    pub(crate) abi: AbiVersion,
    pub(crate) unknown_imports: Vec<String>,
    pub(crate) callbacks: Callbacks,
}

impl fmt::Debug for CompiledModule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledModule")
            .field("sha256", &self.sha256_hex())
            .field("abi", &self.abi)
            .field("unknown_imports", &self.unknown_imports)
            .field("callbacks", &self.callbacks)
            .finish()
    }
}

impl CompiledModule {
    /// The ABI version the module declares.
    pub fn abi(&self) -> AbiVersion {
        self.abi
    }

    /// sha256 of the module bytes, hex.
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }

    /// Imports the host does not provide; they trap if called (logged at compile time).
    pub fn unknown_imports(&self) -> &[String] {
        &self.unknown_imports
    }

    /// The stream callbacks the host makes (the module's `weir.callbacks` section, else all).
    pub fn callbacks(&self) -> Callbacks {
        self.callbacks
    }

    /// Whether the module exports a function of that name.
    pub fn exports_function(&self, name: &str) -> bool {
        matches!(self.module.get_export(name), Some(ExternType::Func(_)))
    }
}

fn has_func(module: &Module, name: &str) -> bool {
    matches!(module.get_export(name), Some(ExternType::Func(_)))
}

/// A compile error as one line (errors are one line that says what and where, DESIGN.md §4):
/// WAT parse errors come with a multi-line source excerpt, kept here as "at LINE:COLUMN".
fn compile_error(bytes: &[u8], e: &wasmtime::Error) -> String {
    let text = format!("{e:#}");
    let mut parts: Vec<String> = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(at) = line.strip_prefix("--> ") {
            // `--> <anon>:1:1`: the position in the WAT text.
            let pos = at.rsplitn(3, ':').take(2).collect::<Vec<_>>();
            if let [col, line] = pos[..] {
                parts.push(format!("at {line}:{col}"));
            }
        } else if line.starts_with('|')
            || line
                .split_once('|')
                .is_some_and(|(n, _)| n.trim().parse::<u32>().is_ok())
        {
            // The excerpt of the source and its caret.
        } else {
            parts.push(line.to_string());
        }
    }
    let detail = parts.join(" ");
    let wat_syntax = !bytes.starts_with(b"\0asm") && text.contains("--> ");
    if wat_syntax {
        format!("neither a wasm binary (no \\0asm header) nor WAT text: {detail}")
    } else {
        detail
    }
}

/// Compile and validate `bytes` (wasm binary, or WAT text) and pre-link it.
pub(crate) fn compile(
    engine: &Engine,
    linker: &Linker<HostState>,
    bytes: &[u8],
    sha256: [u8; 32],
) -> Result<CompiledModule, WasmError> {
    // WAT text becomes a binary once here; the custom sections are read from that binary.
    let binary =
        wat::parse_bytes(bytes).map_err(|e| WasmError::Compile(compile_error(bytes, &e.into())))?;
    let module = Module::from_binary(engine, &binary)
        .map_err(|e| WasmError::Compile(compile_error(bytes, &e)))?;
    let callbacks = Callbacks::of_module(&binary).map_err(WasmError::Compile)?;
    let abi = if has_func(&module, "proxy_abi_version_0_2_1") {
        AbiVersion::V0_2_1
    } else if has_func(&module, "proxy_abi_version_0_2_0") {
        AbiVersion::V0_2_0
    } else if has_func(&module, "proxy_abi_version_0_1_0") {
        AbiVersion::V0_1_0
    } else {
        return Err(WasmError::NoAbiMarker);
    };
    if !has_func(&module, "proxy_on_memory_allocate") && !has_func(&module, "malloc") {
        return Err(WasmError::NoAllocator);
    }
    if !matches!(module.get_export("memory"), Some(ExternType::Memory(_))) {
        return Err(WasmError::NoMemory);
    }
    let (pre, unknown_imports) = match linker.instantiate_pre(&module) {
        Ok(pre) => (pre, Vec::new()),
        Err(first) => {
            // Imports we do not know (e.g. a language runtime's extra `env` function): link them
            // as traps so the module loads; a signature mismatch on a known import still fails.
            let known = |m: &str, n: &str| {
                (m == "env" && crate::abi::ENV_FUNCTIONS.contains(&n))
                    || crate::wasi::MODULES.contains(&m)
            };
            let unknown: Vec<String> = module
                .imports()
                .filter(|i| matches!(i.ty(), ExternType::Func(_)) && !known(i.module(), i.name()))
                .map(|i| format!("{}.{}", i.module(), i.name()))
                .collect();
            if unknown.is_empty() {
                return Err(WasmError::Link(format!("{first:#}")));
            }
            let mut l = linker.clone();
            l.allow_shadowing(true);
            l.define_unknown_imports_as_traps(&module)
                .map_err(|e| WasmError::Link(format!("{e:#}")))?;
            let pre = l
                .instantiate_pre(&module)
                .map_err(|e| WasmError::Link(format!("{e:#}")))?;
            tracing::warn!(
                imports = ?unknown,
                "filter module imports functions weir does not provide; they trap if called"
            );
            (pre, unknown)
        }
    };
    Ok(CompiledModule {
        sha256,
        module,
        pre,
        abi,
        unknown_imports,
        callbacks,
    })
}

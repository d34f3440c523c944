//! Per-worker VMs. [`PluginSpec`] is a filter's configuration, [`PreparedPlugin`] binds it to a
//! [`crate::CompiledModule`] (both `Send + Sync`, built once per snapshot), and [`PluginVm`]
//! (`!Send`) is one filter on one worker: a root context in an instance (a [`SharedVm`]: a
//! wasmtime `Store` with a memory cap) of its own, or shared by its VM group ([`VmGroups`]: the
//! same non-empty vm_id and module), with a deadline per callback, the root context (created,
//! `proxy_on_vm_start`, `proxy_on_configure`), ticks,
//! shared-queue notifications and `proxy_http_call` responses (local tasks), and the failure
//! policy (fail_closed, fail_open, reload with backoff).

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::LocalBoxFuture;
use wasmtime::{Store, Trap, TypedFunc, WasmParams, WasmResults};

use crate::callbacks::Callbacks;
use crate::engine::WasmHost;
use crate::error::{FailureKind, WasmError};
use crate::headers::HeaderList;
use crate::limits::{deadline_ticks, MemoryLimitExceeded, MemoryLimiter, MIN_INIT_DEADLINE};
use crate::metrics::{FilterStats, Phase};
use crate::module::CompiledModule;
use crate::services::{HostServices, HttpCallResponse};
use crate::state::{
    CallResponse, ConfigPhase, Effect, HostState, HttpCtx, StreamData, StreamSignal,
};
use crate::timing::Ticks;
use crate::wasi::ProcExit;

thread_local! {
    /// Inside a [`ClockRun`]: `(true, when the previous callback ended)`.
    static CLOCK_RUN: std::cell::Cell<(bool, Option<Ticks>)> =
        const { std::cell::Cell::new((false, None)) };
}

/// Back-to-back callbacks run synchronously (a stream's contexts created, or ended, filter after
/// filter) share clock reads: each callback's end is the next one's start, so timing `n`
/// callbacks reads the clock `n + 1` times instead of `2n` (the host's own work between two
/// callbacks is counted to the second). Only for code that does not yield while it runs.
pub(crate) struct ClockRun(());

impl ClockRun {
    pub(crate) fn begin() -> ClockRun {
        CLOCK_RUN.set((true, None));
        ClockRun(())
    }
}

impl Drop for ClockRun {
    fn drop(&mut self) {
        CLOCK_RUN.set((false, None));
    }
}

/// What happens when a filter traps, runs past its deadline or exceeds its memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailurePolicy {
    /// The stream gets a local 503 (details `filter_failed`); the VM stays failed, so later
    /// streams get 503 too (Envoy's default).
    #[default]
    FailClosed,
    /// The filter is skipped for the rest of the stream and for later streams.
    FailOpen,
    /// The stream gets a 503; the VM is rebuilt from the compiled module for the next stream
    /// (immediately after a first failure, then with exponential backoff up to 30 s while it
    /// keeps failing); streams arriving during a backoff get 503.
    Reload,
}

/// One filter's configuration (from YAML).
#[derive(Debug, Clone)]
pub struct PluginSpec {
    /// Filter name (metrics label, logs, errors).
    pub name: String,
    /// proxy-wasm root id (`plugin_root_id`).
    pub root_id: String,
    /// VM id: the shared data / queue namespace.
    pub vm_id: String,
    /// `VM_CONFIGURATION` buffer (`proxy_on_vm_start`).
    pub vm_configuration: Vec<u8>,
    /// `PLUGIN_CONFIGURATION` buffer (`proxy_on_configure`): the filter's `config:` as JSON.
    pub configuration: Vec<u8>,
    pub failure: FailurePolicy,
    /// Linear-memory cap in bytes (`limits.memory`).
    pub memory_limit_bytes: usize,
    /// Deadline of each callback (`limits.callback_deadline`).
    pub callback_deadline: Duration,
    /// Most body bytes buffered for a filter that pauses a body until end of stream.
    pub max_body_bytes: usize,
}

impl PluginSpec {
    /// A spec with weir's defaults: 64 MiB memory, 20 ms deadline, 1 MiB body buffer,
    /// fail_closed, empty configuration, root id and vm id "".
    pub fn new(name: impl Into<String>) -> Self {
        PluginSpec {
            name: name.into(),
            root_id: String::new(),
            vm_id: String::new(),
            vm_configuration: Vec::new(),
            configuration: Vec::new(),
            failure: FailurePolicy::FailClosed,
            memory_limit_bytes: 64 << 20,
            callback_deadline: Duration::from_millis(20),
            max_body_bytes: 1 << 20,
        }
    }
}

/// A spec bound to a compiled module; shared by all workers.
pub struct PreparedPlugin {
    pub(crate) spec: Arc<PluginSpec>,
    pub(crate) module: Arc<CompiledModule>,
    pub(crate) stats: Arc<FilterStats>,
    pub(crate) host: WasmHost,
}

impl std::fmt::Debug for PreparedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedPlugin")
            .field("spec", &self.spec)
            .field("module", &self.module)
            .finish()
    }
}

impl PreparedPlugin {
    pub fn spec(&self) -> &PluginSpec {
        &self.spec
    }
    pub fn module(&self) -> &Arc<CompiledModule> {
        &self.module
    }
    /// Host statistics of this filter (errors by kind, callback timings).
    pub fn stats(&self) -> &Arc<FilterStats> {
        &self.stats
    }
}

// === Exports ===

#[derive(Clone)]
pub(crate) enum HeadersFn {
    V1(TypedFunc<(i32, i32), i32>),
    V2(TypedFunc<(i32, i32, i32), i32>),
}

/// `proxy_on_http_call_response(root, token, headers, body_size, trailers)`.
type HttpCallResponseFn = TypedFunc<(i32, i32, i32, i32, i32), ()>;

#[derive(Clone, Default)]
struct Exports {
    on_context_create: Option<TypedFunc<(i32, i32), ()>>,
    on_vm_start: Option<TypedFunc<(i32, i32), i32>>,
    on_configure: Option<TypedFunc<(i32, i32), i32>>,
    on_tick: Option<TypedFunc<i32, ()>>,
    on_queue_ready: Option<TypedFunc<(i32, i32), ()>>,
    on_request_headers: Option<HeadersFn>,
    on_request_body: Option<TypedFunc<(i32, i32, i32), i32>>,
    on_request_trailers: Option<TypedFunc<(i32, i32), i32>>,
    on_response_headers: Option<HeadersFn>,
    on_response_body: Option<TypedFunc<(i32, i32, i32), i32>>,
    on_response_trailers: Option<TypedFunc<(i32, i32), i32>>,
    on_http_call_response: Option<HttpCallResponseFn>,
    on_log: Option<TypedFunc<i32, ()>>,
    on_done: Option<TypedFunc<i32, i32>>,
    on_delete: Option<TypedFunc<i32, ()>>,
}

fn typed<P: WasmParams, R: WasmResults>(
    inst: &wasmtime::Instance,
    store: &mut Store<HostState>,
    name: &str,
) -> Result<Option<TypedFunc<P, R>>, WasmError> {
    match inst.get_func(&mut *store, name) {
        None => Ok(None),
        Some(f) => f
            .typed::<P, R>(&*store)
            .map(Some)
            .map_err(|e| WasmError::BadExport {
                name: name.to_string(),
                detail: one_line(format!("{e:#}")),
            }),
    }
}

fn headers_fn(
    inst: &wasmtime::Instance,
    store: &mut Store<HostState>,
    name: &str,
) -> Result<Option<HeadersFn>, WasmError> {
    let Some(f) = inst.get_func(&mut *store, name) else {
        return Ok(None);
    };
    if let Ok(t) = f.typed::<(i32, i32, i32), i32>(&*store) {
        return Ok(Some(HeadersFn::V2(t)));
    }
    f.typed::<(i32, i32), i32>(&*store)
        .map(|t| Some(HeadersFn::V1(t)))
        .map_err(|e| WasmError::BadExport {
            name: name.to_string(),
            detail: one_line(format!("{e:#}")),
        })
}

impl Exports {
    fn load(inst: &wasmtime::Instance, s: &mut Store<HostState>) -> Result<Self, WasmError> {
        Ok(Exports {
            on_context_create: typed(inst, s, "proxy_on_context_create")?,
            on_vm_start: typed(inst, s, "proxy_on_vm_start")?,
            on_configure: typed(inst, s, "proxy_on_configure")?,
            on_tick: typed(inst, s, "proxy_on_tick")?,
            on_queue_ready: typed(inst, s, "proxy_on_queue_ready")?,
            on_request_headers: headers_fn(inst, s, "proxy_on_request_headers")?,
            on_request_body: typed(inst, s, "proxy_on_request_body")?,
            on_request_trailers: typed(inst, s, "proxy_on_request_trailers")?,
            on_response_headers: headers_fn(inst, s, "proxy_on_response_headers")?,
            on_response_body: typed(inst, s, "proxy_on_response_body")?,
            on_response_trailers: typed(inst, s, "proxy_on_response_trailers")?,
            on_http_call_response: typed(inst, s, "proxy_on_http_call_response")?,
            on_log: typed(inst, s, "proxy_on_log")?,
            on_done: typed(inst, s, "proxy_on_done")?,
            on_delete: typed(inst, s, "proxy_on_delete")?,
        })
    }
}

// === Instance ===

struct Instance {
    store: Store<HostState>,
    ex: Exports,
}

/// A callback that could not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallError {
    /// The VM is failed/unavailable, or the context belongs to an older instance.
    Unavailable,
    /// The callback failed now (already counted and handled).
    Failed(FailureKind),
}

/// Whether a new stream can use this filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Availability {
    Ready,
    Skip,
    Reject,
}

fn classify(e: &wasmtime::Error, state: &mut HostState) -> FailureKind {
    if state.limiter.exceeded || e.downcast_ref::<MemoryLimitExceeded>().is_some() {
        state.limiter.exceeded = false;
        return FailureKind::Oom;
    }
    if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        return FailureKind::Timeout;
    }
    FailureKind::Trap
}

/// "returned false", plus the last warning/error the guest logged while configuring.
/// A wasmtime error as one line (its wasm backtrace is multi-line): errors are one line that
/// says what and where (DESIGN.md §4).
fn one_line(text: String) -> String {
    if !text.contains('\n') {
        return text;
    }
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn returned_false(state: &mut HostState) -> String {
    match state.config_log.take() {
        Some(msg) => format!("returned false: {msg}"),
        None => "returned false".into(),
    }
}

// === impl SharedVm ===

/// One wasmtime instance on one worker. A filter alone has one of its own; filters of a VM
/// group ([`VmGroups`]: the same non-empty `vm_id`, module and VM configuration, DESIGN.md §5)
/// share one, as in Envoy: each is a root context of its own in it (its own
/// `proxy_on_vm_start` and `proxy_on_configure`, ticks and HTTP contexts), and they share the
/// guest's memory and globals, one memory cap (the first filter's) and its fate: a failure takes
/// the instance down for every member, each then applying its own failure policy, and a
/// `reload` rebuilds it with every member's root context.
pub struct SharedVm {
    inner: RefCell<Option<Instance>>,
    generation: Cell<u64>,
    /// The next context id: root ids are taken first, as filters join, then HTTP contexts.
    next_ctx: Cell<u32>,
    /// The first HTTP context id (one past the last root id).
    first_http: Cell<u32>,
    members: RefCell<Vec<Weak<PluginVm>>>,
}

impl SharedVm {
    fn new() -> Rc<SharedVm> {
        Rc::new(SharedVm {
            inner: RefCell::new(None),
            generation: Cell::new(0),
            next_ctx: Cell::new(1),
            first_http: Cell::new(1),
            members: RefCell::new(Vec::new()),
        })
    }

    fn take_root_id(&self) -> u32 {
        let id = self.next_ctx.get();
        self.next_ctx.set(id + 1);
        self.first_http.set(id + 1);
        id
    }

    fn next_http_id(&self) -> u32 {
        let id = self.next_ctx.get();
        self.next_ctx
            .set(id.wrapping_add(1).max(self.first_http.get()));
        id
    }

    /// The members still alive, in root id order.
    fn live_members(&self) -> Vec<Rc<PluginVm>> {
        self.members
            .borrow()
            .iter()
            .filter_map(Weak::upgrade)
            .collect()
    }
}

/// The VM groups of one worker's filters: [`PluginVm::new_in`] puts a filter whose non-empty
/// `vm_id`, module (sha256) and VM configuration match an earlier filter's into that filter's
/// instance. An empty `vm_id` (the default) gives each filter a VM of its own.
#[derive(Default)]
pub struct VmGroups {
    groups: std::collections::HashMap<(String, [u8; 32], Vec<u8>), Rc<SharedVm>>,
}

/// One filter's VM on one worker (`!Send`). Create with [`PluginVm::new`] on the worker thread.
pub struct PluginVm {
    plugin: Arc<PreparedPlugin>,
    services: Rc<dyn HostServices>,
    /// The instance, shared with the other filters of the same VM group (see [`VmGroups`]).
    vm: Rc<SharedVm>,
    /// This filter's root context id in that instance.
    root_id: u32,
    failed: RefCell<Option<String>>,
    last_failure: Cell<Option<Instant>>,
    next_reload: Cell<Option<Instant>>,
    backoff: Cell<Duration>,
    activated: Cell<bool>,
    deferred: RefCell<Vec<LocalBoxFuture<'static, ()>>>,
    queue_tx: tokio::sync::mpsc::UnboundedSender<(u32, u32)>,
    queue_rx: RefCell<Option<tokio::sync::mpsc::UnboundedReceiver<(u32, u32)>>>,
    shutdown: RefCell<Option<tokio::sync::oneshot::Sender<()>>>,
    tick_gen: Cell<u64>,
    tick_period: Cell<Option<Duration>>,
    deadline_ticks: u64,
    /// The stream callbacks the module implements (its `weir.callbacks` section).
    callbacks: Callbacks,
    weak_self: Weak<PluginVm>,
}

impl std::fmt::Debug for PluginVm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginVm")
            .field("filter", &self.plugin.spec.name)
            .field("generation", &self.vm.generation.get())
            .field("failed", &self.failed.borrow())
            .finish()
    }
}

impl PluginVm {
    /// Instantiate the module on this thread (limits armed before instantiation), run
    /// `_initialize` (reactor) or `_start` (command), create the root context and run
    /// `proxy_on_vm_start` and `proxy_on_configure`. False from either is an error naming the
    /// filter. Timers and calls started now begin running at [`PluginVm::activate`].
    /// The filter gets an instance of its own; see [`PluginVm::new_in`] for VM groups.
    pub fn new(
        plugin: &Arc<PreparedPlugin>,
        services: Rc<dyn HostServices>,
    ) -> Result<Rc<PluginVm>, WasmError> {
        Self::build(plugin, services, SharedVm::new())
    }

    /// Like [`PluginVm::new`], but a filter with a non-empty `vm_id` whose module and VM
    /// configuration match an earlier filter's in `groups` becomes another root context of that
    /// filter's instance (its own `proxy_on_vm_start` and `proxy_on_configure` run there).
    pub fn new_in(
        plugin: &Arc<PreparedPlugin>,
        services: Rc<dyn HostServices>,
        groups: &mut VmGroups,
    ) -> Result<Rc<PluginVm>, WasmError> {
        let spec = &plugin.spec;
        if spec.vm_id.is_empty() {
            return Self::new(plugin, services);
        }
        let key = (
            spec.vm_id.clone(),
            plugin.module.sha256,
            spec.vm_configuration.clone(),
        );
        let joined = groups
            .groups
            .get(&key)
            .filter(|shared| shared.inner.borrow().is_some())
            .cloned();
        let shared = joined.unwrap_or_else(SharedVm::new);
        let vm = Self::build(plugin, services, shared.clone())?;
        groups.groups.insert(key, shared);
        Ok(vm)
    }

    fn build(
        plugin: &Arc<PreparedPlugin>,
        services: Rc<dyn HostServices>,
        shared: Rc<SharedVm>,
    ) -> Result<Rc<PluginVm>, WasmError> {
        let (queue_tx, queue_rx) = tokio::sync::mpsc::unbounded_channel();
        let root_id = shared.take_root_id();
        let vm = Rc::new_cyclic(|weak| PluginVm {
            plugin: plugin.clone(),
            services,
            vm: shared.clone(),
            root_id,
            failed: RefCell::new(None),
            last_failure: Cell::new(None),
            next_reload: Cell::new(None),
            backoff: Cell::new(Duration::ZERO),
            activated: Cell::new(false),
            deferred: RefCell::new(Vec::new()),
            queue_tx,
            queue_rx: RefCell::new(Some(queue_rx)),
            shutdown: RefCell::new(None),
            tick_gen: Cell::new(0),
            tick_period: Cell::new(None),
            deadline_ticks: deadline_ticks(plugin.spec.callback_deadline),
            callbacks: plugin.module.callbacks(),
            weak_self: weak.clone(),
        });
        shared.members.borrow_mut().push(Rc::downgrade(&vm));
        // A later member of a VM group joins the running instance; a first one builds it.
        let mut running = shared.inner.borrow_mut();
        let started = if let Some(inst) = running.as_mut() {
            let joined = vm.join_running(inst);
            drop(running);
            joined
        } else {
            drop(running);
            vm.instantiate()
        };
        if let Err(e) = started {
            shared
                .members
                .borrow_mut()
                .retain(|m| !std::ptr::eq(m.as_ptr(), Rc::as_ptr(&vm)));
            if matches!(e, WasmError::VmStart { .. } | WasmError::Configure { .. }) {
                vm.plugin.stats.error(FailureKind::Config);
            }
            return Err(e);
        }
        Ok(vm)
    }

    /// The filter's prepared plugin.
    pub fn plugin(&self) -> &Arc<PreparedPlugin> {
        &self.plugin
    }

    /// The filter name.
    pub fn name(&self) -> &str {
        &self.plugin.spec.name
    }

    /// Whether the VM is currently failed (no instance).
    pub fn is_failed(&self) -> bool {
        self.vm.inner.borrow().is_none()
    }

    /// Start this VM's local tasks (tick timer, queue notifications, calls made during
    /// configuration). Must run inside a `LocalSet`; idempotent; also done by the first stream.
    pub fn activate(&self) {
        if self.activated.replace(true) {
            return;
        }
        if let Some(mut rx) = self.queue_rx.borrow_mut().take() {
            let (tx, mut stop) = tokio::sync::oneshot::channel::<()>();
            *self.shutdown.borrow_mut() = Some(tx);
            let weak = self.weak_self.clone();
            tokio::task::spawn_local(async move {
                loop {
                    tokio::select! {
                        msg = rx.recv() => {
                            let Some((root, queue)) = msg else { return };
                            let Some(vm) = weak.upgrade() else { return };
                            vm.queue_ready(root, queue);
                        }
                        _ = &mut stop => return,
                    }
                }
            });
        }
        for fut in self.deferred.borrow_mut().drain(..) {
            tokio::task::spawn_local(fut);
        }
        if let Some(p) = self.tick_period.get() {
            self.spawn_ticker(p);
        }
    }

    fn spawn(&self, fut: LocalBoxFuture<'static, ()>) {
        if self.activated.get() {
            tokio::task::spawn_local(fut);
        } else {
            self.deferred.borrow_mut().push(fut);
        }
    }

    // === instantiation ===

    /// Build the instance (for this filter alone, or its whole VM group: a first build, or a
    /// `reload` by any member) and start every member's root context in it.
    fn instantiate(&self) -> Result<(), WasmError> {
        let plugin = &self.plugin;
        let spec = &plugin.spec;
        let host = &plugin.host.inner;
        let name = spec.name.clone();
        // The memory cap of a shared instance is its first member's, whoever rebuilds it.
        let members = self.vm.live_members();
        let capped = members.first().map_or(plugin, |m| &m.plugin);
        let limiter = MemoryLimiter::new(capped.spec.memory_limit_bytes);
        let state = HostState {
            plugin: plugin.clone(),
            limiter: limiter.counting(capped.stats.clone()),
            memory: None,
            alloc: None,
            root_id: self.root_id,
            effective: self.root_id,
            http: Default::default(),
            config_phase: ConfigPhase::None,
            call_response: None,
            next_token: 0,
            effects: Vec::new(),
            tick_period_ms: None,
            services: self.services.clone(),
            shared_data: host.shared_data.clone(),
            queues: host.queues.clone(),
            metrics: host.metrics.clone(),
            metric_cache: Default::default(),
            root_props: Vec::new(),
            queue_tx: self.queue_tx.clone(),
            foreign_args: None,
            exit_code: None,
            config_log: None,
        };
        let mut store = Store::new(&host.engine, state);
        store.limiter(|s| &mut s.limiter);
        let init_ticks = deadline_ticks(spec.callback_deadline.max(MIN_INIT_DEADLINE));
        store.set_epoch_deadline(init_ticks);
        let inst_err = |detail: String| WasmError::Instantiate {
            plugin: name.clone(),
            detail,
        };
        let instance = plugin
            .module
            .pre
            .instantiate(&mut store)
            .map_err(|e| inst_err(one_line(format!("{e:#}"))))?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or(WasmError::NoMemory)?;
        let alloc = match typed::<i32, i32>(&instance, &mut store, "proxy_on_memory_allocate")? {
            Some(f) => f,
            None => {
                typed::<i32, i32>(&instance, &mut store, "malloc")?.ok_or(WasmError::NoAllocator)?
            }
        };
        store.data_mut().memory = Some(memory);
        store.data_mut().alloc = Some(Rc::new(alloc));
        let ex = Exports::load(&instance, &mut store)?;

        // Start function: reactor (_initialize [+ main]) or command (_start).
        let start_res = if let Some(init) = typed::<(), ()>(&instance, &mut store, "_initialize")? {
            let r = init.call(&mut store, ());
            match (r, instance.get_func(&mut store, "main")) {
                (Ok(()), Some(main)) => match main.typed::<(i32, i32), i32>(&store) {
                    Ok(main) => main.call(&mut store, (0, 0)).map(|_| ()),
                    Err(_) => Ok(()),
                },
                (r, _) => r,
            }
        } else if let Some(start) = typed::<(), ()>(&instance, &mut store, "_start")? {
            start.call(&mut store, ())
        } else {
            Ok(())
        };
        if let Err(e) = start_res {
            let clean_exit = matches!(e.downcast_ref::<ProcExit>(), Some(ProcExit(0)));
            if !clean_exit {
                return Err(inst_err(one_line(format!("start function failed: {e:#}"))));
            }
        }

        let mut inst = Instance { store, ex };
        // One root context per member of the VM group (this filter alone, unless it shares).
        self.vm.generation.set(self.vm.generation.get() + 1);
        for member in &members {
            member.join_running(&mut inst)?;
            *member.failed.borrow_mut() = None;
        }
        *self.vm.inner.borrow_mut() = Some(inst);
        Ok(())
    }

    /// Start this filter's root context in a running instance: its group's, when a later
    /// member joins at build time, or a fresh one being built (every member, in root id order).
    fn join_running(&self, inst: &mut Instance) -> Result<(), WasmError> {
        self.start_root(inst)?;
        self.after_callback(inst);
        Ok(())
    }

    /// Make this filter the one hostcalls act for (its plugin and root id): a no-op unless the
    /// instance is shared with other filters.
    fn enter(&self, inst: &mut Instance) {
        let state = inst.store.data_mut();
        if state.root_id != self.root_id {
            state.root_id = self.root_id;
            state.plugin = self.plugin.clone();
        }
    }

    /// Create this filter's root context and run `proxy_on_vm_start` and `proxy_on_configure`.
    fn start_root(&self, inst: &mut Instance) -> Result<(), WasmError> {
        self.enter(inst);
        let spec = &self.plugin.spec;
        let init_ticks = deadline_ticks(spec.callback_deadline.max(MIN_INIT_DEADLINE));
        let (store, ex) = (&mut inst.store, &inst.ex);
        store.data_mut().effective = self.root_id;
        let vm_err = |detail: String| WasmError::VmStart {
            plugin: spec.name.clone(),
            detail,
        };
        let conf_err = |detail: String| WasmError::Configure {
            plugin: spec.name.clone(),
            detail,
        };
        if let Some(f) = &ex.on_context_create {
            store.set_epoch_deadline(init_ticks);
            f.call(&mut *store, (self.root_id as i32, 0)).map_err(|e| {
                vm_err(one_line(format!(
                    "proxy_on_context_create(root) trapped: {e:#}"
                )))
            })?;
        }
        if let Some(f) = &ex.on_vm_start {
            store.data_mut().config_phase = ConfigPhase::VmStart;
            store.set_epoch_deadline(init_ticks);
            let ok = f
                .call(
                    &mut *store,
                    (self.root_id as i32, spec.vm_configuration.len() as i32),
                )
                .map_err(|e| vm_err(one_line(format!("trapped: {e:#}"))))?;
            if ok == 0 {
                return Err(vm_err(returned_false(store.data_mut())));
            }
        }
        if let Some(f) = &ex.on_configure {
            store.data_mut().config_phase = ConfigPhase::Configure;
            store.data_mut().config_log = None;
            store.set_epoch_deadline(init_ticks);
            let ok = f
                .call(
                    &mut *store,
                    (self.root_id as i32, spec.configuration.len() as i32),
                )
                .map_err(|e| conf_err(one_line(format!("trapped: {e:#}"))))?;
            if ok == 0 {
                return Err(conf_err(returned_false(store.data_mut())));
            }
        }
        store.data_mut().config_phase = ConfigPhase::None;
        store.data_mut().config_log = None;
        Ok(())
    }

    // === calling into the guest ===

    /// Run one callback with the deadline armed and `effective` as the effective context.
    fn invoke<R>(
        &self,
        phase: Phase,
        gen: Option<u64>,
        effective: u32,
        f: impl FnOnce(&mut Instance) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        let mut guard = self.vm.inner.borrow_mut();
        let inst = guard.as_mut().ok_or(CallError::Unavailable)?;
        if gen.is_some_and(|g| g != self.vm.generation.get()) {
            return Err(CallError::Unavailable);
        }
        self.enter(inst);
        inst.store.data_mut().effective = effective;
        match self.timed(phase, inst, f) {
            Ok(v) => {
                self.after_callback(inst);
                Ok(v)
            }
            Err(e) => Err(CallError::Failed(self.fail_taking(guard, phase, &e))),
        }
    }

    /// One guest call with the deadline armed, timed into `phase`'s duration histogram (within
    /// a [`ClockRun`], one call's end is the next one's start: one clock read per call).
    fn timed<R>(
        &self,
        phase: Phase,
        inst: &mut Instance,
        f: impl FnOnce(&mut Instance) -> wasmtime::Result<R>,
    ) -> wasmtime::Result<R> {
        inst.store.set_epoch_deadline(self.deadline_ticks);
        let (in_run, carried) = CLOCK_RUN.get();
        let start = carried.unwrap_or_else(Ticks::now);
        let r = f(inst);
        let end = Ticks::now();
        self.plugin
            .stats
            .observe_nanos(phase, end.nanos_since(start));
        if in_run {
            CLOCK_RUN.set((true, Some(end)));
        }
        r
    }

    /// A guest call on the instance in `guard` failed: take the instance out (the borrow ends
    /// before the failure is handled), classify the failure by its state and apply
    /// [`PluginVm::fail`]. Returns the kind.
    fn fail_taking(
        &self,
        mut guard: std::cell::RefMut<'_, Option<Instance>>,
        phase: Phase,
        e: &wasmtime::Error,
    ) -> FailureKind {
        let mut dead = guard.take();
        drop(guard);
        let kind = dead
            .as_mut()
            .map_or(FailureKind::Trap, |inst| classify(e, inst.store.data_mut()));
        self.fail(kind, phase, e, dead);
        kind
    }

    fn fail(&self, kind: FailureKind, phase: Phase, e: &wasmtime::Error, dead: Option<Instance>) {
        self.plugin.stats.error(kind);
        let detail = format!("{} in {}: {e:#}", kind.as_str(), phase.as_str());
        tracing::error!(target: "weir::filter", filter = %self.plugin.spec.name, "filter failed: {detail}");
        if let Some(inst) = dead {
            for ctx in inst.store.data().http.values() {
                ctx.signal.failed.set(true);
                ctx.signal.wake();
            }
        }
        *self.failed.borrow_mut() = Some(detail);
        self.tick_gen.set(self.tick_gen.get() + 1);
        self.tick_period.set(None);
        let now = Instant::now();
        let recent = self
            .last_failure
            .get()
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(10));
        self.last_failure.set(Some(now));
        if recent {
            let b =
                (self.backoff.get() * 2).clamp(Duration::from_millis(100), Duration::from_secs(30));
            self.backoff.set(b);
            self.next_reload.set(Some(now + b));
        } else {
            self.backoff.set(Duration::ZERO);
            self.next_reload.set(Some(now));
        }
    }

    /// Drain hostcall side effects (outbound calls, tick changes).
    fn after_callback(&self, inst: &mut Instance) {
        let state = inst.store.data_mut();
        if let Some(p) = state.tick_period_ms.take() {
            self.set_tick(p);
        }
        if state.effects.is_empty() {
            return;
        }
        let gen = self.vm.generation.get();
        for effect in std::mem::take(&mut state.effects) {
            match effect {
                Effect::HttpCall {
                    token,
                    caller,
                    fut,
                    timeout,
                } => {
                    let weak = self.weak_self.clone();
                    self.spawn(Box::pin(async move {
                        let res = if timeout.is_zero() {
                            fut.await
                        } else {
                            match tokio::time::timeout(timeout, fut).await {
                                Ok(r) => r,
                                Err(_) => Err("timeout".to_string()),
                            }
                        };
                        if let Some(vm) = weak.upgrade() {
                            vm.deliver_http_response(gen, token, caller, res);
                        }
                    }));
                }
            }
        }
    }

    fn set_tick(&self, period_ms: u32) {
        self.tick_gen.set(self.tick_gen.get() + 1);
        if period_ms == 0 {
            self.tick_period.set(None);
            return;
        }
        let p = Duration::from_millis(period_ms as u64);
        self.tick_period.set(Some(p));
        if self.activated.get() {
            self.spawn_ticker(p);
        }
    }

    fn spawn_ticker(&self, period: Duration) {
        let gen = self.tick_gen.get();
        let weak = self.weak_self.clone();
        tokio::task::spawn_local(async move {
            let mut iv = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                iv.tick().await;
                let Some(vm) = weak.upgrade() else { return };
                if vm.tick_gen.get() != gen {
                    return;
                }
                vm.on_tick();
            }
        });
    }

    fn on_tick(&self) {
        let _ = self.invoke(Phase::Tick, None, self.root_id, |inst| {
            match &inst.ex.on_tick {
                Some(f) => f.call(&mut inst.store, self.root_id as i32),
                None => Ok(()),
            }
        });
    }

    /// A queue notification for root `root`: this filter's, or another member's of its VM group
    /// (the instance's registrations carry the channel of the filter that built it).
    fn queue_ready(&self, root: u32, queue: u32) {
        if root == self.root_id {
            return self.on_queue_ready(queue);
        }
        let member = self
            .vm
            .live_members()
            .into_iter()
            .find(|m| m.root_id == root);
        if let Some(m) = member {
            m.on_queue_ready(queue);
        }
    }

    fn on_queue_ready(&self, queue: u32) {
        let _ = self.invoke(Phase::QueueReady, None, self.root_id, |inst| {
            match &inst.ex.on_queue_ready {
                Some(f) => f.call(&mut inst.store, (self.root_id as i32, queue as i32)),
                None => Ok(()),
            }
        });
    }

    fn deliver_http_response(
        &self,
        gen: u64,
        token: u32,
        caller: u32,
        res: Result<HttpCallResponse, String>,
    ) {
        {
            let mut guard = self.vm.inner.borrow_mut();
            let Some(inst) = guard.as_mut() else { return };
            if gen != self.vm.generation.get() {
                return;
            }
            let state = inst.store.data_mut();
            if caller != self.root_id && !state.http.contains_key(&caller) {
                return; // the calling stream is gone
            }
            let cr = match res {
                Ok(r) => {
                    let (parts, body) = r.response.into_parts();
                    CallResponse {
                        headers: HeaderList::from_response(parts.status, &parts.headers),
                        body: body.to_vec(),
                        trailers: r
                            .trailers
                            .as_ref()
                            .map(HeaderList::from_header_map)
                            .unwrap_or_default(),
                    }
                }
                Err(e) => {
                    crate::abi::logging::log(state, 3, &format!("http_call {token} failed: {e}"));
                    CallResponse::default()
                }
            };
            state.call_response = Some(cr);
        }
        let _ = self.invoke(Phase::HttpCallResponse, Some(gen), caller, |inst| {
            let (nh, nb, nt) = {
                let r = inst.store.data().call_response.as_ref();
                r.map(|r| (r.headers.len(), r.body.len(), r.trailers.len()))
                    .unwrap_or_default()
            };
            match &inst.ex.on_http_call_response {
                Some(f) => f.call(
                    &mut inst.store,
                    (
                        self.root_id as i32,
                        token as i32,
                        nh as i32,
                        nb as i32,
                        nt as i32,
                    ),
                ),
                None => Ok(()),
            }
        });
        if let Some(inst) = self.vm.inner.borrow_mut().as_mut() {
            inst.store.data_mut().call_response = None;
        }
    }

    // === stream API (used by the chain) ===

    /// Whether a new stream may use the filter; rebuilds the VM under `reload` when due.
    pub(crate) fn availability(&self) -> Availability {
        if self.vm.inner.borrow().is_some() {
            return Availability::Ready;
        }
        match self.plugin.spec.failure {
            FailurePolicy::FailOpen => Availability::Skip,
            FailurePolicy::FailClosed => Availability::Reject,
            FailurePolicy::Reload => {
                let due = self.next_reload.get().is_none_or(|t| Instant::now() >= t);
                if !due {
                    return Availability::Reject;
                }
                match self.instantiate() {
                    Ok(()) => {
                        tracing::info!(target: "weir::filter", filter = %self.plugin.spec.name, "filter VM reloaded");
                        Availability::Ready
                    }
                    Err(e) => {
                        self.plugin.stats.error(FailureKind::Config);
                        let b = (self.backoff.get() * 2)
                            .clamp(Duration::from_millis(100), Duration::from_secs(30));
                        self.backoff.set(b);
                        self.next_reload.set(Some(Instant::now() + b));
                        tracing::error!(target: "weir::filter", filter = %self.plugin.spec.name, "filter VM reload failed: {e}");
                        Availability::Reject
                    }
                }
            }
        }
    }

    /// Create an HTTP context for a stream.
    pub(crate) fn create_http_context(
        &self,
        stream: &Rc<RefCell<StreamData>>,
    ) -> Result<(u32, u64, Rc<StreamSignal>), CallError> {
        let id = self.vm.next_http_id();
        let signal = Rc::new(StreamSignal::default());
        let gen = {
            let mut guard = self.vm.inner.borrow_mut();
            let inst = guard.as_mut().ok_or(CallError::Unavailable)?;
            inst.store.data_mut().http.insert(
                id,
                HttpCtx {
                    stream: stream.clone(),
                    signal: signal.clone(),
                },
            );
            self.vm.generation.get()
        };
        self.invoke(Phase::ContextCreate, Some(gen), id, |inst| {
            match &inst.ex.on_context_create {
                Some(f) => f.call(&mut inst.store, (id as i32, self.root_id as i32)),
                None => Ok(()),
            }
        })?;
        Ok((id, gen, signal))
    }

    /// Call a headers/body/trailers callback; returns the action (0 = Continue).
    pub(crate) fn call_phase(
        &self,
        phase: Phase,
        ctx: u32,
        gen: u64,
        a: usize,
        eos: bool,
    ) -> Result<u32, CallError> {
        let (ctx_i, a, eos) = (ctx as i32, a as i32, eos as i32);
        self.invoke(phase, Some(gen), ctx, |inst| {
            let ex = &inst.ex;
            let s = &mut inst.store;
            let headers = |f: &Option<HeadersFn>, s: &mut Store<HostState>| match f {
                Some(HeadersFn::V2(f)) => f.call(s, (ctx_i, a, eos)),
                Some(HeadersFn::V1(f)) => f.call(s, (ctx_i, a)),
                None => Ok(0),
            };
            let r = match phase {
                Phase::RequestHeaders => headers(&ex.on_request_headers, s)?,
                Phase::ResponseHeaders => headers(&ex.on_response_headers, s)?,
                Phase::RequestBody => match &ex.on_request_body {
                    Some(f) => f.call(s, (ctx_i, a, eos))?,
                    None => 0,
                },
                Phase::ResponseBody => match &ex.on_response_body {
                    Some(f) => f.call(s, (ctx_i, a, eos))?,
                    None => 0,
                },
                Phase::RequestTrailers => match &ex.on_request_trailers {
                    Some(f) => f.call(s, (ctx_i, a))?,
                    None => 0,
                },
                Phase::ResponseTrailers => match &ex.on_response_trailers {
                    Some(f) => f.call(s, (ctx_i, a))?,
                    None => 0,
                },
                _ => 0,
            };
            Ok(r as u32)
        })
    }

    /// End a stream's context: `proxy_on_done`, `proxy_on_log`, `proxy_on_delete` (each timed
    /// and deadline-armed like any callback, under one borrow of the instance), then forget it.
    /// A failing callback ends the sequence: the failure policy takes the instance down.
    pub(crate) fn finish_context(&self, ctx: u32, gen: u64) {
        let mut guard = self.vm.inner.borrow_mut();
        let Some(inst) = guard.as_mut() else {
            return;
        };
        if gen != self.vm.generation.get() {
            return;
        }
        self.enter(inst);
        inst.store.data_mut().effective = ctx;
        let c = ctx as i32;
        let mut phase = Phase::Done;
        let mut r = Ok(());
        if self.calls(phase) {
            r = self.timed(phase, inst, |inst| match &inst.ex.on_done {
                Some(f) => f.call(&mut inst.store, c).map(|_| ()),
                None => Ok(()),
            });
        }
        if r.is_ok() && self.calls(Phase::Log) {
            phase = Phase::Log;
            r = self.timed(phase, inst, |inst| match &inst.ex.on_log {
                Some(f) => f.call(&mut inst.store, c),
                None => Ok(()),
            });
        }
        if r.is_ok() {
            phase = Phase::Delete;
            r = self.timed(phase, inst, |inst| match &inst.ex.on_delete {
                Some(f) => f.call(&mut inst.store, c),
                None => Ok(()),
            });
        }
        if let Err(e) = r {
            self.fail_taking(guard, phase, &e);
            return;
        }
        self.after_callback(inst);
        let state = inst.store.data_mut();
        state.http.remove(&ctx);
        if state.effective == ctx {
            state.effective = self.root_id;
        }
    }

    /// Whether the host calls the module's callback for `phase` (see [`Callbacks`]).
    pub(crate) fn calls(&self, phase: Phase) -> bool {
        self.callbacks.calls(phase)
    }

    /// The failure policy.
    pub fn failure_policy(&self) -> FailurePolicy {
        self.plugin.spec.failure
    }

    pub(crate) fn max_body_bytes(&self) -> usize {
        self.plugin.spec.max_body_bytes
    }
}

impl Drop for PluginVm {
    fn drop(&mut self) {
        let Ok(mut guard) = self.vm.inner.try_borrow_mut() else {
            return;
        };
        if let Some(inst) = guard.as_mut() {
            self.enter(inst);
            inst.store.set_epoch_deadline(self.deadline_ticks);
            inst.store.data_mut().effective = self.root_id;
            if let Some(f) = inst.ex.on_done.clone() {
                let _ = f.call(&mut inst.store, self.root_id as i32);
            }
            if let Some(f) = inst.ex.on_delete.clone() {
                let _ = f.call(&mut inst.store, self.root_id as i32);
            }
        }
    }
}

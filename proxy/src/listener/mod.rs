//! Listeners and workers (DESIGN.md §2): N worker threads, each a single-threaded local tokio
//! runtime (`!Send` tasks) and its OWN accept loop on its own `SO_REUSEPORT` socket per listener; a
//! connection, and every request on it, stays on the worker that accepted it. Shutdown stops the
//! accept loops, lets in-flight requests finish (up to the drain timeout), then the thread ends.

pub mod conn_stream;

use crate::http::proxy::{ConnInfo, TlsInfo, Worker};
use crate::shared::Shared;
use conn_stream::ConnStream;
use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// Binds a listening socket with `SO_REUSEPORT` (so every worker can bind the same address).
pub fn bind_reuseport(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    sock.set_reuse_port(true)?;
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(1024)?;
    Ok(sock.into())
}

/// One socket per (listener, worker), all bound before any worker starts. Port 0 is resolved by
/// the first bind and reused for the others.
pub struct BoundListeners {
    /// (listener name, actual address)
    pub addresses: Vec<(String, SocketAddr)>,
    /// per worker: (listener name, socket)
    pub per_worker: Vec<Vec<(Arc<str>, std::net::TcpListener)>>,
}

#[derive(Debug, thiserror::Error)]
#[error("listener {name}: cannot bind {address}: {source}")]
pub struct BindError {
    pub name: String,
    pub address: String,
    pub source: std::io::Error,
}

pub fn bind_all(
    listeners: &[crate::config::Listener],
    workers: usize,
) -> Result<BoundListeners, BindError> {
    let mut addresses = Vec::new();
    let mut per_worker: Vec<Vec<(Arc<str>, std::net::TcpListener)>> =
        (0..workers).map(|_| Vec::new()).collect();
    for l in listeners {
        let err = |source| BindError {
            name: l.name.clone(),
            address: l.address.clone(),
            source,
        };
        let addr: SocketAddr = l
            .address
            .parse()
            .map_err(|e| err(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)))?;
        let first = bind_reuseport(addr).map_err(err)?;
        let actual = first.local_addr().map_err(err)?;
        let name: Arc<str> = Arc::from(l.name.as_str());
        per_worker[0].push((name.clone(), first));
        for w in per_worker.iter_mut().skip(1) {
            w.push((name.clone(), bind_reuseport(actual).map_err(err)?));
        }
        addresses.push((l.name.clone(), actual));
    }
    Ok(BoundListeners {
        addresses,
        per_worker,
    })
}

/// Counts a worker's open connections, to wait for them on drain.
#[derive(Default)]
struct ConnTracker {
    open: Cell<usize>,
    idle: Notify,
}

struct ConnGuard(Rc<ConnTracker>);

impl ConnGuard {
    fn new(t: &Rc<ConnTracker>) -> ConnGuard {
        t.open.set(t.open.get() + 1);
        ConnGuard(t.clone())
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let n = self.0.open.get() - 1;
        self.0.open.set(n);
        if n == 0 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Starts worker `id` on its own thread. `ready` gets one message once its accept loops run.
pub fn spawn_worker(
    id: usize,
    shared: Arc<Shared>,
    sockets: Vec<(Arc<str>, std::net::TcpListener)>,
    shutdown: watch::Receiver<bool>,
    commands: tokio::sync::mpsc::UnboundedReceiver<crate::shared::WorkerCmd>,
    ready: std::sync::mpsc::Sender<Result<usize, String>>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("weir-worker-{id}"))
        .spawn(move || {
            // A local runtime: `spawn_local` tasks are scheduled by the runtime itself (no
            // `LocalSet` in between, whose wake-ups cost an eventfd write per event-loop turn).
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build_local(Default::default())
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready.send(Err(format!("worker {id}: runtime: {e}")));
                    return;
                }
            };
            rt.block_on(run_worker(id, shared, sockets, shutdown, commands, ready));
        })
}

/// The accept loops of one worker, by listener name; each can be stopped on its own (a swap
/// that removes or moves a listener) or all at once (shutdown).
struct AcceptLoops {
    loops: std::cell::RefCell<std::collections::HashMap<Arc<str>, AcceptLoop>>,
}

/// A running accept loop and the switch that stops it.
type AcceptLoop = (tokio::task::JoinHandle<()>, watch::Sender<bool>);

impl AcceptLoops {
    fn start(
        &self,
        name: Arc<str>,
        sock: std::net::TcpListener,
        worker: &Rc<Worker>,
        tracker: &Rc<ConnTracker>,
        shutdown: &watch::Receiver<bool>,
    ) -> std::io::Result<()> {
        let listener = tokio::net::TcpListener::from_std(sock)?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::task::spawn_local(accept_loop(
            name.clone(),
            listener,
            worker.clone(),
            tracker.clone(),
            shutdown.clone(),
            stop_rx,
        ));
        if let Some((_, old)) = self.loops.borrow_mut().insert(name, (task, stop_tx)) {
            let _ = old.send(true);
        }
        Ok(())
    }

    fn stop(&self, name: &str) {
        if let Some((_, stop)) = self.loops.borrow_mut().remove(name) {
            let _ = stop.send(true);
        }
    }

    fn take_all(&self) -> Vec<tokio::task::JoinHandle<()>> {
        self.loops
            .borrow_mut()
            .drain()
            .map(|(_, (t, _))| t)
            .collect()
    }
}

async fn run_worker(
    id: usize,
    shared: Arc<Shared>,
    sockets: Vec<(Arc<str>, std::net::TcpListener)>,
    mut shutdown: watch::Receiver<bool>,
    mut commands: tokio::sync::mpsc::UnboundedReceiver<crate::shared::WorkerCmd>,
    ready: std::sync::mpsc::Sender<Result<usize, String>>,
) {
    let worker = Worker::new(id, shared.clone());
    // The first snapshot's VMs, before accepting anything.
    if let Err(e) = worker.prepare(&shared.snapshot.load_full()) {
        let _ = ready.send(Err(e.join("\n")));
        return;
    }
    let tracker = Rc::new(ConnTracker::default());
    let loops = Rc::new(AcceptLoops {
        loops: Default::default(),
    });
    for (name, sock) in sockets {
        if let Err(e) = loops.start(name.clone(), sock, &worker, &tracker, &shutdown) {
            let _ = ready.send(Err(format!("worker {id}: listener {name}: {e}")));
            return;
        }
    }
    {
        let worker = worker.clone();
        let loops = loops.clone();
        let tracker = tracker.clone();
        let shutdown = shutdown.clone();
        tokio::task::spawn_local(async move {
            use crate::shared::WorkerCmd;
            while let Some(cmd) = commands.recv().await {
                match cmd {
                    WorkerCmd::Prepare { snapshot, reply } => {
                        let _ = reply.send(worker.prepare(&snapshot));
                    }
                    WorkerCmd::Discard { version } => worker.discard(version),
                    WorkerCmd::Published { version } => {
                        let _ = worker.filters_for(version);
                    }
                    WorkerCmd::AddListener { name, socket } => {
                        if let Err(e) =
                            loops.start(name.clone(), socket, &worker, &tracker, &shutdown)
                        {
                            tracing::error!(worker = worker.id, listener = %name, error = %e, "cannot start listener");
                        }
                    }
                    WorkerCmd::RemoveListener { name } => loops.stop(&name),
                }
            }
        });
    }
    let _ = ready.send(Ok(id));
    let _ = shutdown.wait_for(|s| *s).await;
    for l in loops.take_all() {
        let _ = l.await;
    }
    // Draining: connections got the shutdown signal; wait for them up to the drain timeout.
    let drain = shared
        .snapshot
        .load()
        .config
        .listeners
        .iter()
        .map(|l| l.limits.drain_timeout.get())
        .max()
        .unwrap_or(Duration::from_secs(30));
    let wait_idle = async {
        while tracker.open.get() > 0 {
            let n = tracker.idle.notified();
            if tracker.open.get() == 0 {
                break;
            }
            n.await;
        }
    };
    if tokio::time::timeout(drain, wait_idle).await.is_err() {
        tracing::warn!(
            worker = id,
            open = tracker.open.get(),
            "drain timeout: closing remaining connections"
        );
    }
}

async fn accept_loop(
    name: Arc<str>,
    listener: tokio::net::TcpListener,
    worker: Rc<Worker>,
    tracker: Rc<ConnTracker>,
    shutdown: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let mut global = shutdown.clone();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = global.wait_for(|s| *s) => break,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off a little instead of spinning.
                tracing::warn!(listener = %name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        worker.shared.workers[worker.id]
            .accepted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let guard = ConnGuard::new(&tracker);
        let worker = worker.clone();
        let name = name.clone();
        let shutdown = shutdown.clone();
        tokio::task::spawn_local(async move {
            let _guard = guard;
            serve_tcp(tcp, peer, name, worker, shutdown).await;
        });
    }
}

async fn serve_tcp(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    name: Arc<str>,
    worker: Rc<Worker>,
    shutdown: watch::Receiver<bool>,
) {
    let Some(ls) = worker.shared.snapshot.load().listeners.get(&*name).cloned() else {
        return;
    };
    let local = tcp.local_addr().unwrap_or(peer);
    let id = worker.shared.next_connection_id();
    let limits = ls.config.limits.clone();
    let (tcp, activity, socket) = ConnStream::new(tcp);
    match &ls.tls {
        None => {
            let conn = Rc::new(ConnInfo {
                listener: name,
                id,
                peer,
                local,
                tls: None,
                client_ip: crate::http::headers::client_ip_value(peer.ip()),
            });
            crate::http::server::serve(tcp, None, &limits, worker, conn, shutdown, activity).await;
            conn_stream::linger(socket).await;
        }
        Some(cfg) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(cfg.clone());
            let stream =
                match tokio::time::timeout(limits.header_read_timeout.get(), acceptor.accept(tcp))
                    .await
                {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
            let session = stream.get_ref().1;
            let alpn = session
                .alpn_protocol()
                .map(|a| String::from_utf8_lossy(a).into_owned());
            let info = TlsInfo {
                sni: session.server_name().map(str::to_string),
                version: session.protocol_version().map(|v| format!("{v:?}")),
                peer: session
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(crate::tls::peer_identity),
                alpn: alpn.clone(),
            };
            let h2 = Some(alpn.as_deref() == Some("h2"));
            let conn = Rc::new(ConnInfo {
                listener: name,
                id,
                peer,
                local,
                tls: Some(info),
                client_ip: crate::http::headers::client_ip_value(peer.ip()),
            });
            crate::http::server::serve(stream, h2, &limits, worker, conn, shutdown, activity).await;
            conn_stream::linger(socket).await;
        }
    }
}

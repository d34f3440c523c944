//! Shared queues: `proxy_register_shared_queue(name, ret_id)`,
//! `proxy_resolve_shared_queue(vm_id, name, ret_id)`, `proxy_enqueue_shared_queue(id, value)`,
//! `proxy_dequeue_shared_queue(id, ret_value)`. Process-wide, keyed by (vm_id, name); callable
//! from any context. Registering makes the VM's root context a subscriber: every enqueue sends
//! `proxy_on_queue_ready(root_id, queue_id)` to each subscribed VM, on that VM's own worker
//! (a channel drained by a local task). Unknown queue ids are NOT_FOUND; dequeue on an empty
//! queue is EMPTY.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use tokio::sync::mpsc::UnboundedSender;
use wasmtime::Linker;
use wasmtime::Result;

use super::{read, read_string, return_bytes, return_none, status, write_u32, Ctx};
use crate::state::HostState;

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<Vec<u8>>,
    subscribers: Vec<(UnboundedSender<(u32, u32)>, u32)>,
}

#[derive(Debug, Default)]
struct Queues {
    by_name: HashMap<(String, String), u32>,
    queues: HashMap<u32, Queue>,
    next_id: u32,
}

/// The process-wide shared queues.
#[derive(Debug, Default)]
pub struct SharedQueues {
    inner: Mutex<Queues>,
}

/// Dequeue failure.
#[derive(Debug, PartialEq, Eq)]
pub enum DequeueError {
    NotFound,
    Empty,
}

impl SharedQueues {
    /// Register (or join) queue `name` of `vm_id`; `tx`/`root_id` receive ready notifications.
    pub fn register(
        &self,
        vm_id: &str,
        name: &str,
        tx: UnboundedSender<(u32, u32)>,
        root_id: u32,
    ) -> u32 {
        let mut q = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let key = (vm_id.to_string(), name.to_string());
        let id = match q.by_name.get(&key) {
            Some(id) => *id,
            None => {
                q.next_id += 1;
                let id = q.next_id;
                q.by_name.insert(key, id);
                q.queues.insert(id, Queue::default());
                id
            }
        };
        if let Some(queue) = q.queues.get_mut(&id) {
            queue.subscribers.retain(|(t, _)| !t.is_closed());
            if !queue
                .subscribers
                .iter()
                .any(|(t, r)| t.same_channel(&tx) && *r == root_id)
            {
                queue.subscribers.push((tx, root_id));
            }
        }
        id
    }

    /// The id of queue `name` of `vm_id`.
    pub fn resolve(&self, vm_id: &str, name: &str) -> Option<u32> {
        let q = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        q.by_name
            .get(&(vm_id.to_string(), name.to_string()))
            .copied()
    }

    /// Append and notify subscribers; false for an unknown id.
    pub fn enqueue(&self, id: u32, value: Vec<u8>) -> bool {
        let mut q = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Some(queue) = q.queues.get_mut(&id) else {
            return false;
        };
        queue.items.push_back(value);
        queue
            .subscribers
            .retain(|(tx, root)| tx.send((*root, id)).is_ok());
        true
    }

    /// Take the oldest item.
    pub fn dequeue(&self, id: u32) -> Result<Vec<u8>, DequeueError> {
        let mut q = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let queue = q.queues.get_mut(&id).ok_or(DequeueError::NotFound)?;
        queue.items.pop_front().ok_or(DequeueError::Empty)
    }
}

pub(crate) fn add_to_linker(l: &mut Linker<HostState>) -> Result<()> {
    l.func_wrap(
        "env",
        "proxy_register_shared_queue",
        |mut c: Ctx<'_>, np: i32, nl: i32, ret: i32| -> Result<i32> {
            let Some(name) = read_string(&mut c, np, nl)? else {
                return Ok(status::BAD_ARGUMENT);
            };
            let s = c.data();
            let id = s
                .queues
                .register(&s.plugin.spec.vm_id, &name, s.queue_tx.clone(), s.root_id);
            write_u32(&mut c, ret, id)?;
            Ok(status::OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_resolve_shared_queue",
        |mut c: Ctx<'_>, vp: i32, vl: i32, np: i32, nl: i32, ret: i32| -> Result<i32> {
            let (Some(vm_id), Some(name)) =
                (read_string(&mut c, vp, vl)?, read_string(&mut c, np, nl)?)
            else {
                return Ok(status::BAD_ARGUMENT);
            };
            match c.data().queues.resolve(&vm_id, &name) {
                Some(id) => {
                    write_u32(&mut c, ret, id)?;
                    Ok(status::OK)
                }
                None => Ok(status::NOT_FOUND),
            }
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_enqueue_shared_queue",
        |mut c: Ctx<'_>, id: i32, vp: i32, vl: i32| -> Result<i32> {
            let v = read(&mut c, vp, vl)?;
            if c.data().queues.enqueue(id as u32, v) {
                Ok(status::OK)
            } else {
                Ok(status::NOT_FOUND)
            }
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_dequeue_shared_queue",
        |mut c: Ctx<'_>, id: i32, ret_ptr: i32, ret_len: i32| -> Result<i32> {
            match c.data().queues.dequeue(id as u32) {
                Ok(v) => {
                    if v.is_empty() {
                        return_none(&mut c, ret_ptr, ret_len)?;
                    } else {
                        return_bytes(&mut c, &v, ret_ptr, ret_len)?;
                    }
                    Ok(status::OK)
                }
                Err(DequeueError::Empty) => Ok(status::EMPTY),
                Err(DequeueError::NotFound) => Ok(status::NOT_FOUND),
            }
        },
    )?;
    Ok(())
}

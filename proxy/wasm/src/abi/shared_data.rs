//! Shared data: `proxy_get_shared_data(key, ret_value, ret_cas)` and
//! `proxy_set_shared_data(key, value, cas)`. Process-wide (every worker), keyed by the VM's
//! `vm_id`; callable from any context. Every write gives the entry a new non-zero CAS; a set
//! with `cas != 0` that does not match the entry's CAS is CAS_MISMATCH (nothing written); a
//! missing key is NOT_FOUND on get. A set with an empty value DELETES the key (what the
//! proxy-wasm Rust SDK's `remove_shared_data` sends), under the same CAS rule; deleting an
//! absent key is OK. The map lock is held only for the copy.

use foldhash::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use wasmtime::Linker;
use wasmtime::Result;

use super::{return_bytes, return_none, status, with_guest_slices, write_u32, Ctx};
use crate::state::HostState;

/// Entries of one vm_id: key → (value, cas). Keys may carry client input (rate_limit's
/// `header:` keys), so the hash is keyed: foldhash with a per-process random seed (a quarter of
/// SipHash's cost; a rate-limited request hashes twice on get and twice on set).
type VmEntries = HashMap<Vec<u8>, (Vec<u8>, u32)>;

/// The process-wide shared-data store.
#[derive(Debug, Default)]
pub struct SharedData {
    map: Mutex<HashMap<String, VmEntries>>,
    next_cas: AtomicU32,
}

impl SharedData {
    fn cas(&self) -> u32 {
        loop {
            let c = self
                .next_cas
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_add(1);
            if c != 0 {
                return c;
            }
        }
    }

    /// Value and CAS of `key` in `vm_id`.
    pub fn get(&self, vm_id: &str, key: &[u8]) -> Option<(Vec<u8>, u32)> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(vm_id)?.get(key).cloned()
    }

    /// Set `key`; `cas == 0` writes unconditionally. An empty `value` removes the key (same
    /// CAS rule). Returns false on CAS mismatch.
    pub fn set(&self, vm_id: &str, key: &[u8], value: impl AsRef<[u8]>, cas: u32) -> bool {
        let value = value.as_ref();
        if value.is_empty() {
            return self.remove(vm_id, key, cas);
        }
        let new_cas = self.cas();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let Some(vm) = map.get_mut(vm_id) else {
            let mut vm = VmEntries::default();
            vm.insert(key.to_vec(), (value.to_vec(), new_cas));
            map.insert(vm_id.to_string(), vm);
            return true;
        };
        match vm.get_mut(key) {
            Some(entry) => {
                if cas != 0 && entry.1 != cas {
                    return false;
                }
                // Overwritten in place: no allocation when the size does not grow.
                entry.0.clear();
                entry.0.extend_from_slice(value);
                entry.1 = new_cas;
            }
            None => {
                vm.insert(key.to_vec(), (value.to_vec(), new_cas));
            }
        }
        true
    }

    /// Remove `key` if `cas` is 0 or matches its CAS. Removing an absent key succeeds.
    /// Returns false on CAS mismatch (the entry stays).
    pub fn remove(&self, vm_id: &str, key: &[u8], cas: u32) -> bool {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let Some(vm) = map.get_mut(vm_id) else {
            return true;
        };
        match vm.get(key) {
            None => true,
            Some(entry) if cas != 0 && entry.1 != cas => false,
            Some(_) => {
                vm.remove(key);
                if vm.is_empty() {
                    map.remove(vm_id);
                }
                true
            }
        }
    }

    /// Number of keys stored for `vm_id`.
    pub fn len(&self, vm_id: &str) -> usize {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(vm_id).map_or(0, HashMap::len)
    }

    /// True when `vm_id` has no keys.
    pub fn is_empty(&self, vm_id: &str) -> bool {
        self.len(vm_id) == 0
    }
}

pub(crate) fn add_to_linker(l: &mut Linker<HostState>) -> Result<()> {
    l.func_wrap(
        "env",
        "proxy_get_shared_data",
        |mut c: Ctx<'_>,
         kp: i32,
         kl: i32,
         ret_ptr: i32,
         ret_len: i32,
         ret_cas: i32|
         -> Result<i32> {
            let found = with_guest_slices(&mut c, (kp, kl), (0, 0), |key, _, s| {
                s.shared_data.get(&s.plugin.spec.vm_id, key)
            })?;
            match found {
                Some((v, cas)) => {
                    if v.is_empty() {
                        return_none(&mut c, ret_ptr, ret_len)?;
                    } else {
                        return_bytes(&mut c, &v, ret_ptr, ret_len)?;
                    }
                    write_u32(&mut c, ret_cas, cas)?;
                    Ok(status::OK)
                }
                None => Ok(status::NOT_FOUND),
            }
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_set_shared_data",
        |mut c: Ctx<'_>, kp: i32, kl: i32, vp: i32, vl: i32, cas: i32| -> Result<i32> {
            let stored = with_guest_slices(&mut c, (kp, kl), (vp, vl), |key, value, s| {
                s.shared_data
                    .set(&s.plugin.spec.vm_id, key, value, cas as u32)
            })?;
            if stored {
                Ok(status::OK)
            } else {
                Ok(status::CAS_MISMATCH)
            }
        },
    )?;
    Ok(())
}

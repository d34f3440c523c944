//! Swap protocol step 3, on each worker: the VMs of a snapshot version (one per filter, or one
//! per VM group: filters with the same non-empty vm_id, module and VM configuration), each
//! filter's root context with its `proxy_on_vm_start` and `proxy_on_configure`, and the filter
//! chain of every route.
//! A request takes the [`WorkerFilters`] of the snapshot version it started with; the previous
//! version's VMs are dropped (`proxy_on_done`/`proxy_on_delete`) once their last stream ends.

use crate::snapshot::Snapshot;
use std::collections::HashMap;
use std::rc::Rc;
use weir_wasm::{FilterChain, HostServices, PluginVm, VmGroups};

/// The VMs and chains of one snapshot version on one worker.
pub struct WorkerFilters {
    pub version: u64,
    pub vms: HashMap<String, Rc<PluginVm>>,
    /// listener → chain per route index (`None`: the route has no filters). Looked up per
    /// request, so hashed with foldhash rather than SipHash (the keys are config names).
    chains: foldhash::HashMap<String, Vec<Option<FilterChain>>>,
}

impl WorkerFilters {
    /// Instantiates every filter of `snap` on this worker; all errors are returned.
    pub fn prepare(
        snap: &Snapshot,
        services: Rc<dyn HostServices>,
    ) -> Result<WorkerFilters, Vec<String>> {
        let mut vms = HashMap::new();
        let mut errors = Vec::new();
        // Filters with the same non-empty vm_id, module and VM configuration share a VM.
        let mut groups = VmGroups::default();
        let mut names: Vec<&String> = snap.filters.keys().collect();
        names.sort();
        for name in names {
            let plugin = &snap.filters[name];
            match PluginVm::new_in(plugin, services.clone(), &mut groups) {
                Ok(vm) => {
                    vms.insert(name.clone(), vm);
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut chains = foldhash::HashMap::default();
        for (lname, l) in &snap.listeners {
            let per_route = l
                .routes
                .routes
                .iter()
                .map(|r| {
                    (!r.filters.is_empty()).then(|| {
                        FilterChain::new(
                            r.filters
                                .iter()
                                .filter_map(|n| vms.get(n).cloned())
                                .collect(),
                        )
                    })
                })
                .collect();
            chains.insert(lname.clone(), per_route);
        }
        Ok(WorkerFilters {
            version: snap.version,
            vms,
            chains,
        })
    }

    /// The chain of route `index` of `listener`, if it has filters.
    pub fn chain(&self, listener: &str, index: usize) -> Option<&FilterChain> {
        self.chains.get(listener)?.get(index)?.as_ref()
    }
}

//! Issue 5 end to end: hot swaps of the running `weir` binary by file reload, SIGHUP,
//! `POST /reload` and `weir-control`; the zero-drop proof under HTTP/1.1 and HTTP/2 load; old
//! VMs released; and (ignored by default) the swap timing figures.
//!
//! Every test starts real processes (`weir`, `weir-control`) and upstreams on 127.0.0.1 with
//! ephemeral ports and waits on their readiness lines. Modules come from
//! `scripts/build-filters.sh` and the lifecycle guest (`proxy/wasm/tests/guests/lifecycle`).

mod control;
mod measure;
mod release;
mod reload;
mod support;
mod zero_drop;

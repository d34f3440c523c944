//! Metrics: `proxy_define_metric(type, name, ret_id)`, `proxy_increment_metric(id, i64)`,
//! `proxy_record_metric(id, u64)`, `proxy_get_metric(id, ret_u64)`. Callable from any context.
//! Metrics are process-wide by name (all workers and VMs add into the same value) and appear on
//! the admin `/metrics` (see [`crate::metrics::MetricsRegistry::render_prometheus`]).
//! Increment: counters (offset >= 0) and gauges; histograms are BAD_ARGUMENT. Record: sets a
//! counter/gauge, observes a histogram. Get: histograms are BAD_ARGUMENT. Unknown id:
//! NOT_FOUND; unknown type: BAD_ARGUMENT.

use std::sync::Arc;

use wasmtime::Linker;
use wasmtime::Result;

use super::{read_string, status, write_u32, write_u64, Ctx};
use crate::metrics::{FilterMetric, MetricKind};
use crate::state::HostState;

fn lookup(s: &mut HostState, id: u32) -> Option<Arc<FilterMetric>> {
    if let Some(m) = s.metric_cache.get(&id) {
        return Some(m.clone());
    }
    let m = s.metrics.get(id)?;
    s.metric_cache.insert(id, m.clone());
    Some(m)
}

pub(crate) fn add_to_linker(l: &mut Linker<HostState>) -> Result<()> {
    l.func_wrap(
        "env",
        "proxy_define_metric",
        |mut c: Ctx<'_>, t: i32, np: i32, nl: i32, ret: i32| -> Result<i32> {
            let Some(kind) = MetricKind::from_u32(t as u32) else {
                return Ok(status::BAD_ARGUMENT);
            };
            let Some(name) = read_string(&mut c, np, nl)? else {
                return Ok(status::BAD_ARGUMENT);
            };
            let s = c.data_mut();
            let Some((id, m)) = s.metrics.define(kind, &name) else {
                return Ok(status::BAD_ARGUMENT);
            };
            s.metric_cache.insert(id, m);
            write_u32(&mut c, ret, id)?;
            Ok(status::OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_increment_metric",
        |mut c: Ctx<'_>, id: i32, offset: i64| -> Result<i32> {
            let Some(m) = lookup(c.data_mut(), id as u32) else {
                return Ok(status::NOT_FOUND);
            };
            match m.kind {
                MetricKind::Counter if offset < 0 => Ok(status::BAD_ARGUMENT),
                MetricKind::Histogram => Ok(status::BAD_ARGUMENT),
                _ => {
                    m.add(offset);
                    Ok(status::OK)
                }
            }
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_record_metric",
        |mut c: Ctx<'_>, id: i32, value: i64| -> Result<i32> {
            let Some(m) = lookup(c.data_mut(), id as u32) else {
                return Ok(status::NOT_FOUND);
            };
            m.record(value as u64);
            Ok(status::OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_metric",
        |mut c: Ctx<'_>, id: i32, ret: i32| -> Result<i32> {
            let Some(m) = lookup(c.data_mut(), id as u32) else {
                return Ok(status::NOT_FOUND);
            };
            if m.kind == MetricKind::Histogram {
                return Ok(status::BAD_ARGUMENT);
            }
            write_u64(&mut c, ret, m.value() as u64)?;
            Ok(status::OK)
        },
    )?;
    Ok(())
}

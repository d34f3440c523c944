//! What the proxy offers filters on a worker (`weir_wasm::HostServices`): `proxy_http_call` to a
//! cluster by name, through the same pool and balancer as proxied traffic.

use crate::cluster::ClusterState;
use crate::http::proxy::Worker;
use bytes::Bytes;
use http_body_util::BodyExt;
use std::collections::HashMap;
use std::rc::Weak;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_wasm::{HostServices, HttpCallError, HttpCallFuture, HttpCallResponse};

/// The services of one worker's VMs of one snapshot version.
pub struct ProxyServices {
    pub worker: Weak<Worker>,
    /// The clusters of that snapshot (a call made for a request reaches the clusters the
    /// request's own snapshot has, even after a swap).
    pub clusters: HashMap<String, Arc<ClusterState>>,
}

impl HostServices for ProxyServices {
    fn http_call(
        &self,
        cluster: &str,
        request: http::Request<Bytes>,
        timeout: Duration,
    ) -> Result<HttpCallFuture, HttpCallError> {
        let worker = self
            .worker
            .upgrade()
            .ok_or_else(|| HttpCallError::Other("worker stopped".into()))?;
        let c = self
            .clusters
            .get(cluster)
            .cloned()
            .ok_or_else(|| HttpCallError::UnknownCluster(cluster.to_string()))?;
        let pool = worker.pools.pool(&c);
        let (parts, body) = request.into_parts();
        let ctx = crate::cluster::balancer::PickContext {
            headers: &parts.headers,
            source_ip: None,
        };
        let now = Instant::now();
        let ep = c
            .balancer
            .pick(&ctx, &|i| c.available(i, now))
            .ok_or_else(|| {
                HttpCallError::Other(format!("cluster {cluster}: no healthy endpoint"))
            })?;
        let pq = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        let uri = c
            .endpoint_uri(ep, pq)
            .map_err(|e| HttpCallError::Other(e.to_string()))?;
        let mut req = http::Request::new(crate::http::error::full(body));
        *req.method_mut() = parts.method;
        *req.uri_mut() = uri;
        *req.headers_mut() = parts.headers;
        *req.version_mut() = c.http_version();
        Ok(Box::pin(async move {
            let call = async {
                let resp = pool
                    .send(&c, ep, req, &Default::default())
                    .await
                    .map_err(|e| crate::http::error::error_chain(&e))?;
                let status = resp.status().as_u16();
                c.endpoints[ep].stats.inc(status);
                let (rparts, rbody) = resp.into_parts();
                let collected = rbody.collect().await.map_err(|e| e.to_string())?;
                let trailers = collected.trailers().cloned();
                let response = http::Response::from_parts(rparts, collected.to_bytes());
                Ok(HttpCallResponse { response, trailers })
            };
            if timeout.is_zero() {
                call.await
            } else {
                tokio::time::timeout(timeout, call)
                    .await
                    .map_err(|_| "timeout".to_string())?
            }
        }))
    }
}

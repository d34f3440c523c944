//! Upstream clusters: endpoints, load balancers, connection pools, health checks and
//! outlier ejection.

pub mod balancer;
pub mod health;
pub mod outlier;
pub mod ring_hash;

//! `weir bench` and `weir demo` building blocks: an in-process upstream ([`upstream`]), a load
//! generator with HDR latency histograms ([`loadgen`]), and per-thread CPU accounting
//! ([`cpu`]).

pub mod cpu;
pub mod loadgen;
pub mod run;
pub mod upstream;

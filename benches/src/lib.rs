//! Benchmarks. TODO

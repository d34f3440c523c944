//! The weir control plane. TODO

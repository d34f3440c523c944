//! Request routing: compiled matchers (path exact/prefix/regex, method, headers, query, hosts)
//! and weighted splits. Everything is compiled when a snapshot is built; matching allocates nothing.

pub mod matcher;
pub mod split;

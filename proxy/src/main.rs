//! The `weir` binary. See DESIGN.md §4 for the CLI.
fn main() {}

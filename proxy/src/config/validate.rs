//! Semantic validation: TODO(owner: helper)

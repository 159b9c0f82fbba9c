//! berth-registry (placeholder, being written).

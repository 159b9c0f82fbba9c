//! berth-runtime (placeholder, being written).

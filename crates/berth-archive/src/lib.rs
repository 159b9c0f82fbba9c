//! berth-archive (placeholder, being written).

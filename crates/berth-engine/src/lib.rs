//! berth-engine (placeholder, being written).

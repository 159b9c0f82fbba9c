//! berth-dockerfile (placeholder, being written).

//! Filled in by the HAProxy work.

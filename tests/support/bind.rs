//! Filled in by the DNS work.

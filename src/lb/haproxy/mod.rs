//! HAProxy through its runtime API: [`protocol`] is the pure part (command builders that
//! validate every argument, response parsers), [`client`] the socket I/O.

pub mod client;
pub mod protocol;

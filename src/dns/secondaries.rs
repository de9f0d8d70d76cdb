//! What a zone's secondaries serve compared with its primary: after a write, whether and
//! when each served it; in any pass, whether each is behind. Pure data: the targets that
//! know their secondaries ([`super::DnsTarget::secondaries`]) fill it in, the report, the
//! metrics and the audit log read it.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// How one secondary stood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secondary {
    pub addr: SocketAddr,
    /// The primary's SOA serial it was compared with (after the write, for a write).
    pub primary_serial: u32,
    pub state: Served,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Served {
    /// Served the write this long after it ended: its serial caught up and every written
    /// RRset read the same as on the primary.
    After(Duration),
    /// Its serial is the primary's or later (a pass without a write).
    InSync,
    /// Behind: for a write, still so after `waited`; `serial` is what it last answered
    /// (`None`: no usable answer), `why` says how it is behind.
    Lagging {
        waited: Duration,
        serial: Option<u32>,
        why: String,
    },
}

impl Secondary {
    pub fn is_lagging(&self) -> bool {
        matches!(self.state, Served::Lagging { .. })
    }
}

impl fmt::Display for Secondary {
    /// `secondary 127.0.0.1:5301 served the change after 1.2s`, `… lagging: serial 4
    /// (primary has 5) after 2s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "secondary {} ", self.addr)?;
        match &self.state {
            Served::After(after) => write!(f, "served the change after {}", short(*after)),
            Served::InSync => write!(f, "in sync at serial {}", self.primary_serial),
            Served::Lagging { waited, why, .. } if waited.is_zero() => write!(f, "lagging: {why}"),
            Served::Lagging { waited, why, .. } => {
                write!(f, "lagging: {why} after {}", short(*waited))
            }
        }
    }
}

/// A duration to the millisecond, e.g. `1s 204ms`.
fn short(d: Duration) -> humantime::FormattedDuration {
    humantime::format_duration(Duration::from_millis(
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_state_reads_as_a_sentence() {
        let addr: SocketAddr = "127.0.0.1:5301".parse().unwrap();
        let at = |state| Secondary {
            addr,
            primary_serial: 5,
            state,
        };
        assert_eq!(
            at(Served::After(Duration::from_micros(1_204_500))).to_string(),
            "secondary 127.0.0.1:5301 served the change after 1s 204ms"
        );
        assert_eq!(
            at(Served::InSync).to_string(),
            "secondary 127.0.0.1:5301 in sync at serial 5"
        );
        let lagging = at(Served::Lagging {
            waited: Duration::from_secs(2),
            serial: Some(4),
            why: "serial 4 (primary has 5)".into(),
        });
        assert!(lagging.is_lagging());
        assert_eq!(
            lagging.to_string(),
            "secondary 127.0.0.1:5301 lagging: serial 4 (primary has 5) after 2s"
        );
    }
}

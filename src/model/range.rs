//! UDP/TCP port numbers and inclusive port ranges.
//!
//! A [`PortRange`] is what a firewall rule opens: `first..=last`, both in `1..=65535`,
//! `first <= last`. It parses `33001-33010` and `33001` and prints back the same text
//! (a one-port range prints as a single number). Construction never panics: every invalid
//! input is a [`RangeError`] that says what is wrong.
//!
//! ```
//! use udprange::model::PortRange;
//! let r: PortRange = "33001-33010".parse().unwrap();
//! assert_eq!(r.len(), 10);
//! assert!(r.contains(33010) && !r.contains(33011));
//! assert_eq!(r.to_string(), "33001-33010");
//! assert_eq!(PortRange::from_count(33001, 10).unwrap(), r);
//! ```

use std::fmt;
use std::str::FromStr;

/// A transport-layer port number, `1..=65535` once validated.
pub type Port = u16;

/// The highest port number.
pub const MAX_PORT: Port = u16::MAX;

/// Why a port or a range was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("'{0}' is not a port number (expected 1-65535)")]
    NotANumber(String),
    #[error("port 0 is not usable (ports are 1-65535)")]
    PortZero,
    #[error("port {0} is above 65535")]
    AboveMax(u64),
    #[error("range {first}-{last} is reversed (first port above last)")]
    Reversed { first: Port, last: Port },
    #[error("{count} ports from {first} would run past port 65535 (to {end})")]
    Overflow { first: Port, count: u64, end: u64 },
    #[error("a range needs at least one port")]
    Empty,
}

/// In JSON a range is always `{"first": …, "last": …, "ports": …}`; it reads back from that
/// or from its text (`33001-33010`, as scenario files write it).
impl serde::Serialize for PortRange {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        PortBounds::from(*self).serialize(serializer)
    }
}

impl schemars::JsonSchema for PortRange {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "PortRange".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        PortBounds::json_schema(generator)
    }
}

impl<'de> serde::Deserialize<'de> for PortRange {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Written<'a> {
            Text(std::borrow::Cow<'a, str>),
            Bounds { first: Port, last: Port },
        }
        match Written::deserialize(deserializer)? {
            Written::Text(text) => text.parse().map_err(serde::de::Error::custom),
            Written::Bounds { first, last } => {
                PortRange::new(first, last).map_err(serde::de::Error::custom)
            }
        }
    }
}

/// Parses one port number, `1..=65535`.
pub fn parse_port(text: &str) -> Result<Port, RangeError> {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RangeError::NotANumber(text.to_string()));
    }
    // All digits: only overflow of u64 can fail, which is "above 65535" too.
    let value: u64 = text.parse().unwrap_or(u64::MAX);
    match value {
        0 => Err(RangeError::PortZero),
        v if v > u64::from(MAX_PORT) => Err(RangeError::AboveMax(v)),
        v => Ok(v as Port),
    }
}

/// A range as JSON shows it: `{"first": …, "last": …, "ports": …}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct PortBounds {
    pub first: Port,
    pub last: Port,
    pub ports: u32,
}

impl From<PortRange> for PortBounds {
    fn from(r: PortRange) -> Self {
        Self {
            first: r.first(),
            last: r.last(),
            ports: r.len(),
        }
    }
}

impl PortBounds {
    /// Back to a range (the bounds of one are always valid).
    pub fn range(&self) -> Option<PortRange> {
        PortRange::new(self.first, self.last).ok()
    }
}

/// An inclusive range of ports, `first..=last`, never empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    first: Port,
    last: Port,
}

impl PortRange {
    /// The range `first..=last`; rejects port 0 and reversed ranges.
    pub fn new(first: Port, last: Port) -> Result<Self, RangeError> {
        if first == 0 || last == 0 {
            return Err(RangeError::PortZero);
        }
        if first > last {
            return Err(RangeError::Reversed { first, last });
        }
        Ok(Self { first, last })
    }

    /// The range of `count` ports starting at `first`; rejects a count of 0 and a range
    /// that would run past 65535.
    pub fn from_count(first: Port, count: u64) -> Result<Self, RangeError> {
        if first == 0 {
            return Err(RangeError::PortZero);
        }
        if count == 0 {
            return Err(RangeError::Empty);
        }
        let end = u64::from(first).saturating_add(count - 1);
        if end > u64::from(MAX_PORT) {
            return Err(RangeError::Overflow { first, count, end });
        }
        Ok(Self {
            first,
            last: end as Port,
        })
    }

    /// A range of one port.
    pub fn single(port: Port) -> Result<Self, RangeError> {
        Self::new(port, port)
    }

    pub fn first(&self) -> Port {
        self.first
    }

    pub fn last(&self) -> Port {
        self.last
    }

    /// Number of ports in the range (1..=65535).
    pub fn len(&self) -> u32 {
        u32::from(self.last) - u32::from(self.first) + 1
    }

    /// Always false: a range holds at least one port. Present for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn contains(&self, port: Port) -> bool {
        (self.first..=self.last).contains(&port)
    }

    /// The fewest ranges that cover exactly `ports` (in any order, repeats allowed), in
    /// ascending order, e.g. for `33004,33007-33009`.
    pub fn covering(ports: impl IntoIterator<Item = Port>) -> Vec<PortRange> {
        let ports: std::collections::BTreeSet<Port> = ports.into_iter().collect();
        let mut ranges: Vec<PortRange> = Vec::new();
        for port in ports.into_iter().filter(|&p| p != 0) {
            match ranges.last_mut() {
                Some(last) if u32::from(last.last) + 1 == u32::from(port) => last.last = port,
                Some(last) if last.contains(port) => {}
                _ => ranges.push(PortRange {
                    first: port,
                    last: port,
                }),
            }
        }
        ranges
    }

    /// Ports written as the comma-separated ranges they form: `33004,33007-33009`.
    pub fn list(ports: impl IntoIterator<Item = Port>) -> String {
        Self::covering(ports)
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The ports of the range in ascending order.
    pub fn ports(&self) -> impl Iterator<Item = Port> + use<> {
        self.first..=self.last
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad` so that width and alignment flags apply to the whole range.
        if self.first == self.last {
            f.pad(&self.first.to_string())
        } else {
            f.pad(&format!("{}-{}", self.first, self.last))
        }
    }
}

impl FromStr for PortRange {
    type Err = RangeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.split_once('-') {
            Some((first, last)) => Self::new(parse_port(first)?, parse_port(last)?),
            None => Self::single(parse_port(text)?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_back() {
        for text in ["33001-33010", "33001", "1-65535", "65535"] {
            let range: PortRange = text.parse().unwrap();
            assert_eq!(range.to_string(), text);
        }
        let r: PortRange = " 33001 - 33010 ".parse().unwrap();
        assert_eq!((r.first(), r.last(), r.len()), (33001, 33010, 10));
    }

    #[test]
    fn rejects_bad_ranges() {
        assert_eq!("0-10".parse::<PortRange>(), Err(RangeError::PortZero));
        assert_eq!("0".parse::<PortRange>(), Err(RangeError::PortZero));
        assert_eq!(
            "65536".parse::<PortRange>(),
            Err(RangeError::AboveMax(65536))
        );
        assert_eq!(
            "33010-33001".parse::<PortRange>(),
            Err(RangeError::Reversed {
                first: 33010,
                last: 33001
            })
        );
        for text in [
            "",
            "-",
            "a-b",
            "33001-",
            "-33001",
            "1-2-3",
            "+5",
            "99999999999999999999999",
        ] {
            assert!(text.parse::<PortRange>().is_err(), "{text:?} accepted");
        }
    }

    #[test]
    fn count_that_overflows_is_rejected() {
        assert_eq!(
            PortRange::from_count(65530, 7),
            Err(RangeError::Overflow {
                first: 65530,
                count: 7,
                end: 65536
            })
        );
        assert_eq!(PortRange::from_count(65530, 6).unwrap().last(), 65535);
        assert_eq!(PortRange::from_count(33001, 0), Err(RangeError::Empty));
        assert!(PortRange::from_count(1, u64::MAX).is_err());
    }

    #[test]
    fn lists_ports_as_ranges_in_any_order() {
        assert_eq!(
            PortRange::list([33010, 33009, 33001, 33010]),
            "33001,33009-33010"
        );
    }

    #[test]
    fn lists_ports_as_ranges() {
        assert_eq!(
            PortRange::list([33004, 33007, 33008, 33009]),
            "33004,33007-33009"
        );
        assert_eq!(PortRange::list([1, 1, 2, 65535]), "1-2,65535");
        assert_eq!(PortRange::list([]), "");
    }

    #[test]
    fn contains_is_inclusive() {
        let r = PortRange::new(33001, 33010).unwrap();
        assert!(r.contains(33001) && r.contains(33010));
        assert!(!r.contains(33000) && !r.contains(33011));
        assert_eq!(r.ports().count(), 10);
    }
}

//! Quantities with units, as users write them: durations (`90s`, `4m`, `1.5h`, `250ms`),
//! arrival rates (`120/h`, `2/s`, `10/min`), probabilities (`0.001`, `0.1%`), bit rates
//! (`10Mbps`, `200Mbit`, `1Gbps`) and sizes (`1492B`, `64KiB`).
//!
//! Each parses with `FromStr` and prints back in the unit it was written in, so a value read
//! from a flag or a file appears the same in reports. Values are finite and non-negative, in
//! the unit written and in seconds (or bit/s); anything else is an error that quotes the text.
//! How large a value may be is for [`crate::limits`] to say, where the flag or key is known.
//!
//! ```
//! use udprange::units::{Duration, Probability, Rate};
//! let d: Duration = "4m".parse().unwrap();
//! assert_eq!(d.as_secs_f64(), 240.0);
//! assert_eq!(d.to_string(), "4m");
//! let r: Rate = "120/h".parse().unwrap();
//! assert!((r.per_second() - 120.0 / 3600.0).abs() < 1e-12);
//! assert_eq!(r.to_string(), "120/h");
//! let p: Probability = "0.1%".parse().unwrap();
//! assert_eq!(p.value(), 0.001);
//! ```

use std::fmt;
use std::str::FromStr;

/// A unit of time, as written after a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    Nanos,
    Micros,
    Millis,
    Seconds,
    Minutes,
    Hours,
    Days,
}

impl TimeUnit {
    const ALL: [(&'static str, TimeUnit); 10] = [
        ("ns", Self::Nanos),
        ("us", Self::Micros),
        ("ms", Self::Millis),
        ("s", Self::Seconds),
        ("m", Self::Minutes),
        ("min", Self::Minutes),
        ("h", Self::Hours),
        ("d", Self::Days),
        ("sec", Self::Seconds),
        ("hour", Self::Hours),
    ];

    pub fn seconds(self) -> f64 {
        match self {
            Self::Nanos => 1e-9,
            Self::Micros => 1e-6,
            Self::Millis => 1e-3,
            Self::Seconds => 1.0,
            Self::Minutes => 60.0,
            Self::Hours => 3600.0,
            Self::Days => 86400.0,
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            Self::Nanos => "ns",
            Self::Micros => "us",
            Self::Millis => "ms",
            Self::Seconds => "s",
            Self::Minutes => "m",
            Self::Hours => "h",
            Self::Days => "d",
        }
    }

    fn parse(symbol: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .find(|(name, _)| *name == symbol)
            .map(|&(_, unit)| unit)
    }
}

/// Why a quantity did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error("'{0}' is not a duration (examples: 90s, 4m, 1.5h, 250ms)")]
    Duration(String),
    #[error("'{0}' is not a rate (examples: 120/h, 2/s, 10/min)")]
    Rate(String),
    #[error("'{0}' is not a probability strictly between 0 and 1 (examples: 0.001, 0.1%)")]
    Probability(String),
    #[error("'{0}' is not a finite number >= 0")]
    Number(String),
    #[error("'{0}' is not a bit rate (examples: 10Mbps, 200Mbit, 1Gbps, 500kbps)")]
    Bitrate(String),
    #[error(
        "'{0}' is not a size in bytes (examples: 1492B, 500kB, 64KiB, 12MB, 1GiB; KB is ambiguous: write kB for 1000 bytes or KiB for 1024)"
    )]
    ByteSize(String),
}

/// Splits `"1.5h"` into `(1.5, "h")`; the number (plain or `1e-3` style) must be finite and
/// non-negative. Signs are not accepted, so `-5s` is an error rather than a negative time.
fn split_number(text: &str) -> Option<(f64, &str)> {
    let text = text.trim();
    let bytes = text.as_bytes();
    let mut end = bytes
        .iter()
        .position(|b| !(b.is_ascii_digit() || *b == b'.'))
        .unwrap_or(bytes.len());
    // An exponent counts only when digits follow, so "5e" stays "5" with unit "e".
    if bytes
        .get(end)
        .is_some_and(|b| b.eq_ignore_ascii_case(&b'e'))
    {
        let mut exponent = end + 1;
        if matches!(bytes.get(exponent), Some(b'+' | b'-')) {
            exponent += 1;
        }
        let digits = bytes[exponent..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits > 0 {
            end = exponent + digits;
        }
    }
    let value: f64 = text[..end].parse().ok()?;
    (value.is_finite() && value >= 0.0).then_some((value, text[end..].trim()))
}

/// Parses a plain non-negative finite number (for loads in Erlang and counts).
pub fn parse_non_negative(text: &str) -> Result<f64, UnitError> {
    match split_number(text) {
        Some((value, "")) => Ok(value),
        _ => Err(UnitError::Number(text.to_string())),
    }
}

/// A length of time, kept in the unit it was written in.
#[derive(Debug, Clone, Copy)]
pub struct Duration {
    value: f64,
    unit: TimeUnit,
}

impl Duration {
    pub fn from_secs_f64(seconds: f64) -> Self {
        Self {
            value: seconds,
            unit: TimeUnit::Seconds,
        }
    }

    pub fn as_secs_f64(&self) -> f64 {
        self.value * self.unit.seconds()
    }
}

impl PartialEq for Duration {
    fn eq(&self, other: &Self) -> bool {
        self.as_secs_f64() == other.as_secs_f64()
    }
}

impl FromStr for Duration {
    type Err = UnitError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || UnitError::Duration(text.to_string());
        let (value, unit) = split_number(text).ok_or_else(error)?;
        let unit = TimeUnit::parse(unit).ok_or_else(error)?;
        let d = Self { value, unit };
        // `1e308h` is a finite number of hours but no finite number of seconds.
        d.as_secs_f64().is_finite().then_some(d).ok_or_else(error)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.value, self.unit.symbol())
    }
}

/// Events per unit of time, kept in the unit it was written in.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    count: f64,
    per: TimeUnit,
}

impl Rate {
    pub fn per_second(&self) -> f64 {
        self.count / self.per.seconds()
    }
}

impl PartialEq for Rate {
    fn eq(&self, other: &Self) -> bool {
        self.per_second() == other.per_second()
    }
}

impl FromStr for Rate {
    type Err = UnitError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || UnitError::Rate(text.to_string());
        let (count, per) = text.split_once('/').ok_or_else(error)?;
        let count = parse_non_negative(count).map_err(|_| error())?;
        let per = TimeUnit::parse(per.trim()).ok_or_else(error)?;
        let rate = Self { count, per };
        rate.per_second()
            .is_finite()
            .then_some(rate)
            .ok_or_else(error)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, self.per.symbol())
    }
}

/// A probability strictly between 0 and 1, written as a fraction or a percentage.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Probability {
    value: f64,
    percent: bool,
}

impl Probability {
    /// `None` unless `0 < value < 1`.
    pub fn new(value: f64) -> Option<Self> {
        (value > 0.0 && value < 1.0).then_some(Self {
            value,
            percent: false,
        })
    }

    pub fn value(&self) -> f64 {
        self.value
    }
}

impl FromStr for Probability {
    type Err = UnitError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || UnitError::Probability(text.to_string());
        let (value, suffix) = split_number(text).ok_or_else(error)?;
        let (value, percent) = match suffix {
            "" => (value, false),
            "%" => (value / 100.0, true),
            _ => return Err(error()),
        };
        let mut p = Self::new(value).ok_or_else(error)?;
        p.percent = percent;
        Ok(p)
    }
}

impl fmt::Display for Probability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.percent {
            write!(f, "{}%", self.value * 100.0)
        } else {
            write!(f, "{}", self.value)
        }
    }
}

/// A data rate in bits per second, written with a decimal SI prefix: `10Mbps`, `200Mbit`.
#[derive(Debug, Clone, Copy)]
pub struct Bitrate {
    value: f64,
    prefix: &'static str,
}

impl Bitrate {
    const PREFIXES: [(&'static str, f64); 5] =
        [("", 1.0), ("k", 1e3), ("K", 1e3), ("M", 1e6), ("G", 1e9)];

    pub fn bits_per_second(&self) -> f64 {
        self.value * Self::scale(self.prefix)
    }

    fn scale(prefix: &str) -> f64 {
        Self::PREFIXES
            .iter()
            .find(|(p, _)| *p == prefix)
            .map_or(1.0, |&(_, scale)| scale)
    }
}

impl PartialEq for Bitrate {
    fn eq(&self, other: &Self) -> bool {
        self.bits_per_second() == other.bits_per_second()
    }
}

impl FromStr for Bitrate {
    type Err = UnitError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || UnitError::Bitrate(text.to_string());
        let (value, unit) = split_number(text).ok_or_else(error)?;
        let prefix_part = unit
            .strip_suffix("bps")
            .or_else(|| unit.strip_suffix("bit"))
            .ok_or_else(error)?;
        let &(prefix, _) = Self::PREFIXES
            .iter()
            .find(|(p, _)| *p == prefix_part)
            .ok_or_else(error)?;
        let rate = Self { value, prefix };
        rate.bits_per_second()
            .is_finite()
            .then_some(rate)
            .ok_or_else(error)
    }
}

impl fmt::Display for Bitrate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}bps", self.value, self.prefix)
    }
}

/// A size in bytes: `1492B`, `64KiB` (binary prefixes), `1MB` (decimal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize {
    bytes: u64,
    unit: &'static str,
}

impl ByteSize {
    const UNITS: [(&'static str, u64); 7] = [
        ("B", 1),
        ("KiB", 1 << 10),
        ("MiB", 1 << 20),
        ("GiB", 1 << 30),
        ("kB", 1000),
        ("MB", 1_000_000),
        ("GB", 1_000_000_000),
    ];

    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl FromStr for ByteSize {
    type Err = UnitError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || UnitError::ByteSize(text.to_string());
        let (value, unit) = split_number(text).ok_or_else(error)?;
        let &(unit, scale) = Self::UNITS
            .iter()
            .find(|(u, _)| *u == unit)
            .ok_or_else(error)?;
        let bytes = value * scale as f64;
        if bytes.fract() != 0.0 || bytes > u64::MAX as f64 {
            return Err(error());
        }
        Ok(Self {
            bytes: bytes as u64,
            unit,
        })
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (_, scale) = Self::UNITS
            .iter()
            .find(|(u, _)| *u == self.unit)
            .unwrap_or(&("B", 1));
        write!(f, "{}{}", self.bytes as f64 / *scale as f64, self.unit)
    }
}

/// Unit types read from scenario files as strings and written back the same way.
#[macro_export]
#[doc(hidden)]
macro_rules! serde_via_string {
    ($($ty:ty),*) => {$(
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }

        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl schemars::JsonSchema for $ty {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($ty).into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({ "type": "string" })
            }
        }
    )*};
}

crate::serde_via_string!(Duration, Rate, Probability, Bitrate, ByteSize);

/// A number with at most three decimals, without trailing zeros: `5`, `4.975`, `0.5`.
pub fn trim(x: f64) -> String {
    let text = format!("{x:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian; Howard Hinnant's algorithm).
pub fn days_from_civil(year: i32, month: u32, day: u32) -> i64 {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date (year, month, day) of a day count since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    ((yoe + era * 400 + i64::from(month <= 2)) as i32, month, day)
}

/// The year of a Unix time.
pub fn year_of(seconds: i64) -> i32 {
    civil_from_days(seconds.div_euclid(86_400)).0
}

/// A Unix time as `2020-08-21 19:32:07` (the log's clock, taken as UTC).
pub fn format_utc(seconds: f64) -> String {
    if !seconds.is_finite() {
        return "-".into();
    }
    let whole = seconds.floor() as i64;
    let (year, month, day) = civil_from_days(whole.div_euclid(86_400));
    let of_day = whole.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    )
}

/// A Unix time as RFC 3339 in UTC: `2026-11-26T05:05:00Z`.
pub fn rfc3339(seconds: f64) -> String {
    format_utc(seconds).replacen(' ', "T", 1) + "Z"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_trip() {
        for (text, secs) in [
            ("90s", 90.0),
            ("4m", 240.0),
            ("1.5h", 5400.0),
            ("250ms", 0.25),
            ("2d", 172800.0),
        ] {
            let d: Duration = text.parse().unwrap();
            assert_eq!(d.as_secs_f64(), secs, "{text}");
            assert_eq!(d.to_string(), text);
        }
        assert_eq!("10min".parse::<Duration>().unwrap().as_secs_f64(), 600.0);
    }

    #[test]
    fn rates_round_trip() {
        for (text, per_s) in [
            ("2/s", 2.0),
            ("120/h", 120.0 / 3600.0),
            ("10/m", 10.0 / 60.0),
        ] {
            let r: Rate = text.parse().unwrap();
            assert!((r.per_second() - per_s).abs() < 1e-12, "{text}");
            assert_eq!(r.to_string(), text);
        }
        assert_eq!("10/min".parse::<Rate>().unwrap().to_string(), "10/m");
    }

    #[test]
    fn rejects_bad_quantities() {
        for text in [
            "",
            "s",
            "-5s",
            "5",
            "5 parsecs",
            "NaNs",
            "infs",
            "1e400s",
            "1e308h",
            "5e",
        ] {
            assert!(text.parse::<Duration>().is_err(), "{text:?} accepted");
        }
        for text in [
            "",
            "2",
            "2/",
            "/s",
            "-2/s",
            "NaN/s",
            "2/fortnight",
            "1e308/ns",
        ] {
            assert!(text.parse::<Rate>().is_err(), "{text:?} accepted");
        }
        for text in ["0", "1", "1.5", "-0.1", "NaN", "0%", "100%", "abc", "0.1%%"] {
            assert!(text.parse::<Probability>().is_err(), "{text:?} accepted");
        }
        for text in ["-1", "NaN", "inf", "", "1e999", "3x"] {
            assert!(parse_non_negative(text).is_err(), "{text:?} accepted");
        }
    }

    #[test]
    fn scientific_numbers() {
        assert_eq!(parse_non_negative("1e5"), Ok(100000.0));
        assert_eq!("1e-3".parse::<Probability>().unwrap().value(), 0.001);
        assert_eq!("2e3ms".parse::<Duration>().unwrap().as_secs_f64(), 2.0);
    }

    #[test]
    fn probabilities() {
        assert_eq!("0.001".parse::<Probability>().unwrap().value(), 0.001);
        assert_eq!("0.1%".parse::<Probability>().unwrap().to_string(), "0.1%");
    }

    #[test]
    fn bitrates_and_sizes_round_trip() {
        for (text, bps) in [
            ("10Mbps", 1e7),
            ("200Mbit", 2e8),
            ("1Gbps", 1e9),
            ("500kbps", 5e5),
        ] {
            let r: Bitrate = text.parse().unwrap();
            assert_eq!(r.bits_per_second(), bps, "{text}");
        }
        assert_eq!("10Mbps".parse::<Bitrate>().unwrap().to_string(), "10Mbps");
        for bad in ["10", "10Mb", "-1Mbps", "10mbps", "fastbps", "1e308Gbps"] {
            assert!(bad.parse::<Bitrate>().is_err(), "{bad}");
        }
        for (text, bytes) in [("1492B", 1492), ("64KiB", 65536), ("1MB", 1_000_000)] {
            let b: ByteSize = text.parse().unwrap();
            assert_eq!(b.bytes(), bytes, "{text}");
            assert_eq!(b.to_string(), text);
        }
        for bad in ["1492", "1.5B", "1kb", "-3B"] {
            assert!(bad.parse::<ByteSize>().is_err(), "{bad}");
        }
    }
}

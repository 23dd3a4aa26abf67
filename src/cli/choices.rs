//! Flags with a fixed set of values (`--os`, `--format`, `--syntax`, …) and `man COMMAND`.
//!
//! The model's enums stay free of clap: their [`ValueEnum`] impls live here. A flag parses
//! with the model's own `FromStr` (its spellings, case rules and error message are
//! unchanged) through a [`Choice`], which also tells clap the values, so completions offer
//! them and the help and man pages list them.

use std::ffi::OsStr;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Arg, Subcommand, ValueEnum};

use super::args::Command;
use crate::firewall::Side;
use crate::firewall::rules::Syntax;
use crate::firewall::ruleset::Host;
use crate::model::ServerOs;
use crate::plan::logsize::LogSide;
use crate::report::Format;
use crate::scenario::Start;
use crate::workload::spec::Policy;

impl ValueEnum for ServerOs {
    fn value_variants<'a>() -> &'a [Self] {
        &Self::ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.name()))
    }
}

impl ValueEnum for Format {
    fn value_variants<'a>() -> &'a [Self] {
        &[Self::Text, Self::Json, Self::Csv]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(match self {
            Self::Text => "text",
            Self::Json => "json",
            Self::Csv => "csv",
        }))
    }
}

impl ValueEnum for Syntax {
    fn value_variants<'a>() -> &'a [Self] {
        &Self::ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.name()))
    }
}

impl ValueEnum for LogSide {
    fn value_variants<'a>() -> &'a [Self] {
        &[Self::Server, Self::Client]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.name()))
    }
}

impl ValueEnum for Side {
    fn value_variants<'a>() -> &'a [Self] {
        &[Self::Client, Self::Server]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.name()))
    }
}

impl ValueEnum for Host {
    fn value_variants<'a>() -> &'a [Self] {
        &[Self::Client, Self::Router, Self::Server]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.name()))
    }
}

impl ValueEnum for Policy {
    fn value_variants<'a>() -> &'a [Self] {
        &[Self::Fixed, Self::Fair, Self::High, Self::Low]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.name()))
    }
}

impl ValueEnum for Start {
    fn value_variants<'a>() -> &'a [Self] {
        &[Self::Together, Self::Staggered]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(match self {
            Self::Together => "together",
            Self::Staggered => "staggered",
        }))
    }
}

/// The value parser of a flag with a fixed set of values: `parse` reads the text (the
/// model's spellings and errors) and the value must be one of `values`, which clap offers
/// for completion and lists in the help.
#[derive(Clone)]
pub struct Choice<T: 'static> {
    values: &'static [T],
    parse: fn(&str) -> Result<T, String>,
}

impl<T: ValueEnum> Choice<T> {
    /// Every value of `T`.
    pub fn all(parse: fn(&str) -> Result<T, String>) -> Self {
        Self {
            values: T::value_variants(),
            parse,
        }
    }

    /// Only `values` (`audit --format` writes text or json, not csv).
    pub fn only(values: &'static [T], parse: fn(&str) -> Result<T, String>) -> Self {
        Self { values, parse }
    }

    fn names(values: &[T]) -> Vec<String> {
        values
            .iter()
            .filter_map(|v| Some(v.to_possible_value()?.get_name().to_string()))
            .collect()
    }
}

impl<T> TypedValueParser for Choice<T>
where
    T: ValueEnum + PartialEq + Send + Sync + 'static,
{
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&Arg>,
        value: &OsStr,
    ) -> Result<T, clap::Error> {
        let (values, parse) = (self.values, self.parse);
        // Through clap's own parser of a `fn(&str) -> Result`, so errors read as every other
        // flag's: "invalid value 'X' for '--flag <FLAG>': why".
        let restricted = move |text: &str| {
            let value = parse(text)?;
            if values.contains(&value) {
                Ok(value)
            } else {
                Err(format!(
                    "'{text}' is not one of {} here",
                    Self::names(values).join(", ")
                ))
            }
        };
        restricted.parse_ref(cmd, arg, value)
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(
            self.values.iter().filter_map(ValueEnum::to_possible_value),
        ))
    }
}

/// `man COMMAND`: the name of one of udprange's commands. The names come from the command
/// definitions when asked for (not while clap builds them), so a new command gets its page
/// and its completion without a list to keep up to date.
#[derive(Debug, Clone, Copy)]
pub struct CommandName;

impl CommandName {
    pub fn names() -> Vec<String> {
        Command::augment_subcommands(clap::Command::new("udprange"))
            .get_subcommands()
            .map(|c| c.get_name().to_string())
            .collect()
    }
}

impl TypedValueParser for CommandName {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&Arg>,
        value: &OsStr,
    ) -> Result<String, clap::Error> {
        PossibleValuesParser::new(Self::names()).parse_ref(cmd, arg, value)
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(Self::names().into_iter().map(PossibleValue::new)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::BackendName;

    fn values<T: ValueEnum>() -> Vec<String> {
        T::value_variants()
            .iter()
            .map(|v| v.to_possible_value().unwrap().get_name().to_string())
            .collect()
    }

    /// Every value offered is one the model's parser reads back to itself.
    #[test]
    fn offered_values_parse_back() {
        fn check<T>(parse: impl Fn(&str) -> Result<T, String>)
        where
            T: ValueEnum + PartialEq + std::fmt::Debug,
        {
            for (value, name) in T::value_variants().iter().zip(values::<T>()) {
                assert_eq!(parse(&name).as_ref(), Ok(value), "{name}");
            }
        }
        check::<ServerOs>(|t| {
            t.parse()
                .map_err(|e: crate::model::UnknownOs| e.to_string())
        });
        check::<Format>(str::parse);
        check::<Syntax>(str::parse);
        check::<Start>(str::parse);
        check::<Policy>(|t| Policy::parse(t).ok_or_else(|| t.to_string()));
        for side in Side::value_variants() {
            assert_eq!(
                Some(side.name()),
                side.to_possible_value()
                    .map(|v| v.get_name().to_string())
                    .as_deref()
            );
        }
        assert_eq!(
            values::<ServerOs>(),
            ["windows", "macos", "freebsd", "linux"]
        );
        assert_eq!(values::<BackendName>(), ["loopback", "netns"]);
        assert_eq!(values::<Host>(), ["client", "router", "server"]);
    }

    #[test]
    fn command_names_are_the_subcommands() {
        let names = CommandName::names();
        assert_eq!(names.first().map(String::as_str), Some("plan"));
        assert!(names.iter().any(|n| n == "man"), "{names:?}");
        assert!(!names.iter().any(|n| n == "help"), "{names:?}");
    }
}

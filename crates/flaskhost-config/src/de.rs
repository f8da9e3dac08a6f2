//! Serde adapters for [`Options`](crate::Options) fields.
//!
//! Every adapter accepts both the typed form a TOML file or the CLI gives (integer, float,
//! bool, list) and the string form the environment gives (`"4"`, `"true"`, `"30s"`), because
//! environment values reach the merge as strings: converting them by guessing (as figment's
//! own `Env` provider does) would read `FLASKHOST_SOCKET_MODE=660` as decimal 660.
//!
//! Error messages are written for people: the caller prefixes them with the key and the
//! source, so they only quote the value and show examples.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::Serializer;

use crate::parse;

/// `Option<usize>` from an integer or a string of digits.
pub(crate) mod count {
    use super::{Deserializer, Visitor, de, fmt};

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<usize>, D::Error> {
        deserializer.deserialize_any(CountVisitor).map(Some)
    }

    struct CountVisitor;

    impl Visitor<'_> for CountVisitor {
        type Value = usize;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a whole number such as 4")
        }

        fn visit_u64<E: de::Error>(self, value: u64) -> Result<usize, E> {
            usize::try_from(value).map_err(|_| E::custom(format!("{value} is too large")))
        }

        fn visit_i64<E: de::Error>(self, value: i64) -> Result<usize, E> {
            u64::try_from(value).map_or_else(
                |_| {
                    Err(E::custom(format!(
                        "{value} is negative; expected a whole number ≥ 0"
                    )))
                },
                |value| self.visit_u64(value),
            )
        }

        fn visit_str<E: de::Error>(self, value: &str) -> Result<usize, E> {
            value
                .trim()
                .parse::<usize>()
                .map_err(|_| E::custom(format!("{value:?} is not a whole number (example: 4)")))
        }
    }
}

/// `Option<bool>` from a bool, `0`/`1`, or a string: `true`/`false`, `yes`/`no`, `on`/`off`,
/// `1`/`0` (case-insensitive), the spellings people use in environment files.
pub(crate) mod flag {
    use super::{Deserializer, Visitor, de, fmt};

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<bool>, D::Error> {
        deserializer.deserialize_any(FlagVisitor).map(Some)
    }

    struct FlagVisitor;

    impl Visitor<'_> for FlagVisitor {
        type Value = bool;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("true or false")
        }

        fn visit_bool<E: de::Error>(self, value: bool) -> Result<bool, E> {
            Ok(value)
        }

        fn visit_u64<E: de::Error>(self, value: u64) -> Result<bool, E> {
            match value {
                0 => Ok(false),
                1 => Ok(true),
                _ => Err(E::custom(format!(
                    "{value} is not true or false (examples: true, false, 1, 0)"
                ))),
            }
        }

        fn visit_i64<E: de::Error>(self, value: i64) -> Result<bool, E> {
            u64::try_from(value).map_or_else(
                |_| {
                    Err(E::custom(format!(
                        "{value} is not true or false (examples: true, false, 1, 0)"
                    )))
                },
                |value| self.visit_u64(value),
            )
        }

        fn visit_str<E: de::Error>(self, value: &str) -> Result<bool, E> {
            match value.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "1" => Ok(true),
                "false" | "no" | "off" | "0" => Ok(false),
                _ => Err(E::custom(format!(
                    "{value:?} is not true or false (examples: true, false, yes, no, 1, 0)"
                ))),
            }
        }
    }
}

/// `Option<Duration>` from whole or fractional seconds, or a string [`parse::parse_duration`]
/// reads. Serialized as a string that parses back exactly.
pub(crate) mod duration {
    use super::{Deserializer, Duration, Serializer, Visitor, de, fmt, parse};

    // Serde's `with` hands the field by reference, so the signature must take `&Option`.
    #[allow(clippy::ref_option)]
    pub(crate) fn serialize<S: Serializer>(
        value: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(duration) => serializer.serialize_str(&parse::format_duration(*duration)),
            None => serializer.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        deserializer.deserialize_any(DurationVisitor).map(Some)
    }

    struct DurationVisitor;

    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration (examples: 30, 30s, 500ms, 1m30s)")
        }

        fn visit_u64<E: de::Error>(self, value: u64) -> Result<Duration, E> {
            Ok(Duration::from_secs(value))
        }

        fn visit_i64<E: de::Error>(self, value: i64) -> Result<Duration, E> {
            u64::try_from(value).map_or_else(
                |_| {
                    Err(E::custom(format!(
                        "{value} is negative; a duration cannot be"
                    )))
                },
                |value| self.visit_u64(value),
            )
        }

        fn visit_f64<E: de::Error>(self, value: f64) -> Result<Duration, E> {
            Duration::try_from_secs_f64(value).map_err(|_| {
                E::custom(format!(
                    "{value} is not a duration (examples: 30, 30s, 500ms, 1m30s)"
                ))
            })
        }

        fn visit_str<E: de::Error>(self, value: &str) -> Result<Duration, E> {
            parse::parse_duration(value).map_err(E::custom)
        }
    }
}

/// `Option<u64>` byte counts from an integer or a string [`parse::parse_size`] reads.
pub(crate) mod size {
    use super::{Deserializer, Visitor, de, fmt, parse};

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<u64>, D::Error> {
        deserializer.deserialize_any(SizeVisitor).map(Some)
    }

    struct SizeVisitor;

    impl Visitor<'_> for SizeVisitor {
        type Value = u64;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a size (examples: 65536, 64k, 64KiB, 10M, 1G)")
        }

        fn visit_u64<E: de::Error>(self, value: u64) -> Result<u64, E> {
            Ok(value)
        }

        fn visit_i64<E: de::Error>(self, value: i64) -> Result<u64, E> {
            u64::try_from(value)
                .map_err(|_| E::custom(format!("{value} is negative; a size cannot be")))
        }

        fn visit_str<E: de::Error>(self, value: &str) -> Result<u64, E> {
            parse::parse_size(value).map_err(E::custom)
        }
    }
}

/// `Option<u32>` permission bits: an integer is the mode itself (TOML `0o660`), a string is
/// octal (`"660"`, `"0660"`, `"0o660"`), because that is how `chmod` and uWSGI spell it.
pub(crate) mod socket_mode {
    use super::{Deserializer, Visitor, de, fmt, parse};

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<u32>, D::Error> {
        deserializer.deserialize_any(ModeVisitor).map(Some)
    }

    struct ModeVisitor;

    impl Visitor<'_> for ModeVisitor {
        type Value = u32;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an octal permission (examples: \"660\", \"0660\", 0o660)")
        }

        fn visit_u64<E: de::Error>(self, value: u64) -> Result<u32, E> {
            parse::check_socket_mode(value).map_err(E::custom)
        }

        fn visit_i64<E: de::Error>(self, value: i64) -> Result<u32, E> {
            u64::try_from(value).map_or_else(
                |_| {
                    Err(E::custom(format!(
                        "{value} is negative; expected an octal permission"
                    )))
                },
                |value| self.visit_u64(value),
            )
        }

        fn visit_str<E: de::Error>(self, value: &str) -> Result<u32, E> {
            parse::parse_socket_mode(value).map_err(E::custom)
        }
    }
}

/// `Option<String>` naming a user or group: a string, or an integer (a numeric id, as TOML
/// `uid = 33` writes it), kept as text; [`parse::parse_account`] reads it.
pub(crate) mod account {
    use super::{Deserializer, Visitor, de, fmt};

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<String>, D::Error> {
        deserializer.deserialize_any(AccountVisitor).map(Some)
    }

    struct AccountVisitor;

    impl Visitor<'_> for AccountVisitor {
        type Value = String;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a name or a numeric id (examples: \"www-data\", 33)")
        }

        fn visit_u64<E: de::Error>(self, value: u64) -> Result<String, E> {
            Ok(value.to_string())
        }

        fn visit_i64<E: de::Error>(self, value: i64) -> Result<String, E> {
            Ok(value.to_string())
        }

        fn visit_str<E: de::Error>(self, value: &str) -> Result<String, E> {
            Ok(value.to_owned())
        }
    }
}

/// `Option<Vec<String>>` from a list of strings or a single string (one item). The
/// environment's comma-separated form is split before it reaches here, where the source is
/// known, so a string from a file is never split.
pub(crate) mod string_list {
    use super::{Deserializer, SeqAccess, Visitor, de, fmt};

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Vec<String>>, D::Error> {
        deserializer.deserialize_any(ListVisitor).map(Some)
    }

    struct ListVisitor;

    impl<'de> Visitor<'de> for ListVisitor {
        type Value = Vec<String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of strings or a single string")
        }

        fn visit_str<E: de::Error>(self, value: &str) -> Result<Vec<String>, E> {
            Ok(vec![value.to_owned()])
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
            let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            while let Some(item) = seq.next_element::<String>()? {
                items.push(item);
            }
            Ok(items)
        }
    }
}

/// `Option<Vec<StaticMountOptions>>` from a list whose items are `URL=PATH` strings or
/// tables, or from a single string or table (one mount).
pub(crate) mod static_list {
    use serde::Deserialize as _;
    use serde::de::value::MapAccessDeserializer;

    use super::{Deserializer, SeqAccess, Visitor, de, fmt};
    use crate::edge::{StaticMountOptions, StaticMountTable};

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Vec<StaticMountOptions>>, D::Error> {
        deserializer.deserialize_any(ListVisitor).map(Some)
    }

    struct ListVisitor;

    impl<'de> Visitor<'de> for ListVisitor {
        type Value = Vec<StaticMountOptions>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of mounts (\"/static=./static\" or { url = ..., path = ... })")
        }

        fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
            Ok(vec![StaticMountOptions::parse(value).map_err(E::custom)?])
        }

        fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            let table = StaticMountTable::deserialize(MapAccessDeserializer::new(map))?;
            Ok(vec![table.into()])
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element::<StaticMountOptions>()? {
                items.push(item);
            }
            Ok(items)
        }
    }
}

/// `Option<Vec<String>>` of `Name: value` headers, from a list of such strings, a single
/// string, or a table `{ Name = "value" }` (converted to the string form).
pub(crate) mod header_list {
    use super::{Deserializer, SeqAccess, Visitor, de, fmt};

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Vec<String>>, D::Error> {
        deserializer.deserialize_any(HeaderVisitor).map(Some)
    }

    struct HeaderVisitor;

    impl<'de> Visitor<'de> for HeaderVisitor {
        type Value = Vec<String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of \"Name: value\" strings or a table { Name = \"value\" }")
        }

        fn visit_str<E: de::Error>(self, value: &str) -> Result<Vec<String>, E> {
            Ok(vec![value.to_owned()])
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element::<String>()? {
                items.push(item);
            }
            Ok(items)
        }

        fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Vec<String>, A::Error> {
            let mut items = Vec::new();
            while let Some((name, value)) = map.next_entry::<String, String>()? {
                items.push(format!("{name}: {value}"));
            }
            Ok(items)
        }
    }
}

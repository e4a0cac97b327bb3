//! JSON read one way: an object whose member names repeat, at any depth, is an error, never
//! "last one wins", so no other parser can read a different value from the same bytes. Used
//! for the JOSE header and claims of OIDC tokens and for the payload of upload tokens.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::shorten;

/// Longest member name echoed in an error, in characters.
const MAX_ECHO_CHARS: usize = 64;

/// Parses one JSON object whose objects, at every depth, have unique member names.
pub fn object(bytes: &[u8]) -> Result<Map<String, Value>, serde_json::Error> {
    serde_json::from_slice::<UniqueObject>(bytes).map(|o| o.0)
}

/// The top level: an object.
struct UniqueObject(Map<String, Value>);

impl<'de> Deserialize<'de> for UniqueObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match deserializer.deserialize_map(UniqueVisitor)? {
            Value::Object(map) => Ok(UniqueObject(map)),
            _ => Err(de::Error::custom("expected a JSON object")),
        }
    }
}

/// Any value below it.
struct UniqueValue(Value);

impl<'de> Deserialize<'de> for UniqueValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UniqueVisitor).map(UniqueValue)
    }
}

/// Builds a [`Value`], failing on the first object with a repeated member name.
struct UniqueVisitor;

impl<'de> Visitor<'de> for UniqueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number out of range"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(UniqueValue(item)) = access.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(name) = access.next_key::<String>()? {
            if map.contains_key(&name) {
                return Err(de::Error::custom(format_args!(
                    "duplicate member {:?}",
                    shorten(&name, MAX_ECHO_CHARS)
                )));
            }
            let UniqueValue(value) = access.next_value()?;
            map.insert(name, value);
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_refused_at_every_depth_and_values_kept() {
        let ok = object(br#"{"a": 1, "b": [{"c": true}, null, "s", -2, 1.5], "d": {"e": {"f": 0}}}"#).expect("ok");
        assert_eq!(
            Value::Object(ok),
            serde_json::json!({"a": 1, "b": [{"c": true}, null, "s", -2, 1.5], "d": {"e": {"f": 0}}})
        );
        for bad in [
            &br#"{"a": 1, "a": 2}"#[..],
            br#"{"a": {"b": 1, "b": 1}}"#,
            br#"{"a": [{"b": 1}, {"c": 1, "c": 2}]}"#,
            br#"{"a\u0062": 1, "ab": 2}"#,
        ] {
            let err = object(bad).expect_err(&String::from_utf8_lossy(bad));
            assert!(err.to_string().contains("duplicate member"), "{err}");
        }
        assert!(object(b"[1]").is_err());
        assert!(object(b"{} {}").is_err());
    }
}

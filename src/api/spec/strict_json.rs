//! JSON parsing that refuses duplicate object keys. serde_json keeps the last of duplicate
//! keys silently; for an API spec that is an ambiguity worth refusing (`{"stmId":"a",…,
//! "stmId":"b"}` means different streams to different parsers, e.g. a validating proxy).

use std::cell::RefCell;
use std::fmt;

use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Why a body is not acceptable JSON.
#[derive(Debug, PartialEq, Eq)]
pub enum JsonError {
    /// Not JSON (message with line and column).
    Malformed(String),
    /// A key appears twice in one object; the path of the second (dotted, `[i]` for arrays).
    Duplicate(String),
}

/// Parses one JSON value (nothing but whitespace after it), refusing duplicate keys.
pub fn parse_strict(body: &[u8]) -> Result<Value, JsonError> {
    let duplicate = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(body);
    let seed = Strict {
        path: String::new(),
        duplicate: &duplicate,
    };
    let value = seed.deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    match (value, duplicate.into_inner()) {
        (_, Some(path)) => Err(JsonError::Duplicate(path)),
        (Ok(v), None) => Ok(v),
        (Err(e), None) => Err(JsonError::Malformed(e.to_string())),
    }
}

/// A `Value` deserializer that knows where it is and reports duplicates through `duplicate`.
struct Strict<'a> {
    path: String,
    duplicate: &'a RefCell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element_seed(Strict {
            path: format!("{}[{}]", self.path, items.len()),
            duplicate: self.duplicate,
        })? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut obj = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = if self.path.is_empty() {
                key.clone()
            } else {
                format!("{}.{key}", self.path)
            };
            if obj.contains_key(&key) {
                *self.duplicate.borrow_mut() = Some(path);
                return Err(A::Error::custom("duplicate key"));
            }
            let value = map.next_value_seed(Strict {
                path,
                duplicate: self.duplicate,
            })?;
            obj.insert(key, value);
        }
        Ok(Value::Object(obj))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_value_as_serde_json() {
        let body = br#"{"a":[1,-2,3.5,"x",null,true,{"b":{}}],"c":"\u00e9"}"#;
        let expected: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(parse_strict(body).unwrap(), expected);
    }

    #[test]
    fn duplicates_are_refused_with_their_path() {
        assert_eq!(
            parse_strict(br#"{"stmId":"a","stmId":"b"}"#),
            Err(JsonError::Duplicate("stmId".into()))
        );
        assert_eq!(
            parse_strict(br#"{"x":[{"k":1},{"k":1,"k":2}]}"#),
            Err(JsonError::Duplicate("x[1].k".into()))
        );
    }

    #[test]
    fn malformed_and_trailing_input() {
        match parse_strict(b"{\"a\":\n}") {
            Err(JsonError::Malformed(m)) => assert!(m.contains("line 2 column 1"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_strict(b"{} x"),
            Err(JsonError::Malformed(m)) if m.contains("trailing")
        ));
    }
}

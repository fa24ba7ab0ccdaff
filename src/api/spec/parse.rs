//! Request body → [`StreamRequest`], with problems that name the field at fault.
//!
//! serde's own errors do not say *where* a wrong type is ("invalid type: integer, expected a
//! string at line 1 column 40"), so the body is parsed to a JSON value first and walked against
//! a small schema mirroring [`StreamRequest`]: unknown fields, missing fields and wrong types
//! are reported with their path. Only then is it deserialized (which the walk guarantees to
//! succeed; a failure would be reported without a field) and validated.
//!
//! Duplicate keys are refused (`strict_json.rs`). Unknown fields are rejected inside `iceServers` entries too, although the shared
//! [`IceServer`](crate::config::IceServer) type itself accepts them.

use serde_json::{Map, Value};

use crate::api::problem::{truncate, Problem};

use super::strict_json::{parse_strict, JsonError};
use super::{check, StreamRequest};

/// The JSON type a field must have.
enum Kind {
    Str,
    /// A non-negative integer up to `max` (the Rust field's type limit).
    Int(u64),
    /// One of these strings.
    Enum(&'static [&'static str]),
    /// An object of strings.
    StrMap,
    List(&'static Kind),
    Object(&'static [Field]),
}

struct Field {
    name: &'static str,
    kind: Kind,
    required: bool,
}

const fn opt(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        required: false,
    }
}

const fn req(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        required: true,
    }
}

const ICE_SERVER: &[Field] = &[
    req("urls", Kind::List(&Kind::Str)),
    opt("username", Kind::Str),
    opt("credential", Kind::Str),
];

const OUTPUT: &[Field] = &[
    opt("sampleRate", Kind::Int(u32::MAX as u64)),
    opt("channels", Kind::Int(u16::MAX as u64)),
    opt("chunkMs", Kind::Int(u32::MAX as u64)),
    opt("envelope", Kind::Enum(&["seed", "extended", "binary"])),
    opt("wsMode", Kind::Enum(&["per-stream", "shared"])),
];

const STREAM: &[Field] = &[
    req("stmId", Kind::Str),
    req("whepUrl", Kind::Str),
    opt("traceId", Kind::Str),
    opt("wsUrl", Kind::Str),
    opt("wsHeaders", Kind::StrMap),
    opt("whepToken", Kind::Str),
    opt("iceServers", Kind::List(&Kind::Object(ICE_SERVER))),
    opt("output", Kind::Object(OUTPUT)),
];

/// Parses and validates a stream spec body.
///
/// `path_stm_id` is the `{stmId}` of `PUT /v1/streams/{stmId}` (None for `POST`). The path
/// names the resource, so it wins: a body without `stmId` gets the path's, a body with a
/// different `stmId` is refused (problem on `stmId`) rather than silently creating or
/// replacing another stream than the one addressed.
pub fn parse_stream_request(
    body: &[u8],
    path_stm_id: Option<&str>,
) -> Result<StreamRequest, Problem> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Problem::bad_request(None, "the request body is empty"));
    }
    let mut value = parse_strict(body).map_err(|e| match e {
        JsonError::Malformed(m) => Problem::bad_request(None, format!("malformed JSON: {m}")),
        JsonError::Duplicate(path) => {
            Problem::bad_request(Some(&path), "duplicate key in the JSON object")
        }
    })?;
    let Some(obj) = value.as_object_mut() else {
        return Err(Problem::bad_request(
            None,
            format!("the body must be a JSON object, got {}", type_name(&value)),
        ));
    };
    if let Some(path_id) = path_stm_id {
        check::check_id(path_id)
            .map_err(|m| Problem::bad_request(Some("stmId"), format!("path stmId {m}")))?;
        match obj.get("stmId") {
            None | Some(Value::Null) => {
                obj.insert("stmId".to_owned(), Value::String(path_id.to_owned()));
            }
            Some(Value::String(body_id)) if body_id != path_id => {
                return Err(Problem::bad_request(
                    Some("stmId"),
                    format!(
                        "body stmId {:?} does not match the path's {path_id:?}",
                        truncate(body_id, 64)
                    ),
                ))
            }
            Some(_) => {}
        }
    }
    check_object(obj, STREAM, "")?;
    let req: StreamRequest = serde_json::from_value(value)
        .map_err(|e| Problem::bad_request(None, format!("invalid stream spec: {e}")))?;
    req.validate()?;
    Ok(req)
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn check_object(obj: &Map<String, Value>, fields: &[Field], path: &str) -> Result<(), Problem> {
    if let Some(unknown) = obj.keys().find(|k| !fields.iter().any(|f| f.name == *k)) {
        let known: Vec<&str> = fields.iter().map(|f| f.name).collect();
        return Err(Problem::bad_request(
            Some(&join(path, unknown)),
            format!(
                "unknown field {:?} (expected one of: {})",
                truncate(unknown, 64),
                known.join(", ")
            ),
        ));
    }
    for field in fields {
        let at = join(path, field.name);
        match obj.get(field.name) {
            None | Some(Value::Null) if field.required => {
                return Err(Problem::bad_request(
                    Some(&at),
                    "missing required field".to_owned(),
                ))
            }
            None | Some(Value::Null) => {}
            Some(v) => check_value(v, &field.kind, &at)?,
        }
    }
    Ok(())
}

fn check_value(v: &Value, kind: &Kind, at: &str) -> Result<(), Problem> {
    let wrong = |expected: String| {
        Problem::bad_request(
            Some(at),
            format!("expected {expected}, got {}", type_name(v)),
        )
    };
    match kind {
        Kind::Str if v.is_string() => Ok(()),
        Kind::Str => Err(wrong("a string".to_owned())),
        Kind::Int(max) => match v.as_u64() {
            Some(n) if n <= *max => Ok(()),
            _ => Err(wrong(format!("an integer from 0 to {max}"))),
        },
        Kind::Enum(names) => match v.as_str() {
            Some(s) if names.contains(&s) => Ok(()),
            Some(s) => Err(Problem::bad_request(
                Some(at),
                format!(
                    "unknown value {:?} (expected one of: {})",
                    truncate(s, 32),
                    names.join(", ")
                ),
            )),
            None => Err(wrong(format!("one of: {}", names.join(", ")))),
        },
        Kind::StrMap => {
            let obj = v
                .as_object()
                .ok_or_else(|| wrong("an object of strings".to_owned()))?;
            for (k, item) in obj {
                if !item.is_string() {
                    return Err(Problem::bad_request(
                        Some(&join(at, k)),
                        format!("expected a string, got {}", type_name(item)),
                    ));
                }
            }
            Ok(())
        }
        Kind::List(item_kind) => {
            let items = v.as_array().ok_or_else(|| wrong("an array".to_owned()))?;
            for (i, item) in items.iter().enumerate() {
                check_value(item, item_kind, &format!("{at}[{i}]"))?;
            }
            Ok(())
        }
        Kind::Object(fields) => {
            let obj = v.as_object().ok_or_else(|| wrong("an object".to_owned()))?;
            check_object(obj, fields, at)
        }
    }
}

#[cfg(test)]
mod tests;

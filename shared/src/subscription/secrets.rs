//! A record's signing secrets: `secrets` (1 to MAX_SECRETS) or a single `secret`, each a
//! `whsec_` secret. No error ever echoes one.

use serde_json::{Map, Value};

use super::*;

pub(super) fn parse_secrets(ctx: &Ctx, item: &Map<String, Value>) -> Result<Vec<Secret>, RecordError> {
    let parse_one = |field: String, v: &Value| -> Result<Secret, RecordError> {
        match v {
            Value::String(s) => Secret::parse(s).map_err(|e: SecretError| ctx.err(&field, e.to_string())),
            other => Err(ctx.err(&field, format!("must be a string, got {}", json_kind(other)))),
        }
    };
    match (item.get("secrets"), item.get("secret")) {
        (Some(_), Some(_)) => Err(ctx.err("secrets", "give either `secrets` or `secret`, not both")),
        (Some(v), None) => {
            let decoded = decode_json_text(v);
            let list = as_list(v, &decoded)
                .ok_or_else(|| ctx.err("secrets", format!("must be a list of strings, got {}", json_kind(v))))?;
            if list.is_empty() || list.len() > MAX_SECRETS {
                return Err(ctx.err(
                    "secrets",
                    format!("has {} entries; 1 to {MAX_SECRETS} are required", list.len()),
                ));
            }
            list.iter()
                .enumerate()
                .map(|(i, s)| parse_one(format!("secrets[{i}]"), s))
                .collect()
        }
        (None, Some(v)) => Ok(vec![parse_one("secret".into(), v)?]),
        (None, None) => Err(ctx.err("secrets", "is missing (give `secrets` as a list, or `secret`)")),
    }
}

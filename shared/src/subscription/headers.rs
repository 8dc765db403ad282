//! A record's static `headers`: at most MAX_HEADERS, MAX_HEADER_BYTES in all, never a transport
//! header or a `webhook-*` one.

use http::header::{HeaderName, HeaderValue};

use serde_json::Value;

use super::*;

/// Headers a subscription may not set: the transport's own, and (by prefix, below) every
/// `webhook-*` name, the Standard Webhooks contract's namespace.
const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
    "connection",
    "user-agent",
];

pub(super) fn parse_headers(ctx: &Ctx, v: Option<&Value>) -> Result<Vec<(HeaderName, HeaderValue)>, RecordError> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let decoded = decode_json_text(v);
    let map = as_map(v, &decoded).ok_or_else(|| {
        ctx.err(
            "headers",
            format!("must be a map of name to value, got {}", json_kind(v)),
        )
    })?;
    if map.len() > MAX_HEADERS {
        return Err(ctx.err(
            "headers",
            format!("has {} entries; at most {MAX_HEADERS} are allowed", map.len()),
        ));
    }
    let bytes: usize = map.iter().map(|(k, v)| k.len() + v.as_str().map_or(0, str::len)).sum();
    if bytes > MAX_HEADER_BYTES {
        return Err(ctx.err(
            "headers",
            format!("names and values add up to {bytes} bytes; at most {MAX_HEADER_BYTES} are allowed"),
        ));
    }
    let mut out = Vec::with_capacity(map.len());
    for (name, value) in map {
        let field = format!("headers.{name}");
        let header =
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| ctx.err(&field, "is not a valid header name"))?;
        if RESERVED_HEADERS.contains(&header.as_str()) || header.as_str().starts_with("webhook-") {
            return Err(ctx.err(&field, "is set by the webhook sender and cannot be overridden"));
        }
        let text = value
            .as_str()
            .ok_or_else(|| ctx.err(&field, format!("must be a string, got {}", json_kind(value))))?;
        let mut value = HeaderValue::from_str(text).map_err(|_| ctx.err(&field, "is not a valid header value"))?;
        value.set_sensitive(true);
        out.push((header, value));
    }
    Ok(out)
}

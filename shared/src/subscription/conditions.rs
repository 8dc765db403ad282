//! A record's conditions: `balance_low`, `delivery_rate_low` and `bounce_rate_high`, and the
//! receiver's `rate_limit`. Each error names its field.

use serde_json::Value;

use super::*;

pub(super) fn parse_balance_low(ctx: &Ctx, v: Option<&Value>) -> Result<Option<BalanceLow>, RecordError> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let decoded = decode_json_text(v);
    let map = object(ctx, "balance_low", v, &decoded)?;
    let threshold = number(ctx, "balance_low.threshold", map.get("threshold"))?
        .ok_or_else(|| ctx.err("balance_low.threshold", "is required"))?;
    let rearm_above = number(ctx, "balance_low.rearm_above", map.get("rearm_above"))?.unwrap_or(threshold);
    if rearm_above < threshold {
        return Err(ctx.err(
            "balance_low.rearm_above",
            format!("({rearm_above}) must be at least the threshold ({threshold})"),
        ));
    }
    Ok(Some(BalanceLow { threshold, rearm_above }))
}

/// The highest `rate_limit` a record may ask for, in requests per second.
pub const MAX_RATE_LIMIT: f64 = 10_000.0;

pub(super) fn parse_rate_limit(ctx: &Ctx, v: Option<&Value>) -> Result<Option<f64>, RecordError> {
    let Some(rate) = number(ctx, "rate_limit", v)? else {
        return Ok(None);
    };
    if !(rate > 0.0 && rate <= MAX_RATE_LIMIT) {
        return Err(ctx.err(
            "rate_limit",
            format!(
                "must be a number of requests per second above 0 and at most {MAX_RATE_LIMIT} \
                 (fractions allowed: 0.5 is one request every 2 s), got {rate}"
            ),
        ));
    }
    Ok(Some(rate))
}

pub(super) fn parse_rate_alert(ctx: &Ctx, name: &str, v: Option<&Value>) -> Result<Option<RateAlert>, RecordError> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let decoded = decode_json_text(v);
    let map = object(ctx, name, v, &decoded)?;
    let field = |f: &str| format!("{name}.{f}");
    let threshold = number(ctx, &field("threshold"), map.get("threshold"))?
        .ok_or_else(|| ctx.err(&field("threshold"), "is required"))?;
    if !(threshold > 0.0 && threshold < 1.0) {
        return Err(ctx.err(
            &field("threshold"),
            format!("must be a fraction between 0 and 1 (0.9 for 90%), got {threshold}"),
        ));
    }
    Ok(Some(RateAlert {
        threshold,
        window_minutes: whole(ctx, &field("window_minutes"), map.get("window_minutes"), 60, 1..=1440)?,
        min_samples: whole(ctx, &field("min_samples"), map.get("min_samples"), 50, 1..=1_000_000)?,
        cooldown_minutes: whole(
            ctx,
            &field("cooldown_minutes"),
            map.get("cooldown_minutes"),
            60,
            0..=10_080,
        )?,
    }))
}

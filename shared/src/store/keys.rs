//! Every key of the State table, in one place. Each key carries the account, and each part is
//! escaped (`%` as `%25`, `#` as `%23`) before the parts are joined with `#`, so ids that contain
//! `#` can never make two different keys equal (`contact#a#b#c` is ambiguous; `contact#a%23b#c`
//! is not).

use std::borrow::Cow;

/// The primary key of one State item.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Key {
    pub pk: String,
    pub sk: String,
}

impl Key {
    pub fn new(pk: impl Into<String>, sk: impl Into<String>) -> Self {
        Key {
            pk: pk.into(),
            sk: sk.into(),
        }
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.pk, self.sk)
    }
}

/// One key part, escaped.
pub fn part(id: &str) -> Cow<'_, str> {
    if id.contains(['%', '#']) {
        Cow::Owned(id.replace('%', "%25").replace('#', "%23"))
    } else {
        Cow::Borrowed(id)
    }
}

fn join(kind: &str, ids: &[&str]) -> String {
    let mut out = String::from(kind);
    for id in ids {
        out.push('#');
        out.push_str(&part(id));
    }
    out
}

/// The last status applied to a message (sms).
pub fn message_status(account: &str, message_id: &str) -> Key {
    Key::new(join("msg", &[account, message_id]), "status")
}

/// The marker that a message's final outcome is counted (performance).
pub fn outcome_marker(account: &str, message_id: &str) -> Key {
    Key::new(join("count", &[account, message_id]), "final")
}

/// balance.low state of one subscription (operations).
pub fn balance(account: &str, subscription_id: &str) -> Key {
    Key::new(join("balance", &[account]), join("sub", &[subscription_id]))
}

/// The last known contact (contacts).
pub fn contact(account: &str, contact_id: &str) -> Key {
    Key::new(join("contact", &[account, contact_id]), "snapshot")
}

/// A scheduled message (messaging).
pub fn schedule(account: &str, message_id: &str) -> Key {
    Key::new(join("schedule", &[account, message_id]), "schedule")
}

/// The webhooks one event produced in one category, committed with its state writes.
pub fn decision(category: &str, account: &str, event_id: &str) -> Key {
    Key::new(join("decision", &[category, account, event_id]), "decision")
}

/// The partition of an account's per-minute outcome buckets and its rate-alert states.
pub fn perf_partition(account: &str) -> String {
    join("perf", &[account])
}

/// One shard of one minute's outcome bucket.
pub fn bucket(account: &str, minute: i64, shard: u32) -> Key {
    Key::new(perf_partition(account), bucket_sk(minute, shard))
}

/// Sort key of a bucket; buckets sort by minute, then shard.
pub fn bucket_sk(minute: i64, shard: u32) -> String {
    format!("bucket#{minute:012}#{shard:02}")
}

/// The minute of a bucket's sort key.
pub fn bucket_minute(sk: &str) -> Option<i64> {
    sk.strip_prefix("bucket#")?.split('#').next()?.parse().ok()
}

/// One subscription's state for one rate alert.
pub fn rate_alert(account: &str, subscription_id: &str, trigger: &str) -> Key {
    Key::new(perf_partition(account), join("alert", &[subscription_id, trigger]))
}

/// The shared pacing state of one subscription (its send slots, pause and adaptive rate).
pub fn pace(account: &str, subscription_id: &str) -> Key {
    Key::new(join("pace", &[account, subscription_id]), "pace")
}

/// The deployment's key for sealing internal messages: the one item that belongs to no account
/// (no account key has a partition without `#`).
pub fn seal_key() -> Key {
    Key::new("internal", "seal-key")
}

/// The partition of one campaign's outcome counters.
pub fn campaign_partition(account: &str, campaign_id: &str) -> String {
    join("campaign", &[account, campaign_id])
}

/// One shard of one minute of a campaign's outcome counters.
pub fn campaign_counter(account: &str, campaign_id: &str, minute: i64, shard: u32) -> Key {
    Key::new(campaign_partition(account, campaign_id), bucket_sk(minute, shard))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_with_separators_cannot_collide() {
        assert_ne!(contact("a#b", "c"), contact("a", "b#c"));
        assert_eq!(contact("a#b", "c").pk, "contact#a%23b#c");
        assert_ne!(part("%23"), part("#"));
        assert_eq!(part("plain"), "plain");
        assert_ne!(
            decision("sms", "acc_1", "evt_1"),
            decision("sms", "acc_2", "evt_1"),
            "decisions carry the account"
        );
    }

    #[test]
    fn bucket_keys_sort_by_minute_and_parse_back() {
        let a = bucket("acc", 99, 15);
        let b = bucket("acc", 100, 0);
        assert!(a.sk < b.sk);
        assert_eq!(bucket_minute(&b.sk), Some(100));
        assert_eq!(bucket_minute("alert#x"), None);
    }
}

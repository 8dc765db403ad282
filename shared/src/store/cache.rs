//! A short in-memory cache of each account's subscriptions, across warm invocations, so a busy
//! account costs one Query per TTL rather than one per batch.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::store::subscriptions::AccountSubscriptions;

#[derive(Debug)]
pub struct SubscriptionCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Arc<AccountSubscriptions>)>>,
}

impl SubscriptionCache {
    pub fn new(ttl: Duration) -> Self {
        SubscriptionCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn get(&self, account_id: &str, now: Instant) -> Option<Arc<AccountSubscriptions>> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(account_id)
            .filter(|(at, _)| now.duration_since(*at) < self.ttl)
            .map(|(_, subs)| subs.clone())
    }

    pub fn put(&self, account_id: &str, subs: Arc<AccountSubscriptions>, now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|_, (at, _)| now.duration_since(*at) < self.ttl);
        entries.insert(account_id.to_string(), (now, subs));
    }

    /// Forget an account, e.g. after the system disabled one of its subscriptions.
    pub fn invalidate(&self, account_id: &str) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(account_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_can_be_invalidated() {
        let cache = SubscriptionCache::new(Duration::from_secs(30));
        let t0 = Instant::now();
        cache.put("acc", Arc::new(AccountSubscriptions::default()), t0);
        assert!(cache.get("acc", t0 + Duration::from_secs(29)).is_some());
        assert!(cache.get("acc", t0 + Duration::from_secs(30)).is_none());
        assert!(cache.get("other", t0).is_none());
        cache.invalidate("acc");
        assert!(cache.get("acc", t0).is_none());
        let zero = SubscriptionCache::new(Duration::ZERO);
        zero.put("acc", Arc::new(AccountSubscriptions::default()), t0);
        assert!(zero.get("acc", t0).is_none(), "a zero TTL disables caching");
    }
}

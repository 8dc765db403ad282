//! Subscriptions for a batch: each account's from the in-memory cache, else one Query per
//! uncached account, concurrently. Invalid records are logged once per load, naming account,
//! subscription and field; they never stop the valid ones.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;

use crate::store::cache::SubscriptionCache;
use crate::store::subscriptions::{load_account, AccountSubscriptions, SubscriptionQueryError};
use crate::subscription::ParseOptions;

/// Each account of a batch, and its subscriptions or why they could not be read.
pub type Loaded = HashMap<String, Result<Arc<AccountSubscriptions>, Arc<SubscriptionQueryError>>>;

pub struct SubscriptionLoader {
    client: crate::aws::DynamoDb,
    table: String,
    options: ParseOptions,
    cache: SubscriptionCache,
}

impl SubscriptionLoader {
    pub fn new(
        client: impl Into<crate::aws::DynamoDb>,
        table: String,
        options: ParseOptions,
        cache_ttl: Duration,
    ) -> Self {
        SubscriptionLoader {
            client: client.into(),
            table,
            options,
            cache: SubscriptionCache::new(cache_ttl),
        }
    }

    /// The subscriptions of each of `accounts` (duplicates are read once), as of `now`. A Query
    /// that AWS throttles, fails or leaves unanswered is tried again in place while `deadline`
    /// allows, so one bad answer does not send the batch's records back for a visibility timeout.
    pub async fn load<'a>(
        &self,
        accounts: impl Iterator<Item = &'a str>,
        now: Instant,
        deadline: Option<Instant>,
    ) -> Loaded {
        let mut loaded = Loaded::new();
        let mut missing: Vec<&str> = Vec::new();
        for account in accounts {
            if loaded.contains_key(account) || missing.contains(&account) {
                continue;
            }
            match self.cache.get(account, now) {
                Some(subs) => {
                    loaded.insert(account.to_string(), Ok(subs));
                }
                None => missing.push(account),
            }
        }
        let results = join_all(missing.iter().map(|a| {
            crate::aws::persist(deadline, "query the account's subscriptions", move || {
                load_account(&self.client, &self.table, a, self.options)
            })
        }))
        .await;
        for (account, result) in missing.into_iter().zip(results) {
            let entry = match result {
                Ok(subs) => {
                    for bad in &subs.invalid {
                        tracing::error!(
                            account_id = %bad.account_id,
                            subscription_id = %bad.subscription_id,
                            field = %bad.field,
                            reason = %bad.reason,
                            "subscription record skipped: {bad}"
                        );
                    }
                    let subs = Arc::new(subs);
                    self.cache.put(account, subs.clone(), now);
                    Ok(subs)
                }
                Err(e) => {
                    tracing::error!(account_id = account, error = %e, "could not load subscriptions");
                    Err(Arc::new(e))
                }
            };
            loaded.insert(account.to_string(), entry);
        }
        loaded
    }

    /// Forget an account, e.g. after the system disabled one of its subscriptions.
    pub fn invalidate(&self, account_id: &str) {
        self.cache.invalidate(account_id);
    }
}

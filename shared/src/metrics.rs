//! Delivery metrics as CloudWatch Embedded Metric Format: one JSON line per batch on stdout, which
//! CloudWatch turns into metrics (namespace `DataFlows/SmsWebhooks`, dimension `Category`) with no
//! API call and no extra latency.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde_json::{json, Value};

use crate::trigger::Category;

pub(crate) const NAMESPACE: &str = "DataFlows/SmsWebhooks";
/// EMF accepts at most 100 values per metric in one line.
const MAX_VALUES: usize = 100;

/// Counters for one batch, shared by its concurrent deliveries.
#[derive(Debug, Default)]
pub struct Metrics {
    delivered: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    exhausted: AtomicU64,
    disabled: AtomicU64,
    deferred: AtomicU64,
    held: AtomicU64,
    held_age_s: AtomicU64,
    latencies_ms: Mutex<Vec<f64>>,
    /// Held webhooks by subscription (`account/subscription`): how many, the longest wait (s).
    backlogs: Mutex<std::collections::BTreeMap<String, (u64, u64)>>,
}

/// Subscriptions whose backlog gets a metric line of its own per batch, the longest waits first.
const MAX_BACKLOG_LINES: usize = 20;

/// What one attempt did, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Observed {
    Delivered {
        latency_ms: f64,
    },
    /// A failed attempt and what followed it.
    Failed {
        retried: bool,
        exhausted: bool,
        disabled: bool,
    },
    /// Not sent: the invocation's deadline was too close; the same attempt comes back later.
    Deferred,
    /// Not sent, not an attempt: held back by its subscription's pace or circuit, waiting
    /// `age_s` so far.
    Held {
        age_s: f64,
    },
    /// A retry or redrive dead-lettered without an attempt: its subscription was deleted,
    /// disabled or changed. Counted among the exhausted (every dead letter is).
    Undeliverable,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub delivered: u64,
    pub failed: u64,
    pub retried: u64,
    pub exhausted: u64,
    pub disabled: u64,
    pub deferred: u64,
    pub held: u64,
    /// The longest any held webhook had waited, in seconds.
    pub held_age_s: u64,
}

impl Metrics {
    pub fn observe(&self, o: Observed) {
        match o {
            Observed::Delivered { latency_ms } => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
                let mut l = self.latencies_ms.lock().unwrap_or_else(|p| p.into_inner());
                if l.len() < MAX_VALUES {
                    l.push(latency_ms);
                }
            }
            Observed::Failed {
                retried,
                exhausted,
                disabled,
            } => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                self.retried.fetch_add(u64::from(retried), Ordering::Relaxed);
                self.exhausted.fetch_add(u64::from(exhausted), Ordering::Relaxed);
                self.disabled.fetch_add(u64::from(disabled), Ordering::Relaxed);
            }
            Observed::Deferred => {
                self.deferred.fetch_add(1, Ordering::Relaxed);
            }
            Observed::Undeliverable => {
                self.exhausted.fetch_add(1, Ordering::Relaxed);
            }
            Observed::Held { age_s } => {
                self.held.fetch_add(1, Ordering::Relaxed);
                self.held_age_s.fetch_max(age_s.max(0.0) as u64, Ordering::Relaxed);
            }
        }
    }

    /// A webhook of `subscription` held back, waiting `age_s` so far.
    pub fn held_by(&self, subscription: String, age_s: u64) {
        let mut b = self.backlogs.lock().unwrap_or_else(|p| p.into_inner());
        let entry = b.entry(subscription).or_default();
        entry.0 += 1;
        entry.1 = entry.1.max(age_s);
    }

    /// Take the held webhooks by subscription so far: (subscription, held, longest wait in s),
    /// the longest waits first, at most [`MAX_BACKLOG_LINES`].
    pub fn take_backlogs(&self) -> Vec<(String, u64, u64)> {
        let taken = std::mem::take(&mut *self.backlogs.lock().unwrap_or_else(|p| p.into_inner()));
        let mut out: Vec<_> = taken.into_iter().map(|(k, (n, age))| (k, n, age)).collect();
        out.sort_by(|a, b| b.2.cmp(&a.2).then(b.1.cmp(&a.1)).then(a.0.cmp(&b.0)));
        out.truncate(MAX_BACKLOG_LINES);
        out
    }

    /// Take the counts so far and start again.
    pub fn take(&self) -> (Counts, Vec<f64>) {
        let counts = Counts {
            delivered: self.delivered.swap(0, Ordering::Relaxed),
            failed: self.failed.swap(0, Ordering::Relaxed),
            retried: self.retried.swap(0, Ordering::Relaxed),
            exhausted: self.exhausted.swap(0, Ordering::Relaxed),
            disabled: self.disabled.swap(0, Ordering::Relaxed),
            deferred: self.deferred.swap(0, Ordering::Relaxed),
            held: self.held.swap(0, Ordering::Relaxed),
            held_age_s: self.held_age_s.swap(0, Ordering::Relaxed),
        };
        let latencies = std::mem::take(&mut *self.latencies_ms.lock().unwrap_or_else(|p| p.into_inner()));
        (counts, latencies)
    }
}

/// The EMF line for one batch, or `None` when nothing was attempted.
pub(crate) fn emf(category: Category, counts: Counts, latencies_ms: &[f64], timestamp_ms: i64) -> Option<Value> {
    if counts == Counts::default() {
        return None;
    }
    let mut metrics = vec![
        json!({"Name": "WebhooksDelivered", "Unit": "Count"}),
        json!({"Name": "WebhooksFailed", "Unit": "Count"}),
        json!({"Name": "WebhooksRetried", "Unit": "Count"}),
        json!({"Name": "WebhooksExhausted", "Unit": "Count"}),
        json!({"Name": "SubscriptionsDisabled", "Unit": "Count"}),
        json!({"Name": "WebhooksDeferred", "Unit": "Count"}),
        json!({"Name": "WebhooksHeld", "Unit": "Count"}),
    ];
    let mut line = json!({
        "_aws": {"Timestamp": timestamp_ms, "CloudWatchMetrics": []},
        "Category": category.as_str(),
        "WebhooksDelivered": counts.delivered,
        "WebhooksFailed": counts.failed,
        "WebhooksRetried": counts.retried,
        "WebhooksExhausted": counts.exhausted,
        "SubscriptionsDisabled": counts.disabled,
        "WebhooksDeferred": counts.deferred,
        "WebhooksHeld": counts.held,
    });
    if counts.held > 0 {
        metrics.push(json!({"Name": "HeldWebhookAge", "Unit": "Seconds"}));
        line["HeldWebhookAge"] = json!(counts.held_age_s);
    }
    if !latencies_ms.is_empty() {
        metrics.push(json!({"Name": "DeliveryLatency", "Unit": "Milliseconds"}));
        line["DeliveryLatency"] = json!(latencies_ms);
    }
    line["_aws"]["CloudWatchMetrics"] =
        json!([{"Namespace": NAMESPACE, "Dimensions": [["Category"]], "Metrics": metrics}]);
    Some(line)
}

/// One EMF line per subscription with held webhooks in the batch (dimensions `Category` and
/// `Subscription`): its backlog's size and age, per subscription. Only subscriptions with a backlog
/// produce a metric (each one a CloudWatch custom metric while it has one).
pub(crate) fn emf_backlogs(category: Category, backlogs: &[(String, u64, u64)], timestamp_ms: i64) -> Vec<Value> {
    backlogs
        .iter()
        .map(|(subscription, held, age)| {
            json!({
                "_aws": {"Timestamp": timestamp_ms, "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [["Category", "Subscription"]],
                    "Metrics": [
                        {"Name": "SubscriptionWebhooksHeld", "Unit": "Count"},
                        {"Name": "SubscriptionBacklogAge", "Unit": "Seconds"},
                    ],
                }]},
                "Category": category.as_str(),
                "Subscription": subscription,
                "SubscriptionWebhooksHeld": held,
                "SubscriptionBacklogAge": age,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_becomes_one_emf_line() {
        let m = Metrics::default();
        m.observe(Observed::Delivered { latency_ms: 12.0 });
        m.observe(Observed::Delivered { latency_ms: 30.0 });
        m.observe(Observed::Failed {
            retried: true,
            exhausted: false,
            disabled: false,
        });
        m.observe(Observed::Failed {
            retried: false,
            exhausted: true,
            disabled: true,
        });
        m.observe(Observed::Deferred);
        m.observe(Observed::Held { age_s: 40.0 });
        m.observe(Observed::Held { age_s: 7.0 });
        m.observe(Observed::Undeliverable);
        let (counts, lat) = m.take();
        assert_eq!(
            counts,
            Counts {
                delivered: 2,
                failed: 2,
                retried: 1,
                exhausted: 2,
                disabled: 1,
                deferred: 1,
                held: 2,
                held_age_s: 40,
            }
        );
        let line = emf(Category::Sms, counts, &lat, 1_796_033_700_000).unwrap();
        assert_eq!(line["Category"], "sms");
        assert_eq!(line["DeliveryLatency"], json!([12.0, 30.0]));
        assert_eq!(line["WebhooksDeferred"], 1);
        assert_eq!(
            (line["WebhooksHeld"].clone(), line["HeldWebhookAge"].clone()),
            (json!(2), json!(40))
        );
        assert_eq!(line["_aws"]["CloudWatchMetrics"][0]["Namespace"], NAMESPACE);
        assert_eq!(
            line["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                .as_array()
                .unwrap()
                .len(),
            9,
            "six counts, the held ones, their age and the latency"
        );
        // Held webhooks by subscription: one line each, the longest waits first.
        m.held_by("acc_1/crm".into(), 40);
        m.held_by("acc_1/crm".into(), 12);
        m.held_by("acc_2/erp".into(), 90);
        let backlogs = m.take_backlogs();
        assert_eq!(
            backlogs,
            [("acc_2/erp".to_string(), 1, 90), ("acc_1/crm".to_string(), 2, 40)]
        );
        let lines = emf_backlogs(Category::Sms, &backlogs, 0);
        assert_eq!(
            (
                lines[1]["Subscription"].clone(),
                lines[1]["SubscriptionWebhooksHeld"].clone()
            ),
            (json!("acc_1/crm"), json!(2))
        );
        assert_eq!(
            lines[1]["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Category", "Subscription"]])
        );
        assert!(m.take_backlogs().is_empty(), "taken means reset");
        // Taken means reset; nothing attempted means no line.
        let (counts, lat) = m.take();
        assert_eq!(emf(Category::Sms, counts, &lat, 0), None);
    }
}

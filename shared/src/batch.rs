//! The SQS batch runner: records processed concurrently with a bound, one record's failure or
//! panic never touches the others, and the response lists exactly the failed message ids so
//! Lambda (ReportBatchItemFailures) redelivers only those.

use std::future::Future;
use std::panic::AssertUnwindSafe;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse};
use futures::{FutureExt, StreamExt};

/// A failed record must be reported by id; a record without one cannot be, so the whole batch
/// is failed instead (every record is redelivered: nothing is lost).
#[derive(Debug, thiserror::Error)]
#[error("{count} failed record(s) have no messageId; failing the whole batch so none is lost")]
pub(crate) struct UnidentifiedFailure {
    pub count: usize,
}

/// How long a record reported as failed stays invisible before SQS hands it back, by how many
/// times it was received: 5 s after the first, doubling, at most 60 s, jittered by ±25 %
/// (`jitter` in [0, 1)). Its failure was transient (AWS throttled or failed, a claim was busy),
/// so it is tried again in seconds instead of after the queue's visibility timeout (six times the
/// function timeout); the queue's maxReceiveCount (5) still moves a record that keeps failing to
/// the DLQ, after about 2 minutes of tries.
pub(crate) fn redelivery_delay(receive_count: u32, jitter: f64) -> std::time::Duration {
    let base = 5.0 * f64::from(1u32 << receive_count.clamp(1, 5).saturating_sub(1));
    let secs = (base.min(60.0) * (0.75 + 0.5 * jitter.clamp(0.0, 1.0))).round();
    std::time::Duration::from_secs(secs.max(1.0) as u64)
}

/// Process `records` (each with its SQS message id) with at most `concurrency` in flight.
/// `handle` returns `Err(reason)` for a record that must be redelivered.
pub(crate) async fn run_batch<T, F, Fut, E>(
    records: Vec<(Option<String>, T)>,
    concurrency: usize,
    handle: F,
) -> Result<SqsBatchResponse, UnidentifiedFailure>
where
    F: Fn(T) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let results: Vec<(Option<String>, bool)> = futures::stream::iter(records)
        .map(|(id, record)| {
            let id = id.filter(|id| !id.is_empty());
            let fut = AssertUnwindSafe(handle(record)).catch_unwind();
            async move {
                let ok = match fut.await {
                    Ok(Ok(())) => true,
                    Ok(Err(err)) => {
                        tracing::error!(message_id = id.as_deref().unwrap_or(""), error = %err, "record failed");
                        false
                    }
                    Err(panic) => {
                        let what = panic
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "non-string panic".into());
                        tracing::error!(message_id = id.as_deref().unwrap_or(""), panic = %what, "record processing panicked");
                        false
                    }
                };
                (id, ok)
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;

    let mut response = SqsBatchResponse::default();
    let mut unidentified = 0;
    for (id, ok) in results {
        match (ok, id) {
            (true, _) => {}
            (false, Some(id)) => {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                response.batch_item_failures.push(failure);
            }
            (false, None) => unidentified += 1,
        }
    }
    if unidentified > 0 {
        return Err(UnidentifiedFailure { count: unidentified });
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_record_comes_back_in_seconds_then_less_often() {
        let mid = |n| redelivery_delay(n, 0.5).as_secs();
        assert_eq!(
            [mid(0), mid(1), mid(2), mid(3), mid(4), mid(5), mid(9)],
            [5, 5, 10, 20, 40, 60, 60]
        );
        assert_eq!(redelivery_delay(1, 0.0).as_secs(), 4, "jittered down");
        assert_eq!(redelivery_delay(5, 0.999).as_secs(), 75, "jittered up");
        let total: u64 = (1..=5).map(mid).sum();
        assert!(
            (120..=150).contains(&total),
            "five receives span {total} s before the DLQ"
        );
    }
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn msg(id: &str, body: &'static str) -> (Option<String>, &'static str) {
        (Some(id.into()), body)
    }

    fn failed_ids(r: &SqsBatchResponse) -> Vec<String> {
        let mut ids: Vec<String> = r
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        ids.sort();
        ids
    }

    #[tokio::test]
    async fn only_failed_and_panicking_records_are_reported() {
        let records = vec![msg("a", "ok"), msg("b", "bad"), msg("c", "panic"), msg("d", "ok")];
        let seen = AtomicUsize::new(0);
        let r = run_batch(records, 2, |m| {
            seen.fetch_add(1, Ordering::SeqCst);
            async move {
                match m {
                    "bad" => Err("malformed"),
                    "panic" => panic!("boom"),
                    _ => Ok(()),
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(failed_ids(&r), vec!["b", "c"]);
        assert_eq!(seen.load(Ordering::SeqCst), 4, "every record was processed");
    }

    #[tokio::test]
    async fn concurrency_is_bounded() {
        let in_flight = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let records = (0..20).map(|i| msg(&i.to_string(), "ok")).collect();
        let r = run_batch(records, 3, |_| async {
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            tokio::task::yield_now().await;
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            in_flight.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, &str>(())
        })
        .await
        .unwrap();
        assert!(r.batch_item_failures.is_empty());
        assert_eq!(peak.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_failure_without_message_id_fails_the_batch() {
        let nameless = (None, "bad");
        let r = run_batch(vec![msg("a", "ok"), nameless], 4, |m| async move {
            if m == "bad" {
                Err("malformed")
            } else {
                Ok(())
            }
        })
        .await;
        assert_eq!(r.unwrap_err().count, 1);
    }
}

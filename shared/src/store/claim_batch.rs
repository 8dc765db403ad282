//! The delivery claims written together: the claims of a batch's webhooks go to DynamoDB in
//! PartiQL `BatchExecuteStatement` requests of up to 25 statements, and so do their finishes
//! (the result and the attempt log), instead of one `UpdateItem` each. Every statement keeps its
//! own condition and gets its own answer, and costs the same write unit as the `UpdateItem` it
//! replaces; the batch is not a transaction
//! (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ql-reference.multiplestatements.batching.html,
//! https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchExecuteStatement.html).
//!
//! **Group commit.** A job asks for its claim (or its finish) as before and waits for its own
//! answer; the statement waits in a queue until the queue holds 25, or until no other could join
//! it (claims: every job whose claim is still to come is queued; finishes: every open claim is
//! waiting for its finish), or at most a short linger. A claim a send slot waits for (one is idle)
//! goes at the end of the scheduler's turn instead, once every job runnable then has queued its
//! own, and so does a finish that comes alone after a pause ([`FINISH_GAP`]): finishes that
//! trickle in have no company coming. A lone webhook is therefore written at once.
//!
//! **The guarantees are the single-item ones.** Each statement carries the condition of the
//! `UpdateItem` in [`super::claims`]: a first claim is an `INSERT` (which fails on an existing
//! item), a retry's claim and a finish are `UPDATE`s whose `WHERE` holds the same condition, the
//! owner token included. A condition failure returns the item as it was (`ALL_OLD`), read by the
//! same pure rules ([`claim_refused`], [`finish_refused`]), so a lost reply is recognised as our
//! own write here too. Every other answer of a statement (an `INSERT` onto an existing item, a
//! throttle, a 500, a conflict, an item without an attempt log, a request that failed as a whole)
//! sends that one job down the single-item path of [`Claims`], with the same token: it decides
//! as it always did. Redrive claims and releases are rare and always single.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::store::claims::{
    claim_pk, claim_refused, finish_refused, AttemptLog, Claim, ClaimError, ClaimMeta, ClaimStatus, ClaimToken, Claims,
    Finished, CLAIM_TTL_SECONDS,
};
use crate::store::partiql::{Answer, Item, PartiqlBatch, Statement, StatementText, StatementWriter};
use crate::webhook::WebhookId;

/// Most statements in one `BatchExecuteStatement` (DynamoDB's limit).
pub const STATEMENTS_PER_REQUEST: usize = 25;

/// Longest a claim waits for others to fill its request.
pub const CLAIM_LINGER: Duration = Duration::from_millis(20);

/// Longest a finish waits for others to fill its request (the send is over; nothing waits on it
/// but the invocation's end, which flushes at once).
pub const FINISH_LINGER: Duration = Duration::from_millis(50);

/// A finish that finds no other queued, this long or more after the one before it, is written at
/// the end of the scheduler's turn instead of lingering: finishes that trickle in have no company
/// coming, and every millisecond a finish waits after its receiver's 2xx is a millisecond in which
/// a killed process leaves that webhook to be sent again. Under load (hundreds a second and more)
/// finishes come well within it, or find others queued, and fill their requests as before.
pub const FINISH_GAP: Duration = Duration::from_millis(5);

/// Whether a statement comes alone: nothing is queued, and the one before it came `gap` or more
/// ago (or none did). Pure.
fn comes_alone(queued: usize, previous: Option<Instant>, now: Instant, gap: Duration) -> bool {
    queued == 0 && previous.is_none_or(|previous| now.saturating_duration_since(previous) >= gap)
}

/// One statement's answer.
#[derive(Debug)]
enum Reply {
    Applied,
    /// Its condition failed; the item as it was, when returned.
    ConditionFailed(Option<Item>),
    /// Anything else, to be settled on the single-item path: the statement's error code, or why
    /// the request failed as a whole.
    Other(String),
}

struct Entry {
    pk: String,
    statement: Statement,
    reply: oneshot::Sender<Reply>,
}

/// Which of the up to 25 statements of the queue go together: in order, one per item (a second
/// statement on an item already in the request waits for the next one). Pure.
fn take_batch<T>(queue: &mut VecDeque<T>, key: impl Fn(&T) -> &str) -> Vec<T> {
    let mut batch: Vec<T> = Vec::with_capacity(STATEMENTS_PER_REQUEST.min(queue.len()));
    let mut rest = VecDeque::new();
    while let Some(entry) = queue.pop_front() {
        // At most 25 to compare with: cheaper than hashing a copy of every key.
        if batch.len() < STATEMENTS_PER_REQUEST && !batch.iter().any(|b| key(b) == key(&entry)) {
            batch.push(entry);
        } else {
            rest.push_back(entry);
        }
    }
    *queue = rest;
    batch
}

#[derive(Default)]
struct Queue {
    entries: VecDeque<Entry>,
    /// Bumped each time the queue is emptied, so that a linger armed for statements already sent
    /// does not cut short the wait of the next ones.
    generation: u64,
    /// The generation a linger is armed for.
    timer: Option<u64>,
    /// The generation a flush at the end of the scheduler's turn is due for.
    soon: Option<u64>,
    /// When the latest statement was queued (lanes with an `alone_after` only).
    latest_at: Option<Instant>,
}

impl Queue {
    /// Up to 25 statements to send now; an emptied queue starts a new generation.
    fn take(&mut self) -> Vec<Entry> {
        let batch = take_batch(&mut self.entries, |e| &e.pk);
        if self.entries.is_empty() {
            self.generation += 1;
            self.timer = None;
            self.soon = None;
        }
        batch
    }
}

struct Lane {
    queue: Mutex<Queue>,
    linger: Duration,
    /// A statement that comes alone (see [`comes_alone`]) after this gap goes without lingering.
    alone_after: Option<Duration>,
    /// Statements sent and not yet answered: their jobs are still counted but cannot join the
    /// queue.
    awaiting: AtomicUsize,
}

impl Lane {
    fn new(linger: Duration, alone_after: Option<Duration>) -> Self {
        Lane {
            queue: Mutex::default(),
            linger,
            alone_after,
            awaiting: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct Inner {
    batch: Arc<dyn PartiqlBatch>,
    claims: Lane,
    finishes: Lane,
    /// Claims won and not yet given up (a [`Counted`] from [`ClaimBatches::open`] alive).
    open: AtomicUsize,
    /// Jobs whose claim is still to come or unanswered (from [`ClaimBatches::approaching`]).
    approaching: AtomicUsize,
}

#[derive(Clone, Copy)]
enum Which {
    Claims,
    Finishes,
}

impl Inner {
    fn lane(&self, which: Which) -> &Lane {
        match which {
            Which::Claims => &self.claims,
            Which::Finishes => &self.finishes,
        }
    }

    /// The jobs that may still queue a statement of this kind.
    fn counter(&self, which: Which) -> &AtomicUsize {
        match which {
            Which::Claims => &self.approaching,
            Which::Finishes => &self.open,
        }
    }

    /// Whether no other statement can join the queue now. Claims: every job whose claim is still
    /// to come is queued. Finishes: every open claim's job is queued; or, once no claim is to
    /// come (the invocation's last sends), every open claim's finish is queued or already on its
    /// way: the last finishes of an invocation then go at once, not a round trip later, when the
    /// answer to the request before them lets its jobs go. (While claims still come, finishes on
    /// their way are waited for: at receivers that answer at once, not waiting for them sent the
    /// finishes a few at a time.)
    fn complete(&self, which: Which, queued: usize) -> bool {
        let counted = self.counter(which).load(Ordering::SeqCst);
        queued >= counted
            || matches!(which, Which::Finishes)
                && self.approaching.load(Ordering::SeqCst) == 0
                && queued + self.finishes.awaiting.load(Ordering::SeqCst) >= counted
    }

    /// Queue a statement and send what is ready. `urgent`: something waits on this statement now
    /// (a send slot is idle), so the queue goes once the jobs runnable at this moment have had
    /// their turn to join it, without lingering. A statement that comes alone after a pause (on
    /// a lane with `alone_after`) goes the same way.
    fn submit(self: &Arc<Self>, which: Which, entry: Entry, urgent: bool) {
        let lane = self.lane(which);
        let mut queue = lane.lock();
        let alone = lane.alone_after.is_some_and(|gap| {
            let now = Instant::now();
            let alone = comes_alone(queue.entries.len(), queue.latest_at, now, gap);
            queue.latest_at = Some(now);
            alone
        });
        let urgent = urgent || alone;
        queue.entries.push_back(entry);
        let ready = queue.entries.len() >= STATEMENTS_PER_REQUEST || self.complete(which, queue.entries.len());
        let batch = if ready { queue.take() } else { Vec::new() };
        let soon = (urgent && !queue.entries.is_empty() && queue.soon.is_none()).then_some(queue.generation);
        if soon.is_some() {
            queue.soon = soon;
        }
        // Whatever stays queued (waiting for company, or a second statement on an item of this
        // batch) goes at the latest when the linger is over.
        let arm = (!queue.entries.is_empty() && queue.timer.is_none()).then_some(queue.generation);
        if arm.is_some() {
            queue.timer = arm;
        }
        drop(queue);
        self.send(which, batch);
        if let Some(generation) = soon {
            let inner = Arc::clone(self);
            tokio::spawn(async move {
                // Queued behind every task runnable now: they join the queue first.
                tokio::task::yield_now().await;
                let due = inner.lane(which).lock().soon == Some(generation);
                if due {
                    inner.flush(which);
                }
            });
        }
        if let Some(generation) = arm {
            let inner = Arc::clone(self);
            tokio::spawn(async move {
                tokio::time::sleep(inner.lane(which).linger).await;
                let mut queue = inner.lane(which).lock();
                if queue.timer == Some(generation) {
                    queue.timer = None;
                    drop(queue);
                    inner.flush(which);
                }
            });
        }
    }

    /// Send everything queued.
    fn flush(self: &Arc<Self>, which: Which) {
        loop {
            let batch = self.lane(which).lock().take();
            if batch.is_empty() {
                return;
            }
            self.send(which, batch);
        }
    }

    fn send(self: &Arc<Self>, which: Which, batch: Vec<Entry>) {
        if batch.is_empty() {
            return;
        }
        self.lane(which).awaiting.fetch_add(batch.len(), Ordering::SeqCst);
        let inner = Arc::clone(self);
        tokio::spawn(async move {
            let client = Arc::clone(&inner.batch);
            let (statements, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|e| (e.statement, e.reply)).unzip();
            let count = statements.len();
            let answers = match client.execute(statements).await {
                Ok(answers) if answers.len() == count => answers
                    .into_iter()
                    .map(|answer| match answer {
                        Answer::Applied => Reply::Applied,
                        Answer::Refused { code, item, .. } if code == "ConditionalCheckFailed" => {
                            Reply::ConditionFailed(item)
                        }
                        Answer::Refused { code, message, .. } => Reply::Other(format!("{code}: {message}")),
                    })
                    .collect(),
                Ok(answers) => {
                    let why = format!("{} answers to {count} statements", answers.len());
                    (0..count).map(|_| Reply::Other(why.clone())).collect()
                }
                Err(e) => {
                    let why = e.to_string();
                    (0..count).map(|_| Reply::Other(why.clone())).collect::<Vec<_>>()
                }
            };
            // No longer on their way; each job is still counted until it gives its guard up.
            inner.lane(which).awaiting.fetch_sub(count, Ordering::SeqCst);
            for (reply, answer) in replies.into_iter().zip(answers) {
                let _ = reply.send(answer); // a job that went away needs no answer
            }
        });
    }

    /// A counted job went away: send the queue if all the others are in it.
    fn left(self: &Arc<Self>, which: Which) {
        let queued = self.lane(which).lock().entries.len();
        if queued > 0 && self.complete(which, queued) {
            self.flush(which);
        }
    }

    async fn ask(self: &Arc<Self>, which: Which, pk: String, statement: Statement, urgent: bool) -> Reply {
        let (reply, answer) = oneshot::channel();
        self.submit(which, Entry { pk, statement, reply }, urgent);
        answer
            .await
            .unwrap_or_else(|_| Reply::Other("the batch was dropped before it was answered".into()))
    }
}

/// A job counted while a statement of its may still join a queue: an open claim (won, not yet
/// finished or given up: while every open claim's job waits for its finish, the finishes are
/// written at once) or an approaching one (its claim still to come or unanswered: while every such
/// job's claim is queued, the claims are written at once). Dropping it may send the queue.
pub struct Counted {
    inner: Arc<Inner>,
    which: Which,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.inner.counter(self.which).fetch_sub(1, Ordering::SeqCst);
        self.inner.left(self.which);
        if matches!(self.which, Which::Claims) && self.inner.approaching.load(Ordering::SeqCst) == 0 {
            // The last claim answered can complete the finishes' queue.
            self.inner.left(Which::Finishes);
        }
    }
}

/// The statements' text for one table, built and JSON-escaped once (constants inline: fewer
/// parameters to build, serialize and sign for every webhook).
struct Texts {
    first: StatementText,
    retry: StatementText,
    finish: StatementText,
}

impl Texts {
    fn new(table: &str) -> Self {
        let (pending, retrying) = (ClaimStatus::Pending.as_str(), ClaimStatus::Retrying.as_str());
        Texts {
            first: StatementText::new(&format!(
                "INSERT INTO \"{table}\" VALUE {{'pk': ?, 'sk': 'delivery', 'status': '{pending}', 'lease_until': ?, \
                 'expires_at': ?, 'account_id': ?, 'subscription_id': ?, 'event_id': ?, 'trigger': ?, 'owner': ?, \
                 'attempts_made': 0, 'attempts': []}}"
            )),
            retry: StatementText::new(&format!(
                "UPDATE \"{table}\" SET \"status\" = '{pending}' SET lease_until = ? SET expires_at = ? \
                 SET account_id = ? SET subscription_id = ? SET event_id = ? SET \"trigger\" = ? SET \"owner\" = ? \
                 WHERE pk = ? AND sk = 'delivery' AND attempts_made <= ? \
                 AND (\"status\" = '{retrying}' OR (\"status\" = '{pending}' AND lease_until < ?))"
            )),
            finish: StatementText::new(&format!(
                "UPDATE \"{table}\" SET \"status\" = ? SET attempts_made = ? SET lease_until = 0 SET updated_at = ? \
                 SET attempts = list_append(attempts, ?) \
                 WHERE pk = ? AND sk = 'delivery' AND \"owner\" = ? AND \"status\" = '{pending}'"
            )),
        }
    }
}

/// What both claims set, in the order of their texts: the lease, the TTL, what the claim is about
/// and its owner.
fn claim_values(
    statement: StatementWriter,
    meta: &ClaimMeta<'_>,
    now: i64,
    lease_seconds: i64,
    token: &ClaimToken,
) -> StatementWriter {
    statement
        .n(now + lease_seconds)
        .n(now + CLAIM_TTL_SECONDS)
        .s(meta.account_id)
        .s(meta.subscription_id)
        .s(meta.event_id)
        .s(meta.trigger.as_str())
        .s(token.as_str())
}

/// The claims of [`Claims`], written in batches.
#[derive(Clone)]
pub struct ClaimBatches {
    single: Claims,
    inner: Arc<Inner>,
    texts: Arc<Texts>,
}

impl ClaimBatches {
    /// `batch` sends the statements: [`crate::store::partiql::DirectBatch`] in the functions.
    pub fn new(single: Claims, batch: Arc<dyn PartiqlBatch>) -> Self {
        ClaimBatches {
            inner: Arc::new(Inner {
                batch,
                claims: Lane::new(CLAIM_LINGER, None),
                finishes: Lane::new(FINISH_LINGER, Some(FINISH_GAP)),
                open: AtomicUsize::new(0),
                approaching: AtomicUsize::new(0),
            }),
            texts: Arc::new(Texts::new(&single.table)),
            single,
        }
    }

    /// The single-item claims behind the batches (releases, redrives, and every statement the
    /// batch could not settle).
    pub fn single(&self) -> &Claims {
        &self.single
    }

    fn count(&self, which: Which) -> Counted {
        self.inner.counter(which).fetch_add(1, Ordering::SeqCst);
        Counted {
            inner: Arc::clone(&self.inner),
            which,
        }
    }

    /// Count a job among those whose claim is still to come, until the returned guard is dropped.
    pub fn approaching(&self) -> Counted {
        self.count(Which::Claims)
    }

    /// Count a won claim as open until the returned guard is dropped.
    pub fn open(&self) -> Counted {
        self.count(Which::Finishes)
    }

    /// A first attempt's claim, as [`Claims::claim_first`]: an `INSERT` (the item is new in
    /// nearly every case); an item that exists already goes to the single-item claim, whose
    /// condition also takes over an expired lease. `urgent`: a send waits for it (see
    /// [`Inner::submit`]).
    pub async fn claim_first(
        &self,
        meta: &ClaimMeta<'_>,
        now: i64,
        lease_seconds: i64,
        token: &ClaimToken,
        urgent: bool,
    ) -> Result<Claim, ClaimError> {
        let pk = claim_pk(meta.webhook_id);
        let statement = claim_values(
            StatementWriter::new(&self.texts.first).s(&pk),
            meta,
            now,
            lease_seconds,
            token,
        )
        .finish();
        match self.claim(meta, pk, statement, now, token, true, urgent).await {
            Some(claim) => Ok(claim),
            // Boxed, as the other single-item paths: rare, and kept out of every claim's future.
            None => Box::pin(self.single.claim_first(meta, now, lease_seconds, token)).await,
        }
    }

    /// A retry's claim, as [`Claims::claim_retry`], in one `UPDATE`.
    pub async fn claim_retry(
        &self,
        meta: &ClaimMeta<'_>,
        previous: u32,
        now: i64,
        lease_seconds: i64,
        token: &ClaimToken,
        urgent: bool,
    ) -> Result<Claim, ClaimError> {
        let pk = claim_pk(meta.webhook_id);
        let statement = claim_values(StatementWriter::new(&self.texts.retry), meta, now, lease_seconds, token)
            .s(&pk)
            .n(i64::from(previous))
            .n(now)
            .finish();
        match self.claim(meta, pk, statement, now, token, false, urgent).await {
            Some(claim) => Ok(claim),
            None => Box::pin(self.single.claim_retry(meta, previous, now, lease_seconds, token)).await,
        }
    }

    /// A claim's statement through the batch, read as the single-item claim reads its answer
    /// (`first`: an `INSERT`'s); `None`: the batch did not settle it, the single-item claim must.
    #[allow(clippy::too_many_arguments)]
    async fn claim(
        &self,
        meta: &ClaimMeta<'_>,
        pk: String,
        statement: Statement,
        now: i64,
        token: &ClaimToken,
        first: bool,
        urgent: bool,
    ) -> Option<Claim> {
        match self.inner.ask(Which::Claims, pk, statement, urgent).await {
            Reply::Applied => Some(Claim::Won),
            // Never returned for an INSERT; read as the single-item claim would.
            Reply::ConditionFailed(old) => Some(claim_refused(old.as_ref(), token, now, first, meta.webhook_id)),
            Reply::Other(why) => {
                settled_alone(meta.webhook_id, "claim", &why);
                None
            }
        }
    }

    /// An attempt's result and log, as [`Claims::finish`], in one `UPDATE` queued with the
    /// others.
    pub async fn finish(
        &self,
        webhook_id: &WebhookId,
        log: &AttemptLog,
        state: ClaimStatus,
        token: &ClaimToken,
    ) -> Result<Finished, ClaimError> {
        let pk = claim_pk(webhook_id);
        let statement = StatementWriter::new(&self.texts.finish)
            .s(state.as_str())
            .n(i64::from(log.number))
            .n(log.at)
            .with(|out| {
                out.push_str("{\"L\":[");
                log.push_entry_json(out);
                out.push_str("]}");
            })
            .s(&pk)
            .s(token.as_str())
            .finish();
        match self.inner.ask(Which::Finishes, pk, statement, false).await {
            Reply::Applied => Ok(Finished::Recorded),
            Reply::ConditionFailed(old) => Ok(finish_refused(old.as_ref(), token, state, log.number, webhook_id)),
            Reply::Other(why) => {
                settled_alone(webhook_id, "finish", &why);
                Box::pin(self.single.finish(webhook_id, log, state, token)).await
            }
        }
    }
}

/// Whether a statement's answer says the batched path itself is refused (the statement's form, the
/// role lacking `dynamodb:PartiQLInsert`/`PartiQLUpdate`, or the request's signature), not this one
/// item: every webhook then costs its single writes again, which an operator must hear about. Pure.
pub fn refuses_the_path(why: &str) -> bool {
    [
        "ValidationError",
        "AccessDenied",
        "InvalidSignature",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "UnrecognizedClient",
    ]
    .iter()
    .any(|refusal| why.starts_with(refusal))
}

/// A statement the batch did not settle goes down the single-item path; say why.
fn settled_alone(webhook_id: &WebhookId, what: &str, why: &str) {
    if refuses_the_path(why) {
        tracing::warn!(webhook_id = %webhook_id, %why, "{what} refused in a PartiQL batch, written on its own instead (check the statement, the role's PartiQL permissions and the request's signature)");
    } else {
        tracing::debug!(webhook_id = %webhook_id, %why, "{what} settled on its own");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_batch_writes_the_attempt_log_entry_the_single_write_does() {
        for error in [
            None,
            Some("timed out \"after\" 2s\n".to_string()),
            Some("é".repeat(600)),
        ] {
            let log = AttemptLog {
                number: 3,
                at: 1_765_000_000,
                status: 0,
                latency_ms: 2001,
                error,
            };
            let direct = StatementWriter::new(&StatementText::new("?"))
                .with(|out| log.push_entry_json(out))
                .finish();
            let through_the_map = Statement::new("?", &[log.entry()]);
            assert_eq!(direct.parameters(), through_the_map.parameters(), "{}", direct.json());
        }
    }

    #[test]
    fn only_a_refused_form_or_permission_is_news_to_an_operator() {
        assert!(refuses_the_path("ValidationError: Unexpected from source"));
        assert!(refuses_the_path(
            "AccessDenied: not authorized to perform dynamodb:PartiQLInsert"
        ));
        assert!(refuses_the_path(
            "InvalidSignatureException: The request signature we calculated does not match (HTTP 400)"
        ));
        assert!(refuses_the_path(
            "UnrecognizedClientException: The security token included in the request is invalid. (HTTP 400)"
        ));
        assert!(!refuses_the_path(
            "DuplicateItem: Duplicate primary key exists in table"
        ));
        assert!(!refuses_the_path("ProvisionedThroughputExceeded: refused"));
        assert!(!refuses_the_path("service error: throttled"));
    }

    #[test]
    fn a_statement_comes_alone_after_a_pause_with_nothing_queued() {
        let t0 = Instant::now();
        let gap = Duration::from_millis(5);
        assert!(comes_alone(0, None, t0, gap), "the first of all");
        assert!(comes_alone(0, Some(t0), t0 + gap, gap), "a pause as long as the gap");
        assert!(
            !comes_alone(0, Some(t0), t0 + gap - Duration::from_micros(1), gap),
            "a stream"
        );
        assert!(
            !comes_alone(3, Some(t0), t0 + gap * 10, gap),
            "others wait already: it joins them"
        );
    }

    #[test]
    fn a_batch_takes_25_statements_one_per_item_in_order() {
        let mut queue: VecDeque<String> = (0..30).map(|i| format!("webhook#{i}")).collect();
        queue.insert(3, "webhook#1".into()); // a second statement on item 1
        let batch = take_batch(&mut queue, |e| e.as_str());
        assert_eq!(batch.len(), STATEMENTS_PER_REQUEST);
        assert_eq!(batch.iter().filter(|e| *e == "webhook#1").count(), 1);
        assert_eq!(batch[3], "webhook#3", "order kept, the duplicate skipped");
        assert_eq!(
            queue.front().map(String::as_str),
            Some("webhook#1"),
            "the duplicate goes next"
        );
        assert_eq!(queue.len(), 31 - STATEMENTS_PER_REQUEST);
        let rest = take_batch(&mut queue, |e| e.as_str());
        assert_eq!(rest.len(), 6);
        assert!(queue.is_empty());
        assert!(take_batch(&mut queue, |e: &String| e.as_str()).is_empty());
    }
}

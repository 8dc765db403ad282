//! Getting a webhook to a subscriber: the attempt's decisions (attempt), the engine that runs
//! them, the HTTP client and its SSRF guard, the retry policy, the queues and their messages.
//! Signing is [`crate::signing`]: pure, shared with the subscription records.
pub mod attempt;
pub mod client;
pub mod engine;
pub mod fair;
pub mod notice;
pub mod pace;
pub mod queue;
pub mod retry;
pub mod ssrf;
pub mod task;

//! Getting a webhook to a subscriber: signing, the HTTP client.
pub mod attempt;
pub mod client;
pub mod engine;
pub mod queue;
pub mod retry;
pub mod signing;
pub mod ssrf;
pub mod task;

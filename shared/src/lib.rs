//! DataFlows SMS webhook triggers: the domain (events, triggers, subscriptions, rules) and the
//! adapters (DynamoDB, HTTP delivery, the Lambda runtime) shared by the six category functions
//! and the operator's CLI.
//!
//! The public surface is what those crates use: [`app::run`] for the functions; the envelope
//! ([`event`]), the records and their validation ([`subscription`], [`filter`]), signing
//! ([`signing`]), the catalogue's examples ([`catalogue`]) and the stores for the CLI; the pure
//! cores ([`rules`], [`plan`], [`delivery::attempt`], [`delivery::retry`]) for tests and
//! benchmarks. The shell's internals (the category evaluation, the batch runner, the AWS client
//! settings, logging and metrics) are private, so an unused item there is a compiler warning, and
//! `unreachable_pub` keeps their items `pub(crate)`.
//! (Checked once with every module private but `app`: nothing was unused but what the CLI, the
//! tests and the benchmarks use.)

#![warn(unreachable_pub)]

pub mod addresses;
pub mod app;
mod aws;
pub(crate) mod aws_http;
mod batch;
pub mod catalogue;
mod categories;
pub mod config;
pub mod contract;
pub mod delivery;
pub mod event;
pub mod filter;
mod logging;
mod metrics;
pub mod patterns;
pub mod payload;
pub mod plan;
pub mod rules;
pub mod signing;
pub mod store;
pub mod subscription;
#[cfg(test)]
mod test_http;
pub mod tls;
pub mod trigger;
pub mod webhook;

pub use aws::{DynamoDb, Lazy, Sqs};
pub use trigger::Category;

/// A map looked up on every webhook (lanes, pacers, send slots): foldhash, seeded per process.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

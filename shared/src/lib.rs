//! DataFlows SMS webhook triggers: the domain (events, triggers, subscriptions, rules) and the
//! adapters (DynamoDB, HTTP delivery, the Lambda runtime) shared by the six category functions.

pub mod app;
pub mod aws;
pub mod batch;
pub mod catalogue;
pub mod categories;
pub mod config;
pub mod delivery;
pub mod event;
pub mod filter;
pub mod logging;
pub mod metrics;
pub mod plan;
pub mod rules;
pub mod signing;
pub mod store;
pub mod subscription;
pub mod trigger;
pub mod webhook;

pub use trigger::Category;

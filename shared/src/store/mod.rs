//! Reading and writing DynamoDB: thin adapters around the pure core.
pub mod attributes;
pub mod cache;
pub mod claim_batch;
pub mod claims;
pub mod keys;
pub mod loader;
pub mod pace;
pub mod partiql;
pub mod seal;
pub mod sigv4;
pub mod state;
pub mod statement;
pub mod subscriptions;

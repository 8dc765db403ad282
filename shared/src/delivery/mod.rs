//! Getting a webhook to a subscriber: signing, the HTTP client.
pub mod client;
pub mod signing;
pub mod ssrf;

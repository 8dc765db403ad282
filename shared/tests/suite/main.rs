//! The library's integration tests, as one test binary: each file was its own binary, and every
//! binary linked the AWS SDK again (link time and tens of MB of target/ each). `proxy.rs` stays its
//! own binary because it sets process-wide environment variables.
//!
//! One module per subject; `cargo test -p dataflows-shared --test suite <module>` runs one.

mod app;
mod aws_errors;
mod catalogue;
mod claim_batch;
mod conformance;
mod corpus;
mod deadline;
mod modules;
mod record_examples;
mod samples;
mod schemas;
mod sdk_batch;
mod ssrf;

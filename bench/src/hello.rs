//! The cold-start baseline of `make bench`: a bare `lambda_runtime` hello world, with the same
//! runtime flavour and release profile as the six functions, so that their init is measured
//! against what the runtime itself costs on the same machine in the same run.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|_: LambdaEvent<Value>| async { Ok::<_, Error>(json!({})) })).await
}

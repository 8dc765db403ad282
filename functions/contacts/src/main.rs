//! The contacts category function: see docs/design.md §2 and docs/.
use dataflows_shared::{app, Category};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    app::run(Category::Contacts).await
}

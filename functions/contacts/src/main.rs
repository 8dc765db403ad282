//! The contacts category function: see docs/design.md §2 and docs/.
use dataflows_shared::{app, Category};

fn main() -> Result<(), lambda_runtime::Error> {
    app::main(Category::Contacts)
}

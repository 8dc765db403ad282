//! Every sample in events/ (the `sam local invoke -e` files, also what `make demo` publishes) is a
//! valid SQS event whose body parses as the input type its file is named after.

use std::path::PathBuf;

use aws_lambda_events::event::sqs::SqsEvent;
use dataflows_shared::event::{parse_event, EventType};

#[test]
fn every_sample_parses_as_its_type() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events");
    for ty in EventType::ALL {
        let path = dir.join(format!("{}.json", ty.as_str()));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let event: SqsEvent = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(event.records.len(), 1, "{}", path.display());
        let body = event.records[0].body.as_deref().unwrap();
        let parsed = parse_event(body).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(parsed.event_type(), *ty);
    }
}

//! sms.status_changed: a delivery receipt against the message's stored status, as a pure
//! transition (docs/design.md §6). Duplicates, out-of-order receipts and a final status
//! regressing emit nothing; a redelivered receipt emits again with the status it replaced.

use serde::{Deserialize, Serialize};

use crate::event::{Status, Timestamp};

/// The last status applied to one message, and the receipts that changed it (to send their
/// webhook again, with the same previous status, if one of them is redelivered).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageStatus {
    pub status: Status,
    pub occurred_at: Timestamp,
    #[serde(default)]
    pub applied: Vec<AppliedReceipt>,
}

/// One receipt that changed a message's status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppliedReceipt {
    pub event_id: String,
    pub previous: Option<Status>,
}

/// Receipts remembered per message (a message has at most six statuses).
pub const RECEIPTS_KEPT: usize = 8;

/// Whether a receipt changes the message's status: not a duplicate, not older than what was
/// applied, and not a final status regressing. `Some(previous status)` when it does.
pub fn status_transition(prev: Option<&MessageStatus>, status: Status, at: Timestamp) -> Option<Option<Status>> {
    match prev {
        None => Some(None),
        Some(p) if at < p.occurred_at => None,  // stale, out of order
        Some(p) if p.status == status => None,  // duplicate
        Some(p) if p.status.is_final() => None, // a final status does not change
        Some(p) => Some(Some(p.status)),
    }
}

/// What a receipt does to a message's status.
#[derive(Debug, Clone, PartialEq)]
pub enum StatusStep {
    /// This receipt was applied before (a redelivery): emit again with the same previous status.
    Again(Option<Status>),
    /// A change: emit with `previous` and store `next`.
    Apply {
        previous: Option<Status>,
        next: MessageStatus,
    },
    /// A duplicate, stale or regressing receipt: nothing.
    Ignore,
}

pub fn status_step(prev: Option<&MessageStatus>, event_id: &str, status: Status, at: Timestamp) -> StatusStep {
    if let Some(a) = prev.and_then(|p| p.applied.iter().find(|a| a.event_id == event_id)) {
        return StatusStep::Again(a.previous);
    }
    let Some(previous) = status_transition(prev, status, at) else {
        return StatusStep::Ignore;
    };
    let mut applied = prev.map(|p| p.applied.clone()).unwrap_or_default();
    applied.push(AppliedReceipt {
        event_id: event_id.to_string(),
        previous,
    });
    let excess = applied.len().saturating_sub(RECEIPTS_KEPT);
    applied.drain(..excess);
    StatusStep::Apply {
        previous,
        next: MessageStatus {
            status,
            occurred_at: at,
            applied,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    #[test]
    fn status_transitions() {
        let t0 = ts("2026-11-30T10:00:00Z");
        let t1 = ts("2026-11-30T10:01:00Z");
        let sent = MessageStatus {
            status: Status::Sent,
            occurred_at: t1,
            applied: vec![],
        };
        let delivered = MessageStatus {
            status: Status::Delivered,
            occurred_at: t1,
            applied: vec![],
        };
        assert_eq!(status_transition(None, Status::Sent, t0), Some(None), "first receipt");
        assert_eq!(
            status_transition(Some(&sent), Status::Delivered, t1),
            Some(Some(Status::Sent)),
            "same instant, new status"
        );
        assert_eq!(status_transition(Some(&sent), Status::Sent, t1), None, "duplicate");
        assert_eq!(
            status_transition(Some(&sent), Status::Pending, t0),
            None,
            "out of order (older)"
        );
        assert_eq!(
            status_transition(Some(&delivered), Status::Sent, ts("2026-11-30T10:05:00Z")),
            None,
            "final regressing"
        );
        assert_eq!(
            status_transition(Some(&delivered), Status::Failed, ts("2026-11-30T10:05:00Z")),
            None,
            "final is final"
        );
    }

    #[test]
    fn a_redelivered_receipt_emits_again_with_its_previous_status() {
        let t = |m: u32| ts(&format!("2026-11-30T10:{m:02}:00Z"));
        let StatusStep::Apply { previous: None, next } = status_step(None, "e1", Status::Sent, t(0)) else {
            panic!("first receipt applies")
        };
        let StatusStep::Apply { previous, next } = status_step(Some(&next), "e2", Status::Delivered, t(1)) else {
            panic!("a change applies")
        };
        assert_eq!(previous, Some(Status::Sent));
        // e1 and e2 redelivered after e2 was applied: each emits again as it did.
        assert_eq!(
            status_step(Some(&next), "e1", Status::Sent, t(0)),
            StatusStep::Again(None)
        );
        assert_eq!(
            status_step(Some(&next), "e2", Status::Delivered, t(1)),
            StatusStep::Again(Some(Status::Sent))
        );
        // A duplicate receipt under another id: nothing.
        assert_eq!(
            status_step(Some(&next), "e3", Status::Delivered, t(2)),
            StatusStep::Ignore
        );
        // The history is bounded.
        let StatusStep::Apply { next: mut cur, .. } = status_step(None, "y", Status::Sent, t(0)) else {
            panic!("first receipt applies")
        };
        for i in 0..20 {
            let status = if i % 2 == 0 { Status::Pending } else { Status::Sent };
            if let StatusStep::Apply { next, .. } = status_step(Some(&cur), &format!("x{i}"), status, t(3 + i)) {
                cur = next;
            }
        }
        assert_eq!(cur.applied.len(), RECEIPTS_KEPT);
    }
}

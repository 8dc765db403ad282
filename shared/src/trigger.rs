//! The 17 webhook triggers (docs/design.md §4), the three operational webhooks, and the six
//! categories that emit them (§2).

use std::fmt;
use std::str::FromStr;

use crate::event::EventType;

macro_rules! triggers {
    (
        $($variant:ident = $name:literal in $cat:ident),+ ;
        $($op:ident = $op_name:literal),+ $(,)?
    ) => {
        /// A webhook type a subscriber can ask for: one of the 17 triggers the platform's events
        /// fire, or one of the operational webhooks delivery itself fires.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Trigger { $($variant),+, $($op),+ }

        impl Trigger {
            /// The 17 triggers the platform's events fire (what `"triggers": "*"` means).
            pub const ALL: &'static [Trigger] = &[$(Trigger::$variant),+];
            /// The webhooks about delivery itself, sent to an account's other subscriptions
            /// (docs/webhooks.md, "Operational webhooks"); a subscription names them to get them.
            pub const OPERATIONAL: &'static [Trigger] = &[$(Trigger::$op),+];
            /// Every webhook type, the operational ones last.
            pub const EVERY: &'static [Trigger] = &[$(Trigger::$variant),+, $(Trigger::$op),+];
            pub fn as_str(self) -> &'static str {
                match self { $(Trigger::$variant => $name,)+ $(Trigger::$op => $op_name),+ }
            }
            /// The category (function) that emits this trigger; none for the operational
            /// webhooks, which every category sends about its own deliveries.
            pub fn category(self) -> Option<Category> {
                match self { $(Trigger::$variant => Some(Category::$cat),)+ $(Trigger::$op => None),+ }
            }
            pub fn is_operational(self) -> bool {
                self.category().is_none()
            }
        }

        impl FromStr for Trigger {
            type Err = UnknownTrigger;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($name => Ok(Trigger::$variant),)+
                    $($op_name => Ok(Trigger::$op),)+
                    _ => Err(UnknownTrigger(s.to_string())),
                }
            }
        }
    };
}

triggers! {
    SmsReceived = "sms.received" in Sms,
    SmsStatusChanged = "sms.status_changed" in Sms,
    BalanceLow = "balance.low" in Operations,
    CampaignStarted = "campaign.started" in Operations,
    CampaignCompleted = "campaign.completed" in Operations,
    CampaignFailed = "campaign.failed" in Operations,
    ContactAdded = "contact.added" in Contacts,
    ContactUpdated = "contact.updated" in Contacts,
    ContactDeleted = "contact.deleted" in Contacts,
    MessageScheduled = "message.scheduled" in Messaging,
    MessageCancelled = "message.cancelled" in Messaging,
    KeywordMatched = "keyword.matched" in Messaging,
    AutoReplySent = "auto_reply.sent" in Messaging,
    DeliveryRateLow = "delivery_rate.low" in Performance,
    BounceRateHigh = "bounce_rate.high" in Performance,
    SenderIdApproved = "sender_id.approved" in Admin,
    SenderIdRejected = "sender_id.rejected" in Admin;
    SubscriptionFailing = "subscription.failing",
    SubscriptionDisabled = "subscription.disabled",
    WebhookDeadLettered = "webhook.dead_lettered",
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a trigger name")]
pub struct UnknownTrigger(pub String);

/// One function of the bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    Sms,
    Operations,
    Contacts,
    Messaging,
    Performance,
    Admin,
}

impl Category {
    pub const ALL: &'static [Category] = &[
        Category::Sms,
        Category::Operations,
        Category::Contacts,
        Category::Messaging,
        Category::Performance,
        Category::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Sms => "sms",
            Category::Operations => "operations",
            Category::Contacts => "contacts",
            Category::Messaging => "messaging",
            Category::Performance => "performance",
            Category::Admin => "admin",
        }
    }

    /// The input event types this category's queue receives (docs/design.md §2). template.yaml's
    /// SNS filter policies must say the same; a test on the emulator checks that they do.
    pub fn consumes(self) -> &'static [EventType] {
        use EventType::*;
        match self {
            Category::Sms => &[SmsReceived, SmsStatusChanged],
            Category::Operations => &[BalanceChanged, CampaignStarted, CampaignCompleted, CampaignFailed],
            Category::Contacts => &[ContactAdded, ContactUpdated, ContactDeleted],
            Category::Messaging => &[MessageScheduled, MessageCancelled, SmsReceived, AutoReplySent],
            Category::Performance => &[SmsStatusChanged],
            Category::Admin => &[SenderIdApproved, SenderIdRejected],
        }
    }

    pub fn triggers(self) -> impl Iterator<Item = Trigger> {
        Trigger::ALL.iter().copied().filter(move |t| t.category() == Some(self))
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seventeen_triggers_each_named_once() {
        assert_eq!(Trigger::ALL.len(), 17);
        for t in Trigger::ALL {
            assert_eq!(t.as_str().parse::<Trigger>(), Ok(*t));
        }
        let total: usize = Category::ALL.iter().map(|c| c.triggers().count()).sum();
        assert_eq!(total, 17);
        assert_eq!(Trigger::OPERATIONAL.len(), 3);
        assert_eq!(Trigger::EVERY.len(), 20);
        for t in Trigger::EVERY {
            assert_eq!(t.as_str().parse::<Trigger>(), Ok(*t));
            assert_eq!(t.is_operational(), Trigger::OPERATIONAL.contains(t));
        }
        assert_eq!(
            "sms.exploded".parse::<Trigger>(),
            Err(UnknownTrigger("sms.exploded".into()))
        );
    }

    #[test]
    fn every_input_type_is_consumed_somewhere() {
        for t in EventType::ALL {
            assert!(
                Category::ALL.iter().any(|c| c.consumes().contains(t)),
                "{t} is consumed by nobody"
            );
        }
    }
}

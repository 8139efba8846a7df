//! The management-events baseline of `cloudtrail.ensure_logging`: a trail
//! can be logging and still record nothing an intruder does, once its event
//! selectors leave management events out (Stratus
//! `aws.defense-evasion.cloudtrail-event-selectors`).
//!
//! AWS behaviour relied on (CloudTrail API reference, PutEventSelectors):
//! - "If the event matches any event selector, the trail processes and logs
//!   the event": one selector taking every management event, read and
//!   write, restores the record, whatever the others say. It is added; the
//!   trail's own selectors (its data events) stay.
//! - A trail has either basic `EventSelectors` (at most five) or
//!   `AdvancedEventSelectors`, never both; the call "must be called from
//!   the Region in which the trail was created".
//! - A basic selector logs every management event when
//!   `IncludeManagementEvents` is true, `ReadWriteType` is `All` and it
//!   excludes no event source; an advanced one when its only field is
//!   `eventCategory` equal to `Management`.

use aws_sdk_cloudtrail::types::{
    AdvancedEventSelector, AdvancedFieldSelector, EventSelector, ReadWriteType,
};
use serde::{Deserialize, Serialize};

use crate::actions::Ctx;
use crate::actions::call::{ArnOf, Call, Inverse, Inverting};
use crate::aws::{AwsError, local};

/// Name of the advanced selector this action adds.
const SELECTOR_NAME: &str = "breakglass: every management event";

/// A trail's selectors, as they decide whether management events are kept.
pub(super) struct Selectors {
    basic: Vec<EventSelector>,
    advanced: Vec<AdvancedEventSelector>,
}

impl Selectors {
    /// Whether every management event, read and write, is logged.
    pub(super) fn log_management(&self) -> bool {
        let basic_all = |s: &EventSelector| {
            s.include_management_events() != Some(false)
                && s.read_write_type().is_none_or(|r| *r == ReadWriteType::All)
                && s.exclude_management_event_sources().is_empty()
        };
        let advanced_all = |s: &AdvancedEventSelector| {
            let fields = s.field_selectors();
            fields.len() == 1
                && fields[0].field() == "eventCategory"
                && fields[0].equals() == ["Management"]
        };
        // No selector at all is CloudTrail's default: every management event.
        (self.basic.is_empty() && self.advanced.is_empty())
            || self.basic.iter().any(basic_all)
            || self.advanced.iter().any(advanced_all)
    }
}

/// The trail's event selectors, read in its home region.
pub(super) async fn read(ctx: &Ctx, region: &str, trail_arn: &str) -> Result<Selectors, AwsError> {
    let ct = ctx.clients.cloudtrail(region);
    let out = ctx
        .call_in(region, "cloudtrail:GetEventSelectors", || {
            ct.get_event_selectors().trail_name(trail_arn).send()
        })
        .await?;
    Ok(Selectors {
        basic: out.event_selectors().to_vec(),
        advanced: out.advanced_event_selectors().to_vec(),
    })
}

/// Adds a selector for every management event to one trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogManagementEvents {
    /// The trail's home region: the only one that accepts the call.
    pub region: String,
    pub trail_arn: String,
}

impl Call for LogManagementEvents {
    fn describe(&self) -> String {
        format!(
            "cloudtrail:PutEventSelectors TrailName={} (its selectors plus one for every management event; in {})",
            self.trail_arn, self.region
        )
    }

    fn drift(&self) -> String {
        "does not log every management event".into()
    }

    fn permission_checks(&self, _arn_of: &ArnOf) -> Vec<(&'static str, String)> {
        vec![("cloudtrail:PutEventSelectors", self.trail_arn.clone())]
    }

    async fn apply(&self, ctx: &Ctx) -> Result<Option<serde_json::Value>, AwsError> {
        let Self { region, trail_arn } = self;
        // Read again at the moment of the call: the selectors are replaced
        // whole, so what is kept must be what is there now. A retry after a
        // lost answer finds the selector in place and makes no call.
        let now = read(ctx, region, trail_arn).await?;
        if now.log_management() {
            return Ok(None);
        }
        let ct = ctx.clients.cloudtrail(region);
        let call = ct.put_event_selectors().trail_name(trail_arn);
        let call = if now.advanced.is_empty() {
            if now.basic.len() >= 5 {
                return Err(local(
                    "cloudtrail:PutEventSelectors",
                    "the trail already has five event selectors, CloudTrail's limit: add management events to one of them by hand".into(),
                ));
            }
            let mut basic = now.basic;
            basic.push(
                EventSelector::builder()
                    .read_write_type(ReadWriteType::All)
                    .include_management_events(true)
                    .build(),
            );
            call.set_event_selectors(Some(basic))
        } else {
            let field = AdvancedFieldSelector::builder()
                .field("eventCategory")
                .equals("Management")
                .build()
                .map_err(|e| local("cloudtrail:PutEventSelectors", e.to_string()))?;
            let mut advanced = now.advanced;
            advanced.push(
                AdvancedEventSelector::builder()
                    .name(SELECTOR_NAME)
                    .field_selectors(field)
                    .build()
                    .map_err(|e| local("cloudtrail:PutEventSelectors", e.to_string()))?,
            );
            call.set_advanced_event_selectors(Some(advanced))
        };
        ctx.call_in(region, "cloudtrail:PutEventSelectors", || {
            call.clone().send()
        })
        .await
        .map(|_| None)
    }

    fn inverse(&self, _facts: &Inverting) -> Inverse {
        Inverse::Kept {
            why: format!(
                "trail {} keeps logging every management event: narrowing it again would repeat the attacker's move",
                self.trail_arn
            ),
        }
    }
}

//! A tenant's subscription state and the moves between states that make sense.

use std::fmt;

use chrono::{DateTime, Datelike, Months, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionState {
    Trialing,
    Active,
    PastDue,
    Suspended,
    Canceled,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a subscription cannot go from {from} to {to}")]
pub struct TransitionError {
    pub from: SubscriptionState,
    pub to: SubscriptionState,
}

impl SubscriptionState {
    pub const ALL: [Self; 5] = [Self::Trialing, Self::Active, Self::PastDue, Self::Suspended, Self::Canceled];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Trialing => "trialing",
            Self::Active => "active",
            Self::PastDue => "past_due",
            Self::Suspended => "suspended",
            Self::Canceled => "canceled",
        }
    }

    /// Whether the tenant's ERP runs in this state (a suspended or canceled one is scaled to zero).
    pub fn runs(&self) -> bool {
        matches!(self, Self::Trialing | Self::Active | Self::PastDue)
    }

    /// The move to `to`, if allowed. Canceled is final; staying put is always allowed (so that a
    /// repeated request is idempotent).
    pub fn transition(self, to: Self) -> Result<Self, TransitionError> {
        use SubscriptionState::*;
        let allowed = self == to
            || matches!(
                (self, to),
                (Trialing, Active | PastDue | Suspended | Canceled)
                    | (Active, PastDue | Suspended | Canceled)
                    | (PastDue, Active | Suspended | Canceled)
                    | (Suspended, Active | Canceled)
            );
        if allowed { Ok(to) } else { Err(TransitionError { from: self, to }) }
    }

    /// The state a suspended subscription resumes to: the one it had before the suspension
    /// (`before`), so resuming neither ends a trial nor settles an overdue account. A trial that
    /// ended while suspended resumes as what an ended trial becomes: `past_due`. A suspension
    /// recorded before the earlier state was kept (`None`) resumes as `active`, as it always did.
    pub fn on_resume(before: Option<Self>, trial_ends_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Self {
        match before {
            Some(Self::Trialing) if trial_ends_at.is_some_and(|ends| ends <= now) => Self::PastDue,
            Some(state @ (Self::Trialing | Self::Active | Self::PastDue)) => state,
            Some(Self::Suspended | Self::Canceled) | None => Self::Active,
        }
    }
}

impl fmt::Display for SubscriptionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SubscriptionState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|state| state.as_str() == s).ok_or_else(|| {
            format!("unknown subscription state {s:?}; one of {}", Self::ALL.map(|state| state.as_str()).join(", "))
        })
    }
}

/// When the billing period after `now` starts. Periods are calendar months from the anchor: the
/// end of the trial when there was one (the first paid period starts then), else the
/// subscription's start. A day the month lacks (the 31st) falls on the month's last day.
pub fn next_period_start(
    started_at: DateTime<Utc>,
    trial_ends_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    let anchor = trial_ends_at.unwrap_or(started_at);
    if anchor > now {
        return anchor;
    }
    // Whole months since the anchor, then the first anniversary after `now`.
    let months = (now.year() - anchor.year()) * 12 + now.month() as i32 - anchor.month() as i32;
    let mut months = u32::try_from(months.max(0)).unwrap_or(0);
    loop {
        match anchor.checked_add_months(Months::new(months)) {
            Some(at) if at > now => return at,
            Some(_) => months += 1,
            None => return now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SubscriptionState::*;
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn the_next_period_starts_on_the_anchors_monthly_anniversary() {
        let start = at("2026-01-31T10:00:00Z");
        assert_eq!(next_period_start(start, None, at("2026-02-10T00:00:00Z")), at("2026-02-28T10:00:00Z"));
        assert_eq!(next_period_start(start, None, at("2026-03-01T00:00:00Z")), at("2026-03-31T10:00:00Z"));
        assert_eq!(next_period_start(start, None, at("2026-03-31T10:00:00Z")), at("2026-04-30T10:00:00Z"));
        // A trial in progress: the first period starts when it ends; after it, months from then.
        let trial_end = at("2026-02-14T10:00:00Z");
        assert_eq!(next_period_start(start, Some(trial_end), at("2026-02-01T00:00:00Z")), trial_end);
        assert_eq!(next_period_start(start, Some(trial_end), at("2026-05-20T00:00:00Z")), at("2026-06-14T10:00:00Z"));
    }

    #[test]
    fn resuming_returns_to_the_state_before_the_suspension() {
        let ends = at("2026-02-14T10:00:00Z");
        let before_end = at("2026-02-10T00:00:00Z");
        assert_eq!(SubscriptionState::on_resume(Some(Trialing), Some(ends), before_end), Trialing);
        assert_eq!(SubscriptionState::on_resume(Some(Trialing), Some(ends), ends), PastDue, "the trial ended");
        assert_eq!(SubscriptionState::on_resume(Some(PastDue), None, before_end), PastDue);
        assert_eq!(SubscriptionState::on_resume(Some(Active), None, before_end), Active);
        assert_eq!(SubscriptionState::on_resume(None, None, before_end), Active, "suspended before it was kept");
    }

    #[test]
    fn canceled_is_final_and_suspended_moves_by_patch_only_to_active() {
        for to in SubscriptionState::ALL {
            assert_eq!(Canceled.transition(to).is_ok(), to == Canceled, "{to}");
        }
        assert_eq!(Suspended.transition(Active), Ok(Active));
        assert!(Suspended.transition(Trialing).is_err());
        assert!(Active.transition(Trialing).is_err());
        assert_eq!(Active.transition(Active), Ok(Active));
    }

    #[test]
    fn names_round_trip() {
        for state in SubscriptionState::ALL {
            assert_eq!(state.as_str().parse::<SubscriptionState>(), Ok(state));
            assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
        }
        assert!("paused".parse::<SubscriptionState>().unwrap_err().contains("past_due"));
        assert!(!Suspended.runs() && Trialing.runs());
    }
}

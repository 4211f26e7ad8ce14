//! A tenant's subscription state and the moves between states that make sense.

use std::fmt;

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

#[cfg(test)]
mod tests {
    use super::SubscriptionState::*;
    use super::*;

    #[test]
    fn canceled_is_final_and_resuming_goes_to_active() {
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

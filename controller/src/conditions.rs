//! Typed status conditions: set one, keep `lastTransitionTime` while its status holds.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// `True`, `False` or `Unknown`, as Kubernetes spells a condition status.
pub fn status_str(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

/// One condition to set: type, status, reason (CamelCase) and a message for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cond {
    /// Condition type (`Ready`, ...).
    pub type_: &'static str,
    /// Whether it holds.
    pub status: bool,
    /// Machine-readable reason.
    pub reason: String,
    /// What happened and what to do about it.
    pub message: String,
}

impl Cond {
    /// A condition from its parts.
    pub fn new(
        type_: &'static str,
        status: bool,
        reason: &str,
        message: impl Into<String>,
    ) -> Self {
        Cond {
            type_,
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// Set `c` in `conds`: replace the condition of the same type, keeping its
/// `lastTransitionTime` when the status does not change; append it otherwise.
pub fn set(conds: &mut Vec<Condition>, c: &Cond, generation: Option<i64>, now: Timestamp) {
    let status = status_str(c.status).to_string();
    let message: String = c.message.chars().take(32 * 1024).collect();
    if let Some(old) = conds.iter_mut().find(|o| o.type_ == c.type_) {
        if old.status != status {
            old.last_transition_time = Time(now);
        }
        old.status = status;
        old.reason = c.reason.clone();
        old.message = message;
        old.observed_generation = generation;
    } else {
        conds.push(Condition {
            type_: c.type_.to_string(),
            status,
            reason: c.reason.clone(),
            message,
            observed_generation: generation,
            last_transition_time: Time(now),
        });
    }
}

/// The condition of a type, if present.
pub fn get<'a>(conds: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conds.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of a type is present and `True`.
pub fn is_true(conds: &[Condition], type_: &str) -> bool {
    get(conds, type_).is_some_and(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let t0 = Timestamp::from_second(1_000).unwrap();
        let t1 = Timestamp::from_second(2_000).unwrap();
        let t2 = Timestamp::from_second(3_000).unwrap();
        let mut v = Vec::new();
        set(&mut v, &Cond::new("Ready", false, "A", "a"), Some(1), t0);
        set(&mut v, &Cond::new("Ready", false, "B", "b"), Some(2), t1);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].last_transition_time, Time(t0));
        assert_eq!(v[0].reason, "B");
        assert_eq!(v[0].observed_generation, Some(2));
        set(&mut v, &Cond::new("Ready", true, "C", "c"), Some(2), t2);
        assert_eq!(v[0].last_transition_time, Time(t2));
        assert_eq!(v[0].status, "True");
        set(&mut v, &Cond::new("Degraded", false, "D", "d"), Some(2), t2);
        assert_eq!(v.len(), 2);
        assert!(is_true(&v, "Ready"));
        assert!(!is_true(&v, "Degraded"));
        assert!(!is_true(&v, "Progressing"));
    }
}

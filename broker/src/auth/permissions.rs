//! Compiled publish/subscribe permissions and the checks nats-server makes with them.

use std::time::Duration;

use crate::options::{Permissions, SubjectPermission};
use crate::subject;

/// One permission entry: a subject pattern and, for subscribe entries, an optional queue.
#[derive(Debug, Clone)]
struct Entry {
    subject: String,
    queue: Option<String>,
}

/// An allow list (`None`: everything allowed) and a deny list.
#[derive(Debug, Clone, Default)]
struct Rules {
    allow: Option<Vec<Entry>>,
    deny: Vec<Entry>,
}

/// A user's permissions, ready to check.
#[derive(Debug, Clone, Default)]
pub struct Perms {
    publish: Rules,
    subscribe: Rules,
    /// `allow_responses`: how many replies per request, and for how long (zero: no expiry).
    pub responses: Option<(u32, Duration)>,
}

fn entries(list: &[String], with_queue: bool) -> Vec<Entry> {
    list.iter()
        .map(|s| {
            let s = s.trim();
            match s.split_once(char::is_whitespace) {
                Some((subj, q)) if with_queue => Entry {
                    subject: subj.to_string(),
                    queue: Some(q.trim().to_string()),
                },
                _ => Entry {
                    subject: s.to_string(),
                    queue: None,
                },
            }
        })
        .collect()
}

fn rules(p: Option<&SubjectPermission>, with_queue: bool) -> Rules {
    match p {
        None => Rules::default(),
        Some(p) => Rules {
            allow: if p.allow.is_empty() && !p.deny.is_empty() {
                None
            } else {
                Some(entries(&p.allow, with_queue))
            },
            deny: entries(&p.deny, with_queue),
        },
    }
}

impl Perms {
    /// Compiles configured permissions.
    pub fn compile(p: &Permissions) -> Perms {
        let mut publish = rules(p.publish.as_ref(), false);
        let responses = p
            .allow_responses
            .as_ref()
            .map(|r| (r.max.max(1) as u32, r.expires));
        // nats-server: allow_responses without publish permissions means "nothing else".
        if responses.is_some() && p.publish.is_none() {
            publish.allow = Some(Vec::new());
        }
        Perms {
            publish,
            subscribe: rules(p.subscribe.as_ref(), true),
            responses,
        }
    }

    /// Whether publishing to the literal `subject` is allowed (deny wins over allow).
    pub fn can_publish(&self, subject: &str) -> bool {
        let allowed = match &self.publish.allow {
            None => true,
            Some(allow) => allow.iter().any(|e| subject::matches(subject, &e.subject)),
        };
        allowed
            && !self
                .publish
                .deny
                .iter()
                .any(|e| subject::matches(subject, &e.subject))
    }

    /// Whether subscribing to `subject` (possibly with wildcards) in `queue` is allowed.
    ///
    /// A subscription's wildcards are matched as tokens against the entries, as nats-server's
    /// sublist does: `foo.*` is allowed by `foo.*` or `foo.>`, not by `foo.bar`.
    pub fn can_subscribe(&self, subject: &str, queue: Option<&str>) -> bool {
        let hit = |e: &Entry| {
            pattern_covers(&e.subject, subject)
                && match (&e.queue, queue) {
                    (None, _) => true,
                    (Some(eq), Some(q)) => subject::matches(q, eq),
                    (Some(_), None) => false,
                }
        };
        let allowed = match &self.subscribe.allow {
            None => true,
            Some(allow) => allow.iter().any(hit),
        };
        allowed
            && !self.subscribe.deny.iter().any(|e| {
                e.queue.is_none() && pattern_covers(&e.subject, subject)
                    || e.queue.is_some() && hit(e)
            })
    }

    /// Whether a subscribe deny entry (without a queue) matches the literal `subject`
    /// (nats-server's `checkDenySub`).
    pub fn sub_denied(&self, subject: &str) -> bool {
        self.subscribe
            .deny
            .iter()
            .any(|e| e.queue.is_none() && subject::matches(subject, &e.subject))
    }

    /// For an allowed wildcard subscription that overlaps a deny entry, the deny subjects that
    /// must be filtered out of its deliveries (nats-server's deny-on-delivery check).
    pub fn deny_filter_for(&self, subject: &str) -> Vec<String> {
        if !subject::subject_has_wildcard(subject) {
            return Vec::new();
        }
        self.subscribe
            .deny
            .iter()
            .filter(|e| e.queue.is_none() && overlaps(&e.subject, subject))
            .map(|e| e.subject.clone())
            .collect()
    }
}

/// Whether `pattern` matches every subject `sub` can match, treating `sub`'s wildcards as
/// tokens (so `foo.>` covers `foo.*` and `foo.bar`, but `foo.*` does not cover `foo.>`).
fn pattern_covers(pattern: &str, sub: &str) -> bool {
    let mut p = pattern.split('.');
    let mut s = sub.split('.');
    loop {
        match (p.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(t)) if t != ">" => {}
            (Some(pt), Some(st)) if pt == st => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether two patterns can match a common subject.
fn overlaps(a: &str, b: &str) -> bool {
    let mut x = a.split('.');
    let mut y = b.split('.');
    loop {
        match (x.next(), y.next()) {
            (Some(">"), Some(_)) | (Some(_), Some(">")) => return true,
            (Some(p), Some(q)) if p == "*" || q == "*" || p == q => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::ResponsePermission;

    fn sp(allow: &[&str], deny: &[&str]) -> Option<SubjectPermission> {
        Some(SubjectPermission {
            allow: allow.iter().map(|s| s.to_string()).collect(),
            deny: deny.iter().map(|s| s.to_string()).collect(),
        })
    }

    #[test]
    fn publish_allow_and_deny() {
        let p = Perms::compile(&Permissions {
            publish: sp(&["orders.>", "status"], &["orders.secret"]),
            ..Default::default()
        });
        assert!(p.can_publish("orders.new"));
        assert!(p.can_publish("status"));
        assert!(!p.can_publish("orders.secret"));
        assert!(!p.can_publish("other"));
        let deny_only = Perms::compile(&Permissions {
            publish: sp(&[], &["admin.>"]),
            ..Default::default()
        });
        assert!(deny_only.can_publish("anything"));
        assert!(!deny_only.can_publish("admin.x"));
    }

    #[test]
    fn subscribe_wildcards_and_queues() {
        let p = Perms::compile(&Permissions {
            subscribe: sp(&["foo.*", "bar.>", "work q1"], &["bar.secret"]),
            ..Default::default()
        });
        assert!(p.can_subscribe("foo.a", None));
        assert!(p.can_subscribe("foo.*", None));
        assert!(!p.can_subscribe("foo.>", None));
        assert!(p.can_subscribe("bar.x.y", None));
        assert!(!p.can_subscribe("bar.secret", None));
        assert!(p.can_subscribe("work", Some("q1")));
        assert!(!p.can_subscribe("work", Some("q2")));
        assert!(!p.can_subscribe("work", None));
        assert_eq!(p.deny_filter_for("bar.>"), vec!["bar.secret".to_string()]);
        assert!(p.deny_filter_for("bar.x").is_empty());
    }

    #[test]
    fn allow_responses_alone_denies_other_publishes() {
        let p = Perms::compile(&Permissions {
            allow_responses: Some(ResponsePermission {
                max: 1,
                expires: Duration::ZERO,
            }),
            ..Default::default()
        });
        assert!(!p.can_publish("anything"));
        assert_eq!(p.responses, Some((1, Duration::ZERO)));
    }
}

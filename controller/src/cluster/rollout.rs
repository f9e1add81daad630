//! Health-gated rolling upgrades through the StatefulSet partition.
//!
//! The StatefulSet is applied with `updateStrategy.rollingUpdate.partition`: pods with an
//! ordinal at or above the partition run the update revision, the others stay where they are.
//! When the pod template changes, the partition is raised to `replicas` in the same apply
//! (nothing restarts), then lowered one ordinal at a time from the highest down, each time
//! only after every pod at or above the partition runs the update revision and is Ready and the
//! pod at the partition (the one updated last) answers its broker `/healthz` (JetStream
//! included). [`decide`] makes that decision from what was observed, without I/O.

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

pub use crate::render::TEMPLATE_HASH_ANNOTATION;
/// Pod label with the StatefulSet revision the pod was created from.
pub const REVISION_LABEL: &str = "controller-revision-hash";

/// One broker pod as the decision needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodState {
    /// Ordinal (`<statefulset>-<ordinal>`).
    pub ordinal: i32,
    /// Pod name.
    pub name: String,
    /// Its `controller-revision-hash` label.
    pub revision: Option<String>,
    /// Whether its `Ready` condition is `True`.
    pub ready: bool,
    /// Whether it is being deleted.
    pub terminating: bool,
    /// Its IP, once it has one.
    pub ip: Option<String>,
}

impl PodState {
    /// The state of a pod of StatefulSet `sts`; `None` for pods that are not its ordinals.
    pub fn from_pod(sts: &str, pod: &Pod) -> Option<PodState> {
        let name = pod.metadata.name.clone()?;
        let ordinal: i32 = name.strip_prefix(sts)?.strip_prefix('-')?.parse().ok()?;
        let status = pod.status.as_ref();
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        Some(PodState {
            ordinal,
            revision: pod
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(REVISION_LABEL).cloned()),
            ready,
            terminating: pod.metadata.deletion_timestamp.is_some(),
            ip: status.and_then(|s| s.pod_ip.clone()),
            name,
        })
    }
}

/// What the live StatefulSet says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LiveSts {
    /// Its template hash annotation.
    pub template_hash: Option<String>,
    /// `spec.updateStrategy.rollingUpdate.partition`.
    pub partition: Option<i32>,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// `status.observedGeneration`.
    pub observed_generation: Option<i64>,
    /// `status.currentRevision`.
    pub current_revision: Option<String>,
    /// `status.updateRevision`.
    pub update_revision: Option<String>,
}

impl LiveSts {
    /// The parts of a StatefulSet read from the API server.
    pub fn from_sts(sts: &StatefulSet) -> LiveSts {
        let st = sts.status.as_ref();
        LiveSts {
            template_hash: sts
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(TEMPLATE_HASH_ANNOTATION).cloned()),
            partition: sts
                .spec
                .as_ref()
                .and_then(|s| s.update_strategy.as_ref())
                .and_then(|u| u.rolling_update.as_ref())
                .and_then(|r| r.partition),
            generation: sts.metadata.generation,
            observed_generation: st.and_then(|s| s.observed_generation),
            current_revision: st.and_then(|s| s.current_revision.clone()),
            update_revision: st.and_then(|s| s.update_revision.clone()),
        }
    }

    fn observed(&self) -> bool {
        match (self.observed_generation, self.generation) {
            (Some(o), Some(g)) => o >= g,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }
}

/// Everything the decision looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// Name of the StatefulSet (pods are `<name>-<ordinal>`).
    pub statefulset: String,
    /// Template hash of the StatefulSet about to be applied.
    pub desired_hash: String,
    /// Replicas about to be applied.
    pub replicas: i32,
    /// The StatefulSet on the server, if it exists.
    pub live: Option<LiveSts>,
    /// Its pods.
    pub pods: Vec<PodState>,
}

/// The result of a pod's `/healthz` (the error says what it answered).
pub type Health = Result<(), String>;

/// Where the rollout stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing to roll (every pod runs the update revision, or the StatefulSet is new).
    Idle,
    /// The rollout just finished: the last pod updated is Ready and healthy.
    Complete {
        /// The pod checked last.
        pod: String,
    },
    /// The pod template changes with this apply: every pod is held on its revision.
    TemplateChanged,
    /// The StatefulSet controller has not observed the latest generation yet.
    WaitingForStatefulSet,
    /// The decision needs this pod's `/healthz`: call [`decide`] again with it.
    CheckHealth {
        /// The pod at the partition.
        pod: PodState,
    },
    /// Held: this pod is not updated, Ready or healthy yet.
    Waiting {
        /// The pod waited on.
        pod: String,
        /// What is missing.
        why: String,
    },
    /// The partition goes down: this pod restarts on the update revision next.
    Rolling {
        /// The pod that rolls now.
        pod: String,
        /// The pod found Ready and healthy before, if any.
        after: Option<String>,
    },
}

/// The partition to apply and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// `spec.updateStrategy.rollingUpdate.partition` to apply.
    pub partition: i32,
    /// Where the rollout stands.
    pub step: Step,
}

impl Decision {
    /// Whether a rollout is under way (the reconciler polls until it is not).
    pub fn rolling(&self) -> bool {
        match self.step {
            Step::Idle | Step::Complete { .. } => false,
            // Any spec change makes the StatefulSet controller catch up; only a held
            // partition makes that part of a rollout.
            Step::WaitingForStatefulSet => self.partition > 0,
            _ => true,
        }
    }

    /// The `Progressing` message of an ongoing rollout, naming the pod waited on.
    pub fn message(&self, replicas: i32) -> String {
        let p = self.partition;
        match &self.step {
            Step::Idle => "no rolling update".into(),
            Step::Complete { pod } => {
                format!("rolling update complete: {pod} is Ready and healthy")
            }
            Step::TemplateChanged => format!(
                "the pod template changed: holding all {replicas} pods (partition {p}) until the \
                 StatefulSet controller has the new revision, then rolling one pod at a time \
                 from the highest ordinal"
            ),
            Step::WaitingForStatefulSet => format!(
                "rolling update (partition {p}): waiting for the StatefulSet controller to \
                 observe the latest generation"
            ),
            Step::CheckHealth { pod } => format!(
                "rolling update (partition {p}): checking /healthz of pod {}",
                pod.name
            ),
            Step::Waiting { pod, why } => format!(
                "rolling update (partition {p}): waiting for pod {pod}: {why}; the next pod \
                 rolls once it is Ready and its /healthz answers ok"
            ),
            Step::Rolling { pod, after } => match after {
                Some(a) => format!(
                    "rolling update (partition {p}): {a} is Ready and healthy; restarting {pod}"
                ),
                None => format!("rolling update (partition {p}): restarting {pod}"),
            },
        }
    }
}

/// The next partition. Call with `health: None` first; when the answer is
/// [`Step::CheckHealth`], check that pod and call again with its result.
pub fn decide(o: &Observed, health: Option<&Health>) -> Decision {
    let replicas = o.replicas.max(0);
    let Some(live) = &o.live else {
        // A new StatefulSet: no pod runs yet, nothing to protect.
        return Decision {
            partition: 0,
            step: Step::Idle,
        };
    };
    if live.template_hash.as_deref() != Some(o.desired_hash.as_str()) {
        return Decision {
            partition: replicas,
            step: Step::TemplateChanged,
        };
    }
    let p = live.partition.unwrap_or(0).clamp(0, replicas);
    let hold = |step| Decision { partition: p, step };
    if !live.observed() {
        return hold(Step::WaitingForStatefulSet);
    }
    let Some(update) = live.update_revision.as_deref() else {
        return hold(Step::WaitingForStatefulSet);
    };
    if p == 0 && live.current_revision.as_deref() == Some(update) {
        return hold(Step::Idle);
    }
    let pod = |i: i32| o.pods.iter().find(|x| x.ordinal == i && !x.terminating);
    let updated = |x: &PodState| x.revision.as_deref() == Some(update);
    // Every pod at or above the partition runs the update revision and is Ready.
    for i in p..replicas {
        match pod(i) {
            None => {
                return hold(Step::Waiting {
                    pod: format!("{}-{i}", o.statefulset),
                    why: "it does not exist yet (being recreated)".into(),
                })
            }
            Some(x) if !updated(x) => {
                return hold(Step::Waiting {
                    pod: x.name.clone(),
                    why: format!(
                        "it runs revision {} and is to be restarted on {update}",
                        x.revision.as_deref().unwrap_or("(none)")
                    ),
                })
            }
            Some(x) if !x.ready => {
                return hold(Step::Waiting {
                    pod: x.name.clone(),
                    why: format!("it runs revision {update} but is not Ready"),
                })
            }
            Some(_) => {}
        }
    }
    // The pod updated last (at the partition) answers /healthz.
    let mut after = None;
    if p < replicas {
        let Some(gate) = pod(p) else {
            return hold(Step::Idle);
        };
        match health {
            None => {
                return hold(Step::CheckHealth { pod: gate.clone() });
            }
            Some(Err(e)) => {
                return hold(Step::Waiting {
                    pod: gate.name.clone(),
                    why: format!("it is Ready but /healthz is not ok: {e}"),
                })
            }
            Some(Ok(())) => after = Some(gate.name.clone()),
        }
    }
    // The highest ordinal below the partition still on another revision rolls next.
    let next = (0..p)
        .rev()
        .find_map(|i| o.pods.iter().find(|x| x.ordinal == i && !updated(x)));
    match (next, after) {
        (Some(x), after) => Decision {
            partition: x.ordinal,
            step: Step::Rolling {
                pod: x.name.clone(),
                after,
            },
        },
        (None, Some(pod)) => Decision {
            partition: 0,
            step: Step::Complete { pod },
        },
        (None, None) => Decision {
            partition: 0,
            step: Step::Idle,
        },
    }
}

/// The pod a rollout waits on and since when (kept in the NatsCluster's status between
/// reconciles).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaitClock {
    /// The pod waited on.
    pub pod: String,
    /// When the rollout started waiting on it.
    pub since: Timestamp,
}

/// A rollout that has waited on one pod for longer than the deadline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stuck {
    /// The pod waited on.
    pub pod: String,
    /// The `Degraded` message: the pod, how long, why, and what to do.
    pub message: String,
}

/// The wait clock after `d` (started when the rollout begins waiting on a pod, kept while it
/// waits on the same pod, cleared otherwise), and whether the rollout is stuck: waiting on the
/// same pod for `deadline` or longer. Stuck changes nothing else: the partition stays, no pod
/// is forced.
pub fn stuck(
    d: &Decision,
    previous: Option<&WaitClock>,
    now: Timestamp,
    deadline: Duration,
) -> (Option<WaitClock>, Option<Stuck>) {
    let Step::Waiting { pod, why } = &d.step else {
        return (None, None);
    };
    let since = previous
        .filter(|c| &c.pod == pod && c.since <= now)
        .map_or(now, |c| c.since);
    let clock = WaitClock {
        pod: pod.clone(),
        since,
    };
    let waited = u64::try_from(now.as_second() - since.as_second()).unwrap_or(0);
    if waited < deadline.as_secs() {
        return (Some(clock), None);
    }
    let message = format!(
        "rolling update stuck on pod {pod} for {} (deadline {}): {why}; the rollout keeps \
         waiting and restarts no other pod: fix the pod (kubectl describe pod {pod}, its logs) \
         or revert the change that started the rollout",
        human(waited),
        human(deadline.as_secs()),
    );
    (
        Some(clock),
        Some(Stuck {
            pod: pod.clone(),
            message,
        }),
    )
}

/// `1h2m3s`-style text of whole seconds.
fn human(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(i: i32, rev: &str, ready: bool) -> PodState {
        PodState {
            ordinal: i,
            name: format!("nats-{i}"),
            revision: Some(rev.into()),
            ready,
            terminating: false,
            ip: None,
        }
    }

    fn live(partition: i32, current: &str, update: &str) -> LiveSts {
        LiveSts {
            template_hash: Some("h2".into()),
            partition: Some(partition),
            generation: Some(4),
            observed_generation: Some(4),
            current_revision: Some(current.into()),
            update_revision: Some(update.into()),
        }
    }

    fn obs(live: Option<LiveSts>, pods: Vec<PodState>) -> Observed {
        Observed {
            statefulset: "nats".into(),
            desired_hash: "h2".into(),
            replicas: 3,
            live,
            pods,
        }
    }

    /// Decide, answering a health check with `health` for the pod asked about.
    fn run(o: &Observed, health: impl Fn(&str) -> Health) -> Decision {
        let d = decide(o, None);
        match &d.step {
            Step::CheckHealth { pod } => decide(o, Some(&health(&pod.name))),
            _ => d,
        }
    }

    fn ok(_: &str) -> Health {
        Ok(())
    }

    #[test]
    fn a_new_statefulset_starts_at_partition_zero() {
        let d = decide(&obs(None, vec![]), None);
        assert_eq!(d.partition, 0);
        assert_eq!(d.step, Step::Idle);
        assert!(!d.rolling());
    }

    #[test]
    fn a_template_change_holds_every_pod() {
        let mut l = live(0, "a", "a");
        l.template_hash = Some("h1".into());
        let pods = vec![pod(0, "a", true), pod(1, "a", true), pod(2, "a", true)];
        let d = decide(&obs(Some(l.clone()), pods.clone()), None);
        assert_eq!((d.partition, &d.step), (3, &Step::TemplateChanged));
        assert!(d.rolling());
        // A StatefulSet of an older operator (no hash) is held the same way.
        l.template_hash = None;
        assert_eq!(decide(&obs(Some(l), pods), None).partition, 3);
    }

    #[test]
    fn steady_state_needs_no_health_check() {
        let pods = vec![pod(0, "a", true), pod(1, "a", true), pod(2, "a", true)];
        let d = decide(&obs(Some(live(0, "a", "a")), pods), None);
        assert_eq!((d.partition, d.step), (0, Step::Idle));
        // Even with no pods at all (e.g. nothing scheduled yet).
        let d = decide(&obs(Some(live(0, "a", "a")), vec![]), None);
        assert_eq!((d.partition, d.step), (0, Step::Idle));
    }

    #[test]
    fn waits_for_the_statefulset_controller_to_observe() {
        let mut l = live(3, "a", "a");
        l.observed_generation = Some(3);
        let d = decide(&obs(Some(l.clone()), vec![]), None);
        assert_eq!((d.partition, &d.step), (3, &Step::WaitingForStatefulSet));
        assert!(d.rolling());
        // A scale or other change at partition 0 is no rollout.
        let mut at0 = l.clone();
        at0.partition = Some(0);
        let d = decide(&obs(Some(at0), vec![]), None);
        assert_eq!((d.partition, &d.step), (0, &Step::WaitingForStatefulSet));
        assert!(!d.rolling());
        l.observed_generation = None;
        assert_eq!(decide(&obs(Some(l), vec![]), None).partition, 3);
    }

    #[test]
    fn the_highest_ordinal_rolls_first_without_a_gate() {
        let pods = vec![pod(0, "a", true), pod(1, "a", true), pod(2, "a", true)];
        let d = decide(&obs(Some(live(3, "a", "b")), pods), None);
        assert_eq!(d.partition, 2);
        assert_eq!(
            d.step,
            Step::Rolling {
                pod: "nats-2".into(),
                after: None
            }
        );
        assert!(d.message(3).contains("restarting nats-2"));
    }

    #[test]
    fn a_full_rollout_one_pod_at_a_time() {
        let o = |p, pods| obs(Some(live(p, "a", "b")), pods);
        // nats-2 restarted on b but not Ready yet: hold.
        let d = run(
            &o(
                2,
                vec![pod(0, "a", true), pod(1, "a", true), pod(2, "b", false)],
            ),
            ok,
        );
        assert_eq!(d.partition, 2);
        assert!(
            matches!(&d.step, Step::Waiting { pod, why } if pod == "nats-2" && why.contains("not Ready")),
            "{d:?}"
        );
        assert!(d.message(3).contains("waiting for pod nats-2"));
        // Ready: its /healthz is asked for, then nats-1 rolls.
        let ready = o(
            2,
            vec![pod(0, "a", true), pod(1, "a", true), pod(2, "b", true)],
        );
        match decide(&ready, None).step {
            Step::CheckHealth { pod } => assert_eq!(pod.name, "nats-2"),
            s => panic!("{s:?}"),
        }
        let d = run(&ready, ok);
        assert_eq!(d.partition, 1);
        assert_eq!(
            d.step,
            Step::Rolling {
                pod: "nats-1".into(),
                after: Some("nats-2".into())
            }
        );
        assert!(d
            .message(3)
            .contains("nats-2 is Ready and healthy; restarting nats-1"));
        // nats-1 still on a (the StatefulSet controller has not restarted it yet): hold.
        let d = run(
            &o(
                1,
                vec![pod(0, "a", true), pod(1, "a", true), pod(2, "b", true)],
            ),
            ok,
        );
        assert_eq!(d.partition, 1);
        assert!(
            matches!(&d.step, Step::Waiting { pod, why } if pod == "nats-1" && why.contains("revision a")),
            "{d:?}"
        );
        // Deleted and not recreated yet: hold.
        let mut gone = pod(1, "a", false);
        gone.terminating = true;
        let d = run(&o(1, vec![pod(0, "a", true), gone, pod(2, "b", true)]), ok);
        assert!(
            matches!(&d.step, Step::Waiting { pod, why } if pod == "nats-1" && why.contains("does not exist")),
            "{d:?}"
        );
        // nats-1 healthy: nats-0 rolls.
        let d = run(
            &o(
                1,
                vec![pod(0, "a", true), pod(1, "b", true), pod(2, "b", true)],
            ),
            ok,
        );
        assert_eq!(d.partition, 0);
        assert!(matches!(&d.step, Step::Rolling { pod, .. } if pod == "nats-0"));
        // nats-0 healthy: complete (the StatefulSet controller moves currentRevision later).
        let d = run(
            &o(
                0,
                vec![pod(0, "b", true), pod(1, "b", true), pod(2, "b", true)],
            ),
            ok,
        );
        assert_eq!(
            (d.partition, d.step.clone()),
            (
                0,
                Step::Complete {
                    pod: "nats-0".into()
                }
            )
        );
        assert!(!d.rolling());
        // Then current == update: idle, no more health checks.
        let d = decide(
            &obs(
                Some(live(0, "b", "b")),
                vec![pod(0, "b", true), pod(1, "b", true), pod(2, "b", true)],
            ),
            None,
        );
        assert_eq!(d.step, Step::Idle);
    }

    #[test]
    fn an_unhealthy_pod_holds_the_partition() {
        let o = obs(
            Some(live(2, "a", "b")),
            vec![pod(0, "a", true), pod(1, "a", true), pod(2, "b", true)],
        );
        let d = run(&o, |_| Err("503 jetstream not ready".into()));
        assert_eq!(d.partition, 2);
        match &d.step {
            Step::Waiting { pod, why } => {
                assert_eq!(pod, "nats-2");
                assert!(why.contains("503 jetstream not ready"), "{why}");
            }
            s => panic!("{s:?}"),
        }
        assert!(d.rolling());
    }

    #[test]
    fn pods_already_updated_below_the_partition_are_skipped() {
        // nats-1 was recreated on b meanwhile (e.g. its node went away): nats-0 is next.
        let o = obs(
            Some(live(2, "a", "b")),
            vec![pod(0, "a", true), pod(1, "b", true), pod(2, "b", true)],
        );
        let d = run(&o, ok);
        assert_eq!(d.partition, 0);
        assert!(matches!(&d.step, Step::Rolling { pod, .. } if pod == "nats-0"));
        // Nothing left on another revision: straight to 0.
        let o = obs(
            Some(live(2, "a", "b")),
            vec![pod(0, "b", true), pod(1, "b", true), pod(2, "b", true)],
        );
        let d = run(&o, ok);
        assert_eq!(d.partition, 0);
        assert!(matches!(d.step, Step::Complete { .. }));
    }

    #[test]
    fn a_broken_pod_above_the_partition_is_waited_on() {
        // nats-2 (updated earlier) went unready while nats-1 is checked.
        let o = obs(
            Some(live(1, "a", "b")),
            vec![pod(0, "a", true), pod(1, "b", true), pod(2, "b", false)],
        );
        let d = run(&o, ok);
        assert_eq!(d.partition, 1);
        assert!(matches!(&d.step, Step::Waiting { pod, .. } if pod == "nats-2"));
    }

    #[test]
    fn a_new_template_during_a_rollout_starts_over_from_the_top() {
        // Rollout to b stuck on nats-2 (bad image); the spec is fixed (template c).
        let mut l = live(2, "a", "b");
        l.template_hash = Some("old".into());
        let pods = vec![pod(0, "a", true), pod(1, "a", true), pod(2, "b", false)];
        let d = decide(&obs(Some(l), pods.clone()), None);
        assert_eq!((d.partition, d.step), (3, Step::TemplateChanged));
        // Observed with update revision c: nats-2 (on b, unready) rolls first, no gate.
        let d = run(&obs(Some(live(3, "a", "c")), pods), |_| {
            Err("not asked".into())
        });
        assert_eq!(d.partition, 2);
        assert!(matches!(&d.step, Step::Rolling { pod, after: None } if pod == "nats-2"));
    }

    #[test]
    fn a_reverted_template_rolls_the_updated_pods_back() {
        // a -> b reached nats-2 only, then reverted to a: update == current == a, partition 3.
        let pods = vec![pod(0, "a", true), pod(1, "a", true), pod(2, "b", true)];
        let d = run(&obs(Some(live(3, "a", "a")), pods), ok);
        assert_eq!(d.partition, 2);
        assert!(matches!(&d.step, Step::Rolling { pod, .. } if pod == "nats-2"));
    }

    #[test]
    fn partition_is_clamped_to_replicas() {
        // Scaled down from 5 while held at 5.
        let pods = vec![pod(0, "a", true), pod(1, "a", true), pod(2, "a", true)];
        let d = run(&obs(Some(live(5, "a", "b")), pods), ok);
        assert_eq!(d.partition, 2);
    }

    #[test]
    fn a_rollout_waiting_on_one_pod_past_the_deadline_is_stuck() {
        let deadline = Duration::from_secs(600);
        let t0 = Timestamp::from_second(1_700_000_000).unwrap();
        let at = |secs: i64| Timestamp::from_second(1_700_000_000 + secs).unwrap();
        let o = obs(
            Some(live(2, "a", "b")),
            vec![pod(0, "a", true), pod(1, "a", true), pod(2, "b", true)],
        );
        let waiting = run(&o, |_| Err("503 jetstream not current".into()));
        // The wait starts: the clock starts now, not stuck.
        let (clock, st) = stuck(&waiting, None, t0, deadline);
        let clock = clock.unwrap();
        assert_eq!((clock.pod.as_str(), clock.since), ("nats-2", t0));
        assert_eq!(st, None);
        // Still on nats-2 just before the deadline: the clock is kept, not stuck.
        let (c, st) = stuck(&waiting, Some(&clock), at(599), deadline);
        assert_eq!(c.as_ref(), Some(&clock));
        assert_eq!(st, None);
        // At the deadline: stuck, naming the pod and why; the decision itself is unchanged
        // (the partition stays at 2, nothing is forced).
        let (c, st) = stuck(&waiting, Some(&clock), at(725), deadline);
        assert_eq!(c.as_ref(), Some(&clock));
        let st = st.unwrap();
        assert_eq!(st.pod, "nats-2");
        assert!(
            st.message
                .contains("stuck on pod nats-2 for 12m5s (deadline 10m)")
                && st.message.contains("503 jetstream not current")
                && st.message.contains("keeps waiting"),
            "{}",
            st.message
        );
        assert_eq!(waiting.partition, 2);
        assert!(waiting.rolling());
        // Another pod waited on (nats-1 after nats-2 went through): the clock starts over.
        let o1 = obs(
            Some(live(1, "a", "b")),
            vec![pod(0, "a", true), pod(1, "b", false), pod(2, "b", true)],
        );
        let w1 = run(&o1, ok);
        let (c, st) = stuck(&w1, Some(&clock), at(2000), deadline);
        assert_eq!(
            c,
            Some(WaitClock {
                pod: "nats-1".into(),
                since: at(2000)
            })
        );
        assert_eq!(st, None);
        // The rollout proceeds (or completes): no clock, not stuck.
        let rolling = run(
            &obs(
                Some(live(2, "a", "b")),
                vec![pod(0, "a", true), pod(1, "a", true), pod(2, "b", true)],
            ),
            ok,
        );
        assert!(matches!(rolling.step, Step::Rolling { .. }));
        assert_eq!(
            stuck(&rolling, Some(&clock), at(5000), deadline),
            (None, None)
        );
        let idle = decide(&obs(Some(live(0, "b", "b")), vec![]), None);
        assert_eq!(stuck(&idle, Some(&clock), at(5000), deadline), (None, None));
        // A clock from the future (clock skew between operator replicas) restarts now.
        let (c, _) = stuck(
            &waiting,
            Some(&WaitClock {
                pod: "nats-2".into(),
                since: at(60),
            }),
            t0,
            deadline,
        );
        assert_eq!(c.unwrap().since, t0);
        assert_eq!(human(3600 + 2), "1h2s");
        assert_eq!(human(0), "0s");
    }

    #[test]
    fn pod_state_from_a_pod() {
        let p: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "nats-12", "labels": {"controller-revision-hash": "nats-7d9"}},
            "status": {"podIP": "10.0.0.7", "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": "True"}]}
        }))
        .unwrap();
        let s = PodState::from_pod("nats", &p).unwrap();
        assert_eq!(s.ordinal, 12);
        assert_eq!(s.revision.as_deref(), Some("nats-7d9"));
        assert!(s.ready && !s.terminating);
        assert_eq!(s.ip.as_deref(), Some("10.0.0.7"));
        assert!(PodState::from_pod("other", &p).is_none());
        let p: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "nats-x"}}))
        .unwrap();
        assert!(PodState::from_pod("nats", &p).is_none());
        let p: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "nats-0", "deletionTimestamp": "2024-01-01T00:00:00Z"},
            "status": {"conditions": [{"type": "Ready", "status": "False"}]}
        }))
        .unwrap();
        let s = PodState::from_pod("nats", &p).unwrap();
        assert!(!s.ready && s.terminating && s.revision.is_none());
    }

    #[test]
    fn live_sts_from_a_statefulset() {
        let s: StatefulSet = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "nats", "generation": 3,
                         "annotations": {"natrix.io/template-hash": "h"}},
            "spec": {"selector": {}, "serviceName": "x", "template": {},
                     "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}},
            "status": {"replicas": 3, "observedGeneration": 3,
                       "currentRevision": "a", "updateRevision": "b"}
        }))
        .unwrap();
        let l = LiveSts::from_sts(&s);
        assert_eq!(l.template_hash.as_deref(), Some("h"));
        assert_eq!(l.partition, Some(2));
        assert!(l.observed());
        assert_eq!(
            (l.current_revision.as_deref(), l.update_revision.as_deref()),
            (Some("a"), Some("b"))
        );
    }
}

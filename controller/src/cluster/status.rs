//! A NatsCluster's status conditions from what its reconcile found and decided (pure).

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::monitor;
use super::rollout::{self as roll, Decision, WaitClock};
use super::scale::Scale;
use crate::conditions::{self, Cond};
use crate::crd::{
    NatsCluster, NatsClusterStatus, RolloutWait, CONDITION_DEGRADED, CONDITION_PROGRESSING,
    CONDITION_READY, CONDITION_RECONCILIATION_PAUSED,
};

/// ReconciliationPaused as `spec.paused` says.
pub fn paused(paused: bool) -> Cond {
    if paused {
        Cond::new(
            CONDITION_RECONCILIATION_PAUSED,
            true,
            "SpecPaused",
            "spec.paused is true: the operator makes no changes to this cluster's ConfigMap, \
             Services, StatefulSet or PodDisruptionBudget; set spec.paused to false to resume",
        )
    } else {
        Cond::new(
            CONDITION_RECONCILIATION_PAUSED,
            false,
            "NotPaused",
            "reconciling (set spec.paused to true to stop the operator's writes)",
        )
    }
}

/// Ready, Progressing and Degraded for a spec that does not render; `message` says why.
pub fn invalid_spec(message: &str) -> Vec<Cond> {
    [
        (CONDITION_READY, false),
        (CONDITION_PROGRESSING, false),
        (CONDITION_DEGRADED, true),
    ]
    .into_iter()
    .map(|(t, s)| Cond::new(t, s, "InvalidSpec", message))
    .collect()
}

/// Ready false for a step that failed with `error` (`reason` names the step); the reconcile
/// is retried.
pub fn failed(reason: &str, error: &str) -> Cond {
    Cond::new(
        CONDITION_READY,
        false,
        reason,
        format!("{error}; retrying with backoff"),
    )
}

/// What one reconcile applied and decided, for [`applied`].
pub struct Applied<'a> {
    /// The StatefulSet as stored after the apply.
    pub sts: &'a StatefulSet,
    /// The replicas applied (a refused scale-down keeps the current ones).
    pub scale: &'a Scale,
    /// The rolling update's partition and step.
    pub rollout: &'a Decision,
    /// What became of the PodMonitor.
    pub pod_monitor: &'a monitor::Outcome,
    /// Hash of the rendered configuration.
    pub config_hash: &'a str,
}

/// `status` after every child of `nc` was applied: the StatefulSet's conditions (see
/// [`rollout`]), then what overrides them (a rolling update, a refused scale-down, a rollout
/// waiting on one pod for `deadline` or longer, an unavailable PodMonitor), the rollout's wait
/// clock, the replica counts and the config hash.
pub fn applied(
    status: &mut NatsClusterStatus,
    nc: &NatsCluster,
    a: &Applied<'_>,
    deadline: Duration,
    now: Timestamp,
) {
    let gen = nc.metadata.generation;
    let replicas = a.scale.replicas();
    let ns = nc.namespace().unwrap_or_default();
    let mut conds = rollout(&ns, &nc.name_any(), replicas, a.sts);
    if a.rollout.rolling() {
        conds.push(Cond::new(
            CONDITION_PROGRESSING,
            true,
            "RollingUpdate",
            a.rollout.message(replicas),
        ));
    }
    if let Scale::Blocked { message, .. } = a.scale {
        conds.push(Cond::new(
            CONDITION_DEGRADED,
            true,
            "ScaleDownBlocked",
            message.clone(),
        ));
    }
    let previous = status.rollout_wait.as_ref().map(|w| WaitClock {
        pod: w.pod.clone(),
        since: w.since.0,
    });
    let (clock, stuck) = roll::stuck(a.rollout, previous.as_ref(), now, deadline);
    status.rollout_wait = clock.map(|c| RolloutWait {
        pod: c.pod,
        since: Time(c.since),
    });
    if let Some(st) = stuck {
        conds.push(Cond::new(
            CONDITION_DEGRADED,
            true,
            "RollingUpdateStuck",
            st.message,
        ));
    }
    // In order: a later condition of the same type replaces an earlier one.
    for c in &conds {
        conditions::set(&mut status.common.conditions, c, gen, now);
    }
    if let monitor::Outcome::Unavailable(msg) = a.pod_monitor {
        monitor::degrade(&mut status.common.conditions, msg, gen, now);
    }
    let st = a.sts.status.clone().unwrap_or_default();
    status.replicas = Some(st.replicas);
    status.ready_replicas = Some(st.ready_replicas.unwrap_or(0));
    status.config_hash = Some(a.config_hash.to_string());
    status.common.observed_generation = gen;
}

/// Ready, Progressing and Degraded for a cluster of `want` replicas whose StatefulSet is `sts`.
pub fn rollout(namespace: &str, cluster: &str, want: i32, sts: &StatefulSet) -> Vec<Cond> {
    let st = sts.status.clone().unwrap_or_default();
    let name = sts.metadata.name.as_deref().unwrap_or(cluster);
    let ready = st.ready_replicas.unwrap_or(0);
    let updated = st.updated_replicas.unwrap_or(0);
    let pods = format!("kubectl -n {namespace} get pods -l app.kubernetes.io/instance={cluster}");
    let observed = match (st.observed_generation, sts.metadata.generation) {
        (Some(o), Some(g)) => o >= g,
        (Some(_), None) => true,
        (None, _) => false,
    };
    let revisions_match = match (&st.current_revision, &st.update_revision) {
        (Some(c), Some(u)) => c == u,
        _ => true,
    };
    let rolled = observed && updated >= want && revisions_match;
    let progressing = if !observed {
        Cond::new(
            CONDITION_PROGRESSING,
            true,
            "WaitingForStatefulSet",
            format!(
                "StatefulSet {name} has not reported status for its latest generation yet; \
                 if this persists, check that the StatefulSet controller is running"
            ),
        )
    } else if !rolled {
        Cond::new(
            CONDITION_PROGRESSING,
            true,
            "RollingOut",
            format!(
                "StatefulSet {name}: {updated}/{want} pods on the current template, {ready}/{want} ready; \
                 waiting for the rollout"
            ),
        )
    } else {
        Cond::new(
            CONDITION_PROGRESSING,
            false,
            "RolloutComplete",
            format!("StatefulSet {name}: all {want} pods on the current template"),
        )
    };
    let degraded = if rolled && ready < want {
        Cond::new(
            CONDITION_DEGRADED,
            true,
            "ReplicasNotReady",
            format!("{ready}/{want} brokers ready; see `{pods}` and the pods' events"),
        )
    } else {
        Cond::new(
            CONDITION_DEGRADED,
            false,
            "AsExpected",
            "no known problem".to_string(),
        )
    };
    let readyc = if rolled && ready >= want {
        Cond::new(
            CONDITION_READY,
            true,
            "AllReplicasReady",
            format!("{ready}/{want} brokers ready"),
        )
    } else if !rolled {
        Cond::new(
            CONDITION_READY,
            false,
            "RollingOut",
            format!(
                "{ready}/{want} brokers ready; the StatefulSet is rolling out (see Progressing)"
            ),
        )
    } else {
        Cond::new(
            CONDITION_READY,
            false,
            "ReplicasNotReady",
            format!("{ready}/{want} brokers ready; see `{pods}`"),
        )
    };
    vec![readyc, progressing, degraded]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::rollout::Step;
    use crate::crd::NatsClusterSpec;
    use k8s_openapi::api::apps::v1::StatefulSetStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

    fn sts(gen: i64, status: Option<StatefulSetStatus>) -> StatefulSet {
        let mut s = StatefulSet::default();
        s.metadata.name = Some("nats".into());
        s.metadata.generation = Some(gen);
        s.status = status;
        s
    }

    fn by_type<'a>(v: &'a [Cond], t: &str) -> &'a Cond {
        v.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn no_status_yet_is_progressing() {
        let c = rollout("ns", "nats", 3, &sts(1, None));
        assert_eq!(by_type(&c, "Progressing").reason, "WaitingForStatefulSet");
        assert!(by_type(&c, "Progressing").status);
        assert!(!by_type(&c, "Ready").status);
        assert!(!by_type(&c, "Degraded").status);
    }

    #[test]
    fn rolled_out_and_ready() {
        let st = StatefulSetStatus {
            observed_generation: Some(2),
            replicas: 3,
            ready_replicas: Some(3),
            updated_replicas: Some(3),
            current_revision: Some("r2".into()),
            update_revision: Some("r2".into()),
            ..Default::default()
        };
        let c = rollout("ns", "nats", 3, &sts(2, Some(st.clone())));
        assert!(by_type(&c, "Ready").status);
        assert_eq!(by_type(&c, "Ready").reason, "AllReplicasReady");
        assert!(!by_type(&c, "Progressing").status);
        // A new generation not yet observed rolls again.
        let c = rollout("ns", "nats", 3, &sts(3, Some(st.clone())));
        assert!(!by_type(&c, "Ready").status);
        assert!(by_type(&c, "Progressing").status);
        // Rolled out but one pod down: degraded.
        let down = StatefulSetStatus {
            ready_replicas: Some(2),
            ..st
        };
        let c = rollout("ns", "nats", 3, &sts(2, Some(down)));
        assert!(by_type(&c, "Degraded").status);
        assert_eq!(by_type(&c, "Ready").reason, "ReplicasNotReady");
        assert!(by_type(&c, "Degraded").message.contains("2/3"));
    }

    #[test]
    fn mid_rollout() {
        let st = StatefulSetStatus {
            observed_generation: Some(2),
            replicas: 3,
            ready_replicas: Some(3),
            updated_replicas: Some(1),
            current_revision: Some("r1".into()),
            update_revision: Some("r2".into()),
            ..Default::default()
        };
        let c = rollout("ns", "nats", 3, &sts(2, Some(st)));
        assert_eq!(by_type(&c, "Progressing").reason, "RollingOut");
        assert!(by_type(&c, "Progressing")
            .message
            .contains("1/3 pods on the current template"));
        assert!(!by_type(&c, "Ready").status);
    }

    fn nats(gen: i64) -> NatsCluster {
        let spec: NatsClusterSpec = serde_json::from_value(serde_json::json!({})).unwrap();
        let mut nc = NatsCluster::new("nats", spec);
        nc.metadata.namespace = Some("ns".into());
        nc.metadata.generation = Some(gen);
        nc
    }

    /// Generation 2 of StatefulSet `nats`, rolled out, with `ready` of 3 pods ready.
    fn rolled(ready: i32) -> StatefulSet {
        sts(
            2,
            Some(StatefulSetStatus {
                observed_generation: Some(2),
                replicas: 3,
                ready_replicas: Some(ready),
                updated_replicas: Some(3),
                current_revision: Some("r2".into()),
                update_revision: Some("r2".into()),
                ..Default::default()
            }),
        )
    }

    fn idle() -> Decision {
        Decision {
            partition: 0,
            step: Step::Idle,
        }
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + second).unwrap()
    }

    fn get<'a>(st: &'a NatsClusterStatus, t: &str) -> &'a Condition {
        conditions::get(&st.common.conditions, t).unwrap()
    }

    #[test]
    fn paused_invalid_and_failed() {
        assert_eq!(paused(true).reason, "SpecPaused");
        assert!(paused(true).status);
        assert_eq!(paused(false).reason, "NotPaused");
        assert!(!paused(false).status);
        let c = invalid_spec("bad port");
        let got: Vec<_> = c.iter().map(|c| (c.type_, c.status)).collect();
        assert_eq!(
            got,
            [("Ready", false), ("Progressing", false), ("Degraded", true)]
        );
        assert!(c
            .iter()
            .all(|c| c.reason == "InvalidSpec" && c.message == "bad port"));
        let f = failed("ApplyFailed", "no route");
        assert_eq!((f.type_, f.status), ("Ready", false));
        assert_eq!(f.message, "no route; retrying with backoff");
    }

    #[test]
    fn applied_counts_and_the_podmonitor_after_a_refused_scale_down() {
        let mut st = NatsClusterStatus::default();
        let scale = Scale::Blocked {
            keep: 3,
            message: "stream WIDE has 3 replicas".into(),
        };
        let a = Applied {
            sts: &rolled(3),
            scale: &scale,
            rollout: &idle(),
            pod_monitor: &monitor::Outcome::Unavailable("no PodMonitor CRD".into()),
            config_hash: "abc",
        };
        applied(&mut st, &nats(5), &a, Duration::from_secs(600), at(0));
        assert_eq!(get(&st, "Ready").reason, "AllReplicasReady");
        let d = get(&st, "Degraded");
        assert_eq!(
            (d.status.as_str(), d.reason.as_str()),
            ("True", "ScaleDownBlocked")
        );
        assert_eq!(
            d.message,
            "stream WIDE has 3 replicas; also: no PodMonitor CRD"
        );
        assert_eq!((st.replicas, st.ready_replicas), (Some(3), Some(3)));
        assert_eq!(st.config_hash.as_deref(), Some("abc"));
        assert_eq!(st.common.observed_generation, Some(5));
        assert_eq!(st.rollout_wait, None);
    }

    #[test]
    fn applied_keeps_the_wait_clock_until_the_rollout_is_stuck() {
        let waiting = Decision {
            partition: 2,
            step: Step::Waiting {
                pod: "nats-2".into(),
                why: "not Ready".into(),
            },
        };
        let a = Applied {
            sts: &rolled(2),
            scale: &Scale::Allow(3),
            rollout: &waiting,
            pod_monitor: &monitor::Outcome::Absent,
            config_hash: "abc",
        };
        let deadline = Duration::from_secs(600);
        let mut st = NatsClusterStatus::default();
        applied(&mut st, &nats(1), &a, deadline, at(0));
        assert_eq!(get(&st, "Progressing").reason, "RollingUpdate");
        assert_eq!(get(&st, "Degraded").reason, "ReplicasNotReady");
        let clock = st.rollout_wait.clone().unwrap();
        assert_eq!((clock.pod.as_str(), clock.since.0), ("nats-2", at(0)));
        // Still the same pod past the deadline: stuck, the clock kept.
        applied(&mut st, &nats(1), &a, deadline, at(601));
        assert_eq!(get(&st, "Degraded").reason, "RollingUpdateStuck");
        assert!(get(&st, "Degraded").message.contains("stuck on pod nats-2"));
        assert_eq!(st.rollout_wait.as_ref().unwrap().since.0, at(0));
        // Done waiting: the clock goes.
        let a = Applied {
            rollout: &idle(),
            sts: &rolled(3),
            ..a
        };
        applied(&mut st, &nats(1), &a, deadline, at(602));
        assert_eq!(st.rollout_wait, None);
        assert_eq!(get(&st, "Degraded").reason, "AsExpected");
    }
}

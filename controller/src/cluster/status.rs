//! NatsCluster conditions from its StatefulSet's status (pure).

use k8s_openapi::api::apps::v1::StatefulSet;

use crate::conditions::Cond;
use crate::crd::{CONDITION_DEGRADED, CONDITION_PROGRESSING, CONDITION_READY};

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
    use k8s_openapi::api::apps::v1::StatefulSetStatus;

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
}

//! `metrics.podMonitor`: server-side apply (or remove) the Prometheus Operator PodMonitor.
//!
//! The PodMonitor CRD is optional: without it (or without the permission to manage
//! PodMonitors) the reconcile goes on and the cluster is marked Degraded with a message
//! saying what to do. PodMonitors are not watched (their CRD may be missing): a change made
//! behind the operator's back is put back on the next resync.

use kube::api::{Api, DeleteParams, DynamicObject, Patch};
use kube::{Resource, ResourceExt};

use crate::apply;
use crate::conditions::{self, Cond};
use crate::context::Context;
use crate::crd::{NatsCluster, CONDITION_DEGRADED};
use crate::error::{Error, Result};
use crate::render;

/// Reason of the Degraded condition when the PodMonitor cannot be managed.
pub const REASON_UNAVAILABLE: &str = "PodMonitorUnavailable";

/// What became of the PodMonitor in this reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Not wanted and not there.
    Absent,
    /// Applied; `created` when it did not exist before.
    Applied {
        /// It was created by this apply.
        created: bool,
    },
    /// Wanted but cannot be managed: the message says why and what to do.
    Unavailable(String),
    /// Not wanted any more: the one we had created was deleted.
    Deleted,
}

/// Whether an API error is a 404 (no such object, or no such resource type).
fn not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Whether an API error is a 403 (RBAC).
fn forbidden(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 403)
}

/// Whether the API server serves `monitoring.coreos.com/v1` podmonitors (discovery).
async fn served(ctx: &Context) -> Result<bool> {
    let ar = render::pod_monitor_resource();
    match ctx.client.list_api_group_resources(&ar.api_version).await {
        Ok(list) => Ok(list.resources.iter().any(|r| r.name == ar.plural)),
        Err(e) if not_found(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Message of the Degraded condition when the PodMonitor CRD is missing.
pub fn missing_crd_message(namespace: &str, name: &str) -> String {
    format!(
        "metrics.podMonitor is true but the API server does not serve \
         podmonitors.monitoring.coreos.com/v1: install the Prometheus Operator (or its \
         PodMonitor CRD) and PodMonitor {namespace}/{name} is created on the next resync, or \
         set metrics.podMonitor to false (the pods keep their prometheus.io/* scrape \
         annotations)"
    )
}

fn forbidden_message(namespace: &str, name: &str, e: &kube::Error) -> String {
    format!(
        "metrics.podMonitor is true but the operator may not manage PodMonitor \
         {namespace}/{name} ({e}): grant its ServiceAccount get, create, patch and delete on \
         podmonitors.monitoring.coreos.com (the chart's ClusterRole has them), or set \
         metrics.podMonitor to false"
    )
}

/// Apply the rendered PodMonitor, or delete ours when it is not wanted any more.
pub async fn sync(nc: &NatsCluster, ctx: &Context, r: &render::Rendered) -> Result<Outcome> {
    let n = render::names(nc)?;
    let ar = render::pod_monitor_resource();
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &n.namespace, &ar);
    let Some(pm) = &r.pod_monitor else {
        return delete_owned(nc, &api, &n).await;
    };
    if !served(ctx).await? {
        return Ok(Outcome::Unavailable(missing_crd_message(
            &n.namespace,
            &n.pod_monitor,
        )));
    }
    let mut want = serde_json::to_value(pm)?;
    let hash = apply::stamp(&mut want);
    let key = format!("PodMonitor/{}/{}", n.namespace, n.pod_monitor);
    let live = match api.get_opt(&n.pod_monitor).await {
        Ok(o) => o,
        Err(e) if forbidden(&e) => {
            return Ok(Outcome::Unavailable(forbidden_message(
                &n.namespace,
                &n.pod_monitor,
                &e,
            )))
        }
        Err(e) => return Err(e.into()),
    };
    // Already as rendered: no request (see crate::apply).
    if let Some(l) = &live {
        if ctx
            .applied
            .unchanged(&key, &hash, &want, &serde_json::to_value(l)?)
        {
            return Ok(Outcome::Applied { created: false });
        }
    }
    match api
        .patch(&n.pod_monitor, &apply::apply_params(), &Patch::Apply(&want))
        .await
    {
        Ok(stored) => {
            ctx.applied
                .record(key, &hash, &serde_json::to_value(&stored)?);
            Ok(Outcome::Applied {
                created: live.is_none(),
            })
        }
        Err(e) if forbidden(&e) => Ok(Outcome::Unavailable(forbidden_message(
            &n.namespace,
            &n.pod_monitor,
            &e,
        ))),
        // The CRD went away between discovery and the apply.
        Err(e) if not_found(&e) => Ok(Outcome::Unavailable(missing_crd_message(
            &n.namespace,
            &n.pod_monitor,
        ))),
        Err(source) => Err(Error::Apply {
            kind: "PodMonitor",
            name: format!("{}/{}", n.namespace, n.pod_monitor),
            source,
        }),
    }
}

/// Delete the PodMonitor of this NatsCluster (only one it owns) if there is one. A missing
/// CRD or a missing permission means there is nothing of ours to delete.
async fn delete_owned(
    nc: &NatsCluster,
    api: &Api<DynamicObject>,
    n: &render::Names,
) -> Result<Outcome> {
    let pm = match api.get_opt(&n.pod_monitor).await {
        Ok(Some(pm)) => pm,
        Ok(None) => return Ok(Outcome::Absent),
        Err(e) if not_found(&e) || forbidden(&e) => {
            tracing::debug!(
                "PodMonitor {}/{} not checked: {e}",
                n.namespace,
                n.pod_monitor
            );
            return Ok(Outcome::Absent);
        }
        Err(e) => return Err(e.into()),
    };
    let uid = nc.meta().uid.as_deref();
    if !pm
        .owner_references()
        .iter()
        .any(|o| Some(o.uid.as_str()) == uid)
    {
        return Ok(Outcome::Absent);
    }
    match api.delete(&n.pod_monitor, &DeleteParams::default()).await {
        Ok(_) => Ok(Outcome::Deleted),
        Err(e) if not_found(&e) => Ok(Outcome::Absent),
        Err(e) => Err(e.into()),
    }
}

/// Record an unavailable PodMonitor in the Degraded condition: its own reason when nothing
/// else degrades the cluster, else appended to the message of the graver reason.
pub fn degrade(
    conds: &mut Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
    message: &str,
    generation: Option<i64>,
    now: k8s_openapi::jiff::Timestamp,
) {
    let c = match conditions::get(conds, CONDITION_DEGRADED) {
        Some(c) if c.status == "True" && c.reason != REASON_UNAVAILABLE => Cond::new(
            CONDITION_DEGRADED,
            true,
            &c.reason.clone(),
            format!("{}; also: {message}", c.message),
        ),
        _ => Cond::new(CONDITION_DEGRADED, true, REASON_UNAVAILABLE, message),
    };
    conditions::set(conds, &c, generation, now);
}

/// Whether the conditions already say that the PodMonitor is unavailable with `message`.
pub fn already_reported(
    conds: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    message: &str,
) -> bool {
    conditions::get(conds, CONDITION_DEGRADED)
        .is_some_and(|c| c.status == "True" && c.message.contains(message))
}

/// Events for the PodMonitor's outcome (a repeated unavailability is not announced again).
pub async fn events(
    nc: &NatsCluster,
    ctx: &Context,
    old: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    outcome: &Outcome,
) {
    let n = match render::names(nc) {
        Ok(n) => n,
        Err(_) => return,
    };
    match outcome {
        Outcome::Applied { created: true } => {
            ctx.event(
                nc,
                false,
                "PodMonitorCreated",
                "Apply",
                format!(
                    "created PodMonitor {} scraping {} on port {} of the pods",
                    n.pod_monitor,
                    render::METRICS_PATH,
                    render::MONITOR_PORT_NAME
                ),
            )
            .await
        }
        Outcome::Unavailable(msg) if !already_reported(old, msg) => {
            ctx.event(nc, true, REASON_UNAVAILABLE, "Apply", msg.clone())
                .await
        }
        Outcome::Deleted => {
            ctx.event(
                nc,
                false,
                "PodMonitorDeleted",
                "Delete",
                format!(
                    "metrics.podMonitor is false: deleted PodMonitor {}",
                    n.pod_monitor
                ),
            )
            .await
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
    use k8s_openapi::jiff::Timestamp;

    fn now() -> Timestamp {
        Timestamp::from_second(1_000).unwrap()
    }

    #[test]
    fn degraded_gets_its_own_reason_when_nothing_else_is_wrong() {
        let mut conds: Vec<Condition> = Vec::new();
        conditions::set(
            &mut conds,
            &Cond::new(CONDITION_DEGRADED, false, "AsExpected", "no known problem"),
            Some(1),
            now(),
        );
        let msg = missing_crd_message("prod", "nats");
        assert!(!already_reported(&conds, &msg));
        degrade(&mut conds, &msg, Some(1), now());
        let c = conditions::get(&conds, CONDITION_DEGRADED).unwrap();
        assert_eq!(c.status, "True");
        assert_eq!(c.reason, REASON_UNAVAILABLE);
        assert!(
            c.message.contains("install the Prometheus Operator"),
            "{}",
            c.message
        );
        assert!(c.message.contains("prod/nats"), "{}", c.message);
        assert!(already_reported(&conds, &msg));
    }

    #[test]
    fn a_graver_reason_keeps_its_place_and_the_message_grows() {
        let mut conds: Vec<Condition> = Vec::new();
        conditions::set(
            &mut conds,
            &Cond::new(
                CONDITION_DEGRADED,
                true,
                "ReplicasNotReady",
                "0/3 brokers ready",
            ),
            Some(1),
            now(),
        );
        let msg = missing_crd_message("prod", "nats");
        degrade(&mut conds, &msg, Some(1), now());
        let c = conditions::get(&conds, CONDITION_DEGRADED).unwrap();
        assert_eq!(c.reason, "ReplicasNotReady");
        assert!(c
            .message
            .starts_with("0/3 brokers ready; also: metrics.podMonitor"));
        assert!(already_reported(&conds, &msg));
    }

    #[test]
    fn api_error_classes() {
        let err = |code| {
            kube::Error::Api(
                kube::core::Status::failure("x", "NotFound")
                    .with_code(code)
                    .boxed(),
            )
        };
        assert!(not_found(&err(404)));
        assert!(!not_found(&err(403)));
        assert!(forbidden(&err(403)));
        let m = forbidden_message("ns", "pm", &err(403));
        assert!(m.contains("podmonitors.monitoring.coreos.com"), "{m}");
    }
}

//! The NatsCluster reconciler: render, server-side apply every child, report status.

pub mod health;
pub mod monitor;
pub mod rollout;
pub mod scale;
pub mod status;

use std::future::Future;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use crate::apply::{apply, apply_pdb};
use crate::auth;
use crate::conditions;
use crate::context::Context;
use crate::crd::{
    Account, NatsCluster, NatsClusterStatus, Stream, CONDITION_DEGRADED, CONDITION_PROGRESSING,
    CONDITION_READY, CONDITION_RECONCILIATION_PAUSED,
};
use crate::error::{Error, Result};
use crate::reconcile::Reconciled;
use crate::render;

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "natscluster";

impl Reconciled for NatsCluster {
    const CONTROLLER: &'static str = CONTROLLER;
    // Its children are owned: the garbage collector removes them.
    const FINALIZER: Option<&'static str> = None;

    fn apply(nc: &Self, ctx: &Context) -> impl Future<Output = Result<Action>> + Send {
        reconcile_inner(nc, ctx)
    }

    fn cleanup(_: &Self, _: &Context) -> impl Future<Output = Result<Action>> + Send {
        // Never called without a finalizer.
        std::future::ready(Ok(Action::await_change()))
    }
}

async fn write_status(
    api: &Api<NatsCluster>,
    nc: &NatsCluster,
    status: &NatsClusterStatus,
) -> Result<()> {
    if nc.status.as_ref() == Some(status) {
        return Ok(());
    }
    let mut body = serde_json::to_value(status)?;
    let had_wait = nc.status.as_ref().is_some_and(|s| s.rollout_wait.is_some());
    if had_wait && status.rollout_wait.is_none() {
        // A merge patch keeps fields it does not mention: remove the wait explicitly.
        body["rolloutWait"] = serde_json::Value::Null;
    }
    api.patch_status(
        &nc.name_any(),
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({ "status": body })),
    )
    .await?;
    Ok(())
}

async fn reconcile_inner(nc: &NatsCluster, ctx: &Context) -> Result<Action> {
    let ns = nc.namespace().ok_or(Error::MissingMetadata("namespace"))?;
    let api: Api<NatsCluster> = Api::namespaced(ctx.client.clone(), &ns);
    let gen = nc.metadata.generation;
    let now = Timestamp::now();
    let old = nc.status.clone().unwrap_or_default();
    let mut status = old.clone();
    let was_paused = conditions::is_true(&old.common.conditions, CONDITION_RECONCILIATION_PAUSED);

    let paused = status::paused(nc.spec.paused);
    conditions::set(&mut status.common.conditions, &paused, gen, now);
    if nc.spec.paused {
        write_status(&api, nc, &status).await?;
        if !was_paused {
            ctx.event(
                nc,
                false,
                "Paused",
                "Pause",
                "spec.paused is true: reconciliation stopped".into(),
            )
            .await;
        }
        return Ok(Action::await_change());
    }
    if was_paused {
        ctx.event(
            nc,
            false,
            "Resumed",
            "Resume",
            "spec.paused is false: reconciling again".into(),
        )
        .await;
    }

    let rendered = match render::render(nc) {
        Ok(r) => r,
        Err(e) => {
            let msg =
                format!("{e}; fix the NatsCluster spec (existing objects are left as they are)");
            for c in status::invalid_spec(&msg) {
                conditions::set(&mut status.common.conditions, &c, gen, now);
            }
            status.common.observed_generation = gen;
            write_status(&api, nc, &status).await?;
            ctx.event(nc, true, "InvalidSpec", "Render", msg).await;
            return Ok(Action::await_change());
        }
    };

    let (plan, mut rendered) = match plan(nc, ctx, rendered).await {
        Ok(p) => p,
        Err(e) => return Err(failed(&api, nc, status, "ObserveFailed", e, now).await),
    };
    render::set_rollout(
        &mut rendered.statefulset,
        plan.scale.replicas(),
        plan.rollout.partition,
    );

    let (sts, pod_monitor) = match apply_children(nc, ctx, &rendered).await {
        Ok(applied) => applied,
        Err(e) => {
            let e = failed(&api, nc, status, "ApplyFailed", e, now).await;
            ctx.event(nc, true, "ApplyFailed", "Apply", e.to_string())
                .await;
            return Err(e);
        }
    };
    let applied = status::Applied {
        sts: &sts,
        scale: &plan.scale,
        rollout: &plan.rollout,
        pod_monitor: &pod_monitor,
        config_hash: &rendered.config_hash,
    };
    status::applied(
        &mut status,
        nc,
        &applied,
        ctx.settings.rollout_deadline,
        now,
    );
    write_status(&api, nc, &status).await?;
    applied_events(nc, ctx, &old, &status, &applied, &rendered).await;
    let ready = conditions::is_true(&status.common.conditions, CONDITION_READY);
    Ok(Action::requeue(if plan.rollout.rolling() {
        ctx.settings.rollout_poll
    } else if ready && matches!(plan.scale, scale::Scale::Allow(_)) {
        ctx.settings.cluster_resync
    } else {
        ctx.settings
            .cluster_resync
            .min(std::time::Duration::from_secs(60))
    }))
}

/// Report the step that failed with `e` (`reason`) as Ready false, and return `e` to retry
/// on; a status that cannot be written is only logged, as `e` is the cause.
async fn failed(
    api: &Api<NatsCluster>,
    nc: &NatsCluster,
    mut status: NatsClusterStatus,
    reason: &str,
    e: Error,
    now: Timestamp,
) -> Error {
    let gen = nc.metadata.generation;
    let c = status::failed(reason, &e.to_string());
    conditions::set(&mut status.common.conditions, &c, gen, now);
    status.common.observed_generation = gen;
    if let Err(se) = write_status(api, nc, &status).await {
        tracing::warn!(
            "NatsCluster {}/{}: writing status: {se}",
            nc.namespace().unwrap_or_default(),
            nc.name_any()
        );
    }
    e
}

/// Events for what a reconcile applied: the children created, a config change, the
/// PodMonitor, the rollout's steps, a refused scale-down, and Ready and Degraded transitions.
async fn applied_events(
    nc: &NatsCluster,
    ctx: &Context,
    old: &NatsClusterStatus,
    new: &NatsClusterStatus,
    applied: &status::Applied<'_>,
    rendered: &render::Rendered,
) {
    let name = nc.name_any();
    let first = old.config_hash.is_none();
    let changed = old
        .config_hash
        .as_deref()
        .is_some_and(|h| h != rendered.config_hash);
    let pod_monitor = applied.pod_monitor;
    if first {
        let mut pdb = if rendered.pdb.is_some() {
            ", PodDisruptionBudget".to_string()
        } else {
            String::new()
        };
        if matches!(pod_monitor, monitor::Outcome::Applied { .. }) {
            pdb.push_str(&format!(", PodMonitor {name}"));
        }
        ctx.event(
            nc,
            false,
            "Created",
            "Apply",
            format!(
                "applied ConfigMap {name}-config, Services {name} and {name}-headless, StatefulSet {name}{pdb}"
            ),
        )
        .await;
    } else if changed {
        ctx.event(
            nc,
            false,
            "ConfigChanged",
            "Apply",
            format!(
                "settings that need a restart changed (config hash {}); the pods restart one \
                 at a time, each after the previous one is Ready and healthy",
                &rendered.config_hash[..12]
            ),
        )
        .await;
    }
    if !(first && matches!(pod_monitor, monitor::Outcome::Applied { .. })) {
        monitor::events(nc, ctx, &old.common.conditions, pod_monitor).await;
    }
    rollout_events(nc, ctx, old, applied.rollout, applied.scale.replicas()).await;
    // A new stuck rollout is announced by `transitions` (a Degraded Warning event).
    if let scale::Scale::Blocked { message, .. } = applied.scale {
        let same = conditions::get(&old.common.conditions, CONDITION_DEGRADED)
            .is_some_and(|c| c.reason == "ScaleDownBlocked" && &c.message == message);
        if !same {
            ctx.event(nc, true, "ScaleDownBlocked", "Scale", message.clone())
                .await;
        }
    }
    transitions(nc, ctx, old, new).await;
}

/// What this reconcile applies to the StatefulSet: its replicas (the scale-down guard) and
/// its partition (the rolling upgrade).
struct Plan {
    scale: scale::Scale,
    rollout: rollout::Decision,
}

/// Read the StatefulSet, its pods and (when scaling down) the streams; decide the replicas
/// and the partition, checking the health of the pod the rollout waits on. A refused
/// scale-down renders the objects again for the replicas kept (routes in nats.conf).
async fn plan(
    nc: &NatsCluster,
    ctx: &Context,
    r: render::Rendered,
) -> Result<(Plan, render::Rendered)> {
    let n = render::names(nc)?;
    let stss: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &n.namespace);
    let live = stss.get_opt(&n.statefulset).await?;
    let current = live
        .as_ref()
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.replicas);
    let want = nc.spec.replicas;
    let streams = if scale::needs_check(want, current) {
        Some(stream_replicas(nc, ctx).await)
    } else {
        None
    };
    let scale = scale::decide(want, current, streams.as_ref());
    let r = if scale.replicas() == want {
        r
    } else {
        let mut kept = nc.clone();
        kept.spec.replicas = scale.replicas();
        render::render(&kept)?
    };
    let pods = match &live {
        Some(_) => {
            let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &n.namespace);
            let selector = render::selector_labels(nc)
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            pods.list(&ListParams::default().labels(&selector))
                .await?
                .items
                .iter()
                .filter_map(|p| rollout::PodState::from_pod(&n.statefulset, p))
                .collect()
        }
        None => Vec::new(),
    };
    let observed = rollout::Observed {
        statefulset: n.statefulset.clone(),
        desired_hash: render::sts_template_hash(&r.statefulset)
            .unwrap_or_default()
            .to_string(),
        replicas: scale.replicas(),
        live: live.as_ref().map(rollout::LiveSts::from_sts),
        pods,
    };
    let mut decision = rollout::decide(&observed, None);
    if let rollout::Step::CheckHealth { pod } = &decision.step {
        let target = health::Target {
            namespace: n.namespace.clone(),
            pod: pod.name.clone(),
            headless: n.headless.clone(),
            ip: pod.ip.clone(),
            monitor_port: nc.spec.ports.monitor,
        };
        let h = ctx.health.check(&target).await;
        decision = rollout::decide(&observed, Some(&h));
    }
    Ok((
        Plan {
            scale,
            rollout: decision,
        },
        r,
    ))
}

/// Events for the rollout's decisions: started, each pod rolled, a new wait, complete.
async fn rollout_events(
    nc: &NatsCluster,
    ctx: &Context,
    old: &NatsClusterStatus,
    d: &rollout::Decision,
    replicas: i32,
) {
    let msg = d.message(replicas);
    let before = conditions::get(&old.common.conditions, CONDITION_PROGRESSING)
        .filter(|c| c.reason == "RollingUpdate")
        .map(|c| c.message.as_str());
    let (warning, reason) = match &d.step {
        rollout::Step::TemplateChanged => (false, "RollingUpdateStarted"),
        rollout::Step::Rolling { .. } => (false, "RollingUpdate"),
        rollout::Step::Waiting { why, .. } if why.contains("/healthz") => {
            (true, "RollingUpdateWaiting")
        }
        // Finished: announced once, when the last rolling state gives way.
        rollout::Step::Complete { .. } | rollout::Step::Idle if before.is_some() => {
            (false, "RollingUpdateComplete")
        }
        _ => return,
    };
    if before != Some(msg.as_str()) {
        let msg = match d.step {
            rollout::Step::Idle => format!("rolling update complete: all {replicas} pods updated"),
            _ => msg,
        };
        ctx.event_each(nc, warning, reason, "Roll", msg).await;
    }
}

/// Streams of a NatsCluster with their replicas: the Stream resources that refer to it, and
/// what the JetStream API lists (in operator mode, in each Ready Account of the cluster).
async fn stream_replicas(
    nc: &NatsCluster,
    ctx: &Context,
) -> std::result::Result<Vec<scale::StreamReplicas>, String> {
    let n = render::names(nc).map_err(|e| e.to_string())?;
    let ns = &n.namespace;
    let t = ctx.settings.nats_timeout;
    let streams: Api<Stream> = Api::namespaced(ctx.client.clone(), ns);
    let mut out: Vec<scale::StreamReplicas> = streams
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("listing Stream resources: {e}"))?
        .items
        .into_iter()
        // A Stream being deleted is on its way out.
        .filter(|s| {
            s.spec.cluster_ref.name == n.statefulset && s.metadata.deletion_timestamp.is_none()
        })
        .map(|s| scale::StreamReplicas {
            replicas: i64::from(s.spec.replicas),
            source: format!("Stream resource {ns}/{}", s.name_any()),
            stream: s.spec.name,
        })
        .collect();
    let url = match ctx.settings.nats_url_override(ns, &n.statefulset) {
        Some(u) => u.replace(';', ","),
        None => format!("nats://{}.{ns}.svc:{}", n.client, nc.spec.ports.client),
    };
    let auth = crate::client_auth::for_cluster(&ctx.client, nc)
        .await
        .map_err(|e| format!("reading the operator's TLS and login Secrets: {e}"))??;
    if !nc.spec.auth.operator_mode {
        let client = ctx
            .nats
            .connect(&url, &auth, t)
            .await
            .map_err(|e| format!("connecting to {url}: {e}"))?;
        out.extend(scale::list_streams(client, "listed by the server", t).await?);
        return Ok(out);
    }
    // Operator mode: streams live in accounts; list them with each account's operator user.
    let accounts: Api<Account> = Api::namespaced(ctx.client.clone(), ns);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let list = accounts
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("listing Accounts: {e}"))?;
    for a in list.items {
        if a.spec.cluster_ref.name != n.statefulset {
            continue;
        }
        let ready = a
            .status
            .as_ref()
            .is_some_and(|s| conditions::is_true(&s.common.conditions, CONDITION_READY));
        if !ready {
            // Not pushed to the brokers yet: no streams there.
            continue;
        }
        let aname = a.name_any();
        let sname = crate::account::creds_secret_name(&aname, auth::OPERATOR_USER);
        let creds = secrets
            .get_opt(&sname)
            .await
            .map_err(|e| format!("reading Secret {sname}: {e}"))?
            .and_then(|s| s.data)
            .and_then(|d| d.get(auth::CREDS_KEY).map(|v| v.0.clone()))
            .and_then(|v| String::from_utf8(v).ok())
            .ok_or_else(|| {
                format!("Secret {sname} (Account {aname}'s operator creds) is missing")
            })?;
        let mut as_account = auth.clone();
        as_account.login = crate::client_auth::Login::Creds(creds);
        let client = ctx
            .nats
            .connect(&url, &as_account, t)
            .await
            .map_err(|e| format!("connecting to {url} as Account {aname}: {e}"))?;
        out.extend(scale::list_streams(client, &format!("Account {aname}"), t).await?);
    }
    Ok(out)
}

/// Events for Ready and Degraded transitions.
async fn transitions(
    nc: &NatsCluster,
    ctx: &Context,
    old: &NatsClusterStatus,
    new: &NatsClusterStatus,
) {
    let was = |t| conditions::is_true(&old.common.conditions, t);
    let is = |t| conditions::is_true(&new.common.conditions, t);
    let msg = |t| {
        conditions::get(&new.common.conditions, t)
            .map(|c| c.message.clone())
            .unwrap_or_default()
    };
    if !was(CONDITION_READY) && is(CONDITION_READY) {
        ctx.event(nc, false, "Ready", "Observe", msg(CONDITION_READY))
            .await;
    }
    if was(CONDITION_READY) && !is(CONDITION_READY) {
        ctx.event(nc, true, "NotReady", "Observe", msg(CONDITION_READY))
            .await;
    }
    // An unavailable PodMonitor has an event of its own (see `monitor::events`).
    let own_event = conditions::get(&new.common.conditions, CONDITION_DEGRADED)
        .is_some_and(|c| c.reason == monitor::REASON_UNAVAILABLE);
    if !was(CONDITION_DEGRADED) && is(CONDITION_DEGRADED) && !own_event {
        ctx.event(nc, true, "Degraded", "Observe", msg(CONDITION_DEGRADED))
            .await;
    }
}

/// Apply every child; the StatefulSet as stored, and what became of the PodMonitor.
async fn apply_children(
    nc: &NatsCluster,
    ctx: &Context,
    r: &render::Rendered,
) -> Result<(StatefulSet, monitor::Outcome)> {
    let client = &ctx.client;
    if nc.spec.auth.operator_mode {
        ensure_operator_secret(nc, ctx).await?;
    }
    let applied = &ctx.applied;
    let _: ConfigMap = apply(client, applied, &r.config_map).await?;
    let _: Service = apply(client, applied, &r.headless_service).await?;
    let _: Service = apply(client, applied, &r.client_service).await?;
    let sts: StatefulSet = apply(client, applied, &r.statefulset).await?;
    match &r.pdb {
        Some(pdb) => {
            apply_pdb(client, applied, &ctx.pdb, pdb).await?;
        }
        None => delete_owned_pdb(nc, ctx).await?,
    }
    let pod_monitor = monitor::sync(nc, ctx, r).await?;
    Ok((sts, pod_monitor))
}

/// Operator mode: create the Secret with the operator and system account keys once. An
/// existing Secret is never overwritten (every account JWT depends on its keys).
async fn ensure_operator_secret(nc: &NatsCluster, ctx: &Context) -> Result<()> {
    let n = render::names(nc)?;
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &n.namespace);
    if api.get_opt(&n.operator_secret).await?.is_some() {
        return Ok(());
    }
    let data = auth::new_operator_secret(&n.statefulset, &nc.spec.auth.system_account)
        .map_err(|e| Error::Auth(e.to_string()))?;
    let mut labels = render::labels(nc);
    labels.insert("app.kubernetes.io/component".into(), "operator-keys".into());
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(n.operator_secret.clone()),
            namespace: Some(n.namespace.clone()),
            labels: Some(labels),
            owner_references: nc.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        string_data: Some(data),
        type_: Some("Opaque".into()),
        ..Default::default()
    };
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => {
            ctx.event(
                nc,
                false,
                "OperatorKeysCreated",
                "Create",
                format!(
                    "created Secret {} with the operator, signing and system account keys; \
                     back it up: every account JWT depends on it",
                    n.operator_secret
                ),
            )
            .await;
            Ok(())
        }
        // Created meanwhile (another replica): keep that one.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// `podDisruptionBudget.enabled: false`: delete the PDB we created earlier, if any.
async fn delete_owned_pdb(nc: &NatsCluster, ctx: &Context) -> Result<()> {
    let n = render::names(nc)?;
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &n.namespace, &ctx.pdb);
    let Some(pdb) = api.get_opt(&n.pdb).await? else {
        return Ok(());
    };
    let uid = nc.meta().uid.as_deref();
    if pdb
        .owner_references()
        .iter()
        .any(|o| Some(o.uid.as_str()) == uid)
    {
        api.delete(&n.pdb, &DeleteParams::default()).await?;
        ctx.event(
            nc,
            false,
            "PodDisruptionBudgetDeleted",
            "Delete",
            format!(
                "podDisruptionBudget.enabled is false: deleted PodDisruptionBudget {}",
                n.pdb
            ),
        )
        .await;
    }
    Ok(())
}

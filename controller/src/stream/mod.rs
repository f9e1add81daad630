//! The Stream reconciler: JetStream API create/update/delete behind a finalizer, drift
//! correction on every resync.

pub mod config;
pub mod sync;

use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::ResourceExt;

use crate::client_auth::{self, ClientAuth, Login};
use crate::conditions::{self, Cond};
use crate::context::Context;
use crate::crd::{Account, NatsCluster, Stream, StreamStatus, CONDITION_READY};
use crate::error::{Error, Result};
use crate::reconcile::Reconciled;
use crate::render;
use crate::{account, auth};
use k8s_openapi::api::core::v1::Secret;
use sync::{Outcome, SyncError};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "stream";
/// Finalizer that deletes the JetStream stream before the resource goes.
pub const FINALIZER: &str = "natrix.io/stream";

/// Where the Stream's cluster is (the override URL or the NatsCluster's client Service) and
/// what the operator presents there (the cluster's TLS; outside operator mode its login).
enum Target {
    Url(String, ClientAuth),
    /// The NatsCluster does not exist or is being deleted.
    ClusterGone(String),
    /// The NatsCluster's TLS or login settings cannot be used (what is missing).
    AuthInvalid(String),
}

async fn target(s: &Stream, ctx: &Context) -> Result<Target> {
    let ns = s.namespace().ok_or(Error::MissingMetadata("namespace"))?;
    let cluster = &s.spec.cluster_ref.name;
    let api: Api<NatsCluster> = Api::namespaced(ctx.client.clone(), &ns);
    let nc = api.get_opt(cluster).await?;
    let auth = match &nc {
        Some(nc) => match client_auth::for_cluster(&ctx.client, nc).await? {
            Ok(a) => a,
            Err(msg) => return Ok(Target::AuthInvalid(msg)),
        },
        None => ClientAuth::default(),
    };
    if let Some(url) = ctx.settings.nats_url_override(&ns, cluster) {
        // `a;b` lists every server (see the Account reconciler); clients take `a,b`.
        return Ok(Target::Url(url.replace(';', ","), auth));
    }
    match nc {
        Some(nc) if nc.metadata.deletion_timestamp.is_none() => {
            let n = render::names(&nc)?;
            Ok(Target::Url(
                format!(
                    "nats://{}.{}.svc:{}",
                    n.client, n.namespace, nc.spec.ports.client
                ),
                auth,
            ))
        }
        Some(_) => Ok(Target::ClusterGone(format!(
            "NatsCluster {ns}/{cluster} is being deleted"
        ))),
        None => Ok(Target::ClusterGone(format!(
            "NatsCluster {ns}/{cluster} not found; create it or fix spec.clusterRef.name"
        ))),
    }
}

/// A delete that leaves the stream where it is (or has nothing to delete): the Event says why,
/// and the finalizer goes only when the resource changes.
async fn delete_skipped(s: &Stream, ctx: &Context, warning: bool, message: String) -> Action {
    ctx.event(s, warning, "DeleteSkipped", "Delete", message)
        .await;
    Action::await_change()
}

/// The creds the operator uses in the Stream's account: none without `accountRef`, else
/// those of the Account's operator user once the Account is Ready (or why not).
async fn account_creds(
    s: &Stream,
    ctx: &Context,
) -> Result<std::result::Result<Option<String>, String>> {
    let ns = s.namespace().ok_or(Error::MissingMetadata("namespace"))?;
    let Some(acc) = &s.spec.account_ref else {
        let clusters: Api<NatsCluster> = Api::namespaced(ctx.client.clone(), &ns);
        let cluster = &s.spec.cluster_ref.name;
        if let Some(nc) = clusters.get_opt(cluster).await? {
            if nc.spec.auth.operator_mode {
                return Ok(Err(format!(
                    "NatsCluster {ns}/{cluster} is in operator mode: every stream lives in an \
                     account; set spec.accountRef to an Account of that cluster"
                )));
            }
        }
        return Ok(Ok(None));
    };
    let accounts: Api<Account> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(a) = accounts.get_opt(&acc.name).await? else {
        return Ok(Err(format!(
            "Account {ns}/{} not found; create it or fix spec.accountRef.name",
            acc.name
        )));
    };
    let conds = a.status.map(|st| st.common.conditions).unwrap_or_default();
    if !conditions::is_true(&conds, CONDITION_READY) {
        let why = conditions::get(&conds, CONDITION_READY)
            .map(|c| c.message.clone())
            .unwrap_or_else(|| "not reconciled yet".into());
        return Ok(Err(format!(
            "Account {ns}/{} is not Ready ({why}); the stream is created once it is",
            acc.name
        )));
    }
    let sname = account::creds_secret_name(&acc.name, auth::OPERATOR_USER);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let creds = secrets.get_opt(&sname).await?.and_then(|sec| {
        let data = sec.data.unwrap_or_default();
        data.get(auth::CREDS_KEY)
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
    });
    Ok(creds.map(Some).ok_or_else(|| {
        format!(
            "Secret {sname} (the operator's creds in Account {}) is missing",
            acc.name
        )
    }))
}

/// A JetStream context on `url`, presenting `auth` with the account's `creds` (operator mode)
/// as the login when there are some.
async fn jetstream(
    url: &str,
    mut auth: ClientAuth,
    creds: Option<&str>,
    ctx: &Context,
) -> Result<async_nats::jetstream::Context> {
    let t = ctx.settings.nats_timeout;
    if let Some(c) = creds {
        auth.login = Login::Creds(c.to_string());
    }
    let client = ctx
        .nats
        .connect(url, &auth, t)
        .await
        .map_err(|message| Error::Connect {
            url: url.to_string(),
            message,
        })?;
    let mut js = async_nats::jetstream::new(client);
    js.set_timeout(ctx.settings.nats_timeout);
    Ok(js)
}

async fn set_ready(
    s: &Stream,
    ctx: &Context,
    ready: bool,
    reason: &str,
    message: String,
) -> Result<()> {
    let ns = s.namespace().ok_or(Error::MissingMetadata("namespace"))?;
    let old = s.status.clone().unwrap_or_default();
    let mut status: StreamStatus = old.clone();
    let gen = s.metadata.generation;
    conditions::set(
        &mut status.common.conditions,
        &Cond::new(CONDITION_READY, ready, reason, message),
        gen,
        Timestamp::now(),
    );
    status.common.observed_generation = gen;
    if status == old {
        return Ok(());
    }
    let api: Api<Stream> = Api::namespaced(ctx.client.clone(), &ns);
    api.patch_status(
        &s.name_any(),
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({ "status": status })),
    )
    .await?;
    Ok(())
}

impl Reconciled for Stream {
    const CONTROLLER: &'static str = CONTROLLER;
    const FINALIZER: Option<&'static str> = Some(FINALIZER);

    async fn apply(s: &Stream, ctx: &Context) -> Result<Action> {
        let resync = Action::requeue(ctx.settings.stream_resync);
        let name = &s.spec.name;
        let desired = match config::to_config(&s.spec) {
            Ok(c) => c,
            Err(msg) => {
                set_ready(s, ctx, false, "InvalidSpec", msg.clone()).await?;
                ctx.event(s, true, "InvalidSpec", "Validate", msg).await;
                return Ok(Action::await_change());
            }
        };
        let (url, auth) = match target(s, ctx).await? {
            Target::Url(u, a) => (u, a),
            Target::ClusterGone(msg) => {
                set_ready(s, ctx, false, "ClusterNotFound", msg).await?;
                return Ok(resync);
            }
            Target::AuthInvalid(msg) => {
                set_ready(s, ctx, false, "ClientAuthInvalid", msg).await?;
                return Ok(resync);
            }
        };
        let creds = match account_creds(s, ctx).await? {
            Ok(c) => c,
            Err(msg) => {
                set_ready(s, ctx, false, "AccountNotReady", msg).await?;
                return Ok(resync);
            }
        };
        let js = match jetstream(&url, auth, creds.as_deref(), ctx).await {
            Ok(js) => js,
            Err(e) => {
                set_ready(
                    s,
                    ctx,
                    false,
                    "ConnectFailed",
                    format!("{e}; retrying with backoff"),
                )
                .await?;
                return Err(e);
            }
        };
        let conds = s
            .status
            .as_ref()
            .map(|st| st.common.conditions.clone())
            .unwrap_or_default();
        let existed = conditions::is_true(&conds, CONDITION_READY);
        let generation_changed = s
            .status
            .as_ref()
            .and_then(|st| st.common.observed_generation)
            != s.metadata.generation;
        match sync::sync(&js, &desired, existed, s.spec.prevent_update).await {
            Ok(outcome) => {
                let (reason, msg, event) = match outcome {
                    Outcome::Created => (
                        "Created",
                        format!("stream {name} created"),
                        Some((false, format!("created stream {name} on {url}"))),
                    ),
                    Outcome::Restored => (
                        "Restored",
                        format!(
                        "stream {name} was missing on the server (deleted outside the operator?) \
                         and was created again from the spec; its messages are lost"
                    ),
                        Some((
                            true,
                            format!("stream {name} was missing on the server; created it again"),
                        )),
                    ),
                    Outcome::InSync => {
                        let keep = conditions::get(&conds, CONDITION_READY)
                            .filter(|c| c.status == "True" && !generation_changed)
                            .map(|c| (c.reason.clone(), c.message.clone()));
                        match keep {
                            // Keep the last decision's reason (Created, DriftCorrected, ...) visible.
                            Some((r, m)) => {
                                set_ready(s, ctx, true, &r, m).await?;
                                return Ok(resync);
                            }
                            None => ("InSync", format!("stream {name} matches the spec"), None),
                        }
                    }
                    Outcome::Updated(fields) if generation_changed => (
                        "Updated",
                        format!("stream {name} updated to the spec: {}", fields.join("; ")),
                        Some((
                            false,
                            format!("updated stream {name}: {}", fields.join("; ")),
                        )),
                    ),
                    Outcome::Updated(fields) => (
                        "DriftCorrected",
                        format!(
                        "stream {name} had been changed outside the operator and was put back: {}",
                        fields.join("; ")
                    ),
                        Some((
                            true,
                            format!(
                                "stream {name} drifted and was put back: {}",
                                fields.join("; ")
                            ),
                        )),
                    ),
                    Outcome::UpdatePrevented(fields) => (
                        "UpdatePrevented",
                        format!(
                            "stream {name} differs from the spec but spec.preventUpdate is set: {}",
                            fields.join("; ")
                        ),
                        None,
                    ),
                };
                set_ready(s, ctx, true, reason, msg).await?;
                if let Some((warning, note)) = event {
                    ctx.event(s, warning, reason, "Sync", note).await;
                }
                Ok(resync)
            }
            Err(e) => {
                let reason = e.reason();
                let msg = e.to_string();
                set_ready(s, ctx, false, reason, msg.clone()).await?;
                ctx.event(s, true, reason, "Sync", msg.clone()).await;
                Err(Error::JetStream(msg))
            }
        }
    }

    async fn cleanup(s: &Stream, ctx: &Context) -> Result<Action> {
        let name = &s.spec.name;
        if s.spec.prevent_delete {
            return Ok(delete_skipped(
                s,
                ctx,
                false,
                format!("spec.preventDelete is set: stream {name} is left on the server"),
            )
            .await);
        }
        let (url, auth) = match target(s, ctx).await? {
            Target::Url(u, a) => (u, a),
            Target::AuthInvalid(msg) => {
                return Ok(delete_skipped(
                    s,
                    ctx,
                    true,
                    format!("{msg}; stream {name} is left on the server"),
                )
                .await);
            }
            Target::ClusterGone(msg) => {
                return Ok(
                    delete_skipped(s, ctx, false, format!("{msg}; nothing to delete")).await,
                );
            }
        };
        let creds = match account_creds(s, ctx).await? {
            Ok(c) => c,
            Err(msg) => {
                return Ok(delete_skipped(
                    s,
                    ctx,
                    true,
                    format!("{msg}; stream {name} is left on the server"),
                )
                .await);
            }
        };
        let js = jetstream(&url, auth, creds.as_deref(), ctx).await?;
        match sync::delete(&js, name).await {
            Ok(existed) => {
                let note = if existed {
                    format!("deleted stream {name}")
                } else {
                    format!("stream {name} was already gone")
                };
                ctx.event(s, false, "Deleted", "Delete", note).await;
                Ok(Action::await_change())
            }
            Err(e) => {
                let msg = e.to_string();
                let _ = set_ready(s, ctx, false, e.reason(), msg.clone()).await;
                ctx.event(s, true, e.reason(), "Delete", msg.clone()).await;
                Err(Error::JetStream(msg))
            }
        }
    }
}

impl From<SyncError> for Error {
    fn from(e: SyncError) -> Self {
        Error::JetStream(e.to_string())
    }
}

//! The Account reconciler, status only: account keys, JWT signing and the push to the
//! nats-resolver wait for the broker's full resolver, so an Account says it has no effect yet.

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::ResourceExt;

use crate::conditions::{self, Cond};
use crate::context::Context;
use crate::crd::{Account, CONDITION_READY};
use crate::error::{Error, Result};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "account";
/// Reason of the Ready condition of every Account for now.
pub const REASON_NOT_IMPLEMENTED: &str = "NotImplemented";

/// Reconcile one Account: report that Accounts are not acted on yet.
pub async fn reconcile(a: Arc<Account>, ctx: Arc<Context>) -> Result<Action> {
    let start = Instant::now();
    let res = reconcile_inner(&a, &ctx).await;
    ctx.metrics
        .record(CONTROLLER, start.elapsed(), res.is_err());
    res
}

async fn reconcile_inner(a: &Account, ctx: &Context) -> Result<Action> {
    let ns = a.namespace().ok_or(Error::MissingMetadata("namespace"))?;
    let old = a.status.clone().unwrap_or_default();
    let mut status = old.clone();
    let gen = a.metadata.generation;
    conditions::set(
        &mut status.common.conditions,
        &Cond::new(
            CONDITION_READY,
            false,
            REASON_NOT_IMPLEMENTED,
            "Accounts are not reconciled yet: signing account JWTs and pushing them needs the \
             broker's nats-resolver, which does not exist yet; this Account has no effect",
        ),
        gen,
        Timestamp::now(),
    );
    status.common.observed_generation = gen;
    if status != old {
        let api: Api<Account> = Api::namespaced(ctx.client.clone(), &ns);
        api.patch_status(
            &a.name_any(),
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "status": status })),
        )
        .await?;
        if old.common.conditions.is_empty() {
            ctx.event(
                a,
                true,
                REASON_NOT_IMPLEMENTED,
                "Observe",
                "Accounts are not reconciled yet (no nats-resolver in the broker)".into(),
            )
            .await;
        }
    }
    Ok(Action::await_change())
}

/// Retry a failed status write after a while.
pub fn error_policy(a: Arc<Account>, err: &Error, ctx: Arc<Context>) -> Action {
    let wait = ctx.backoff.next(&format!(
        "{CONTROLLER}/{}/{}",
        a.namespace().unwrap_or_default(),
        a.name_any()
    ));
    tracing::warn!("Account {}: {err}; retrying in {wait:?}", a.name_any());
    Action::requeue(wait)
}

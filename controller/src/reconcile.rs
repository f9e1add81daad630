//! The frame every reconciler shares: its tracing span, metrics and backoff, and the
//! finalizer of the kinds that clean up outside Kubernetes.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::NamespaceResourceScope;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::context::Context;
use crate::error::{Error, Result};

/// A custom resource with a reconciler: what [`reconcile`] and [`error_policy`] run for it.
pub trait Reconciled:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + std::fmt::Debug
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
    /// Name of its controller in metrics, backoff keys and logs.
    const CONTROLLER: &'static str;
    /// The finalizer that holds the resource until [`Reconciled::cleanup`] succeeds; `None`
    /// when owner references clean up everything.
    const FINALIZER: Option<&'static str>;

    /// Bring what the resource describes in line with its spec.
    fn apply(o: &Self, ctx: &Context) -> impl Future<Output = Result<Action>> + Send;

    /// Remove what [`Reconciled::apply`] made outside Kubernetes (only with a finalizer).
    fn cleanup(o: &Self, ctx: &Context) -> impl Future<Output = Result<Action>> + Send;
}

/// Reconcile one object (the `Controller::run` callback): apply or, once deleted, clean up
/// behind the finalizer; traced, counted, and the backoff reset on success.
pub async fn reconcile<K: Reconciled>(o: Arc<K>, ctx: Arc<Context>) -> Result<Action> {
    let start = Instant::now();
    let kind = K::kind(&());
    let res = match K::FINALIZER {
        None => crate::telemetry::traced(&kind, o.as_ref(), K::apply(&o, &ctx)).await,
        Some(name) => {
            // Not counted: without a namespace there is nothing to reconcile.
            let ns = o.namespace().ok_or(Error::MissingMetadata("namespace"))?;
            let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
            let work = async {
                finalizer(&api, name, o.clone(), |ev| async {
                    match ev {
                        Finalizer::Apply(o) => K::apply(&o, &ctx).await,
                        Finalizer::Cleanup(o) => K::cleanup(&o, &ctx).await,
                    }
                })
                .await
                .map_err(Error::from)
            };
            crate::telemetry::traced(&kind, o.as_ref(), work).await
        }
    };
    ctx.finished(K::CONTROLLER, o.as_ref(), start, &res);
    res
}

/// Retry a failed reconcile with per-object exponential backoff.
pub fn error_policy<K: Reconciled>(o: Arc<K>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.retry(K::CONTROLLER, &K::kind(&()), o.as_ref(), err)
}

//! Run the NatsCluster, Account and Stream controllers until shutdown.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{Api, DynamicObject};
use kube::runtime::controller::Controller;
use kube::runtime::watcher;
use kube::Client;
use tokio::sync::watch;

use crate::context::Context;
use crate::crd::{Account, NatsCluster, Stream};
use crate::reconcile::{error_policy, reconcile};

fn api<K>(client: &Client, ns: Option<&str>) -> Api<K>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

fn dyn_api(client: &Client, ns: Option<&str>, ar: &kube::core::ApiResource) -> Api<DynamicObject> {
    match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, ar),
        None => Api::all_with(client.clone(), ar),
    }
}

/// Reconcile failures are logged by the error policies; watch failures (a missing CRD,
/// no permission) are logged here.
fn log_error<E, Q>(kind: &str, e: &kube::runtime::controller::Error<E, Q>)
where
    E: std::error::Error + 'static,
    Q: std::error::Error + 'static,
{
    use kube::runtime::controller::Error;
    match e {
        Error::ReconcilerFailed(..) => {}
        Error::ObjectNotFound(o) => tracing::debug!("{kind} {o} is gone"),
        other => tracing::warn!("{kind} controller: {other}"),
    }
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Run the controllers for each namespace (all namespaces when `namespaces` is empty)
/// until `shutdown` becomes true.
pub async fn run(ctx: Arc<Context>, namespaces: Vec<String>, shutdown: watch::Receiver<bool>) {
    let scopes: Vec<Option<String>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.into_iter().map(Some).collect()
    };
    let mut tasks = Vec::new();
    for ns in scopes {
        let client = ctx.client.clone();
        let ns = ns.as_deref();
        let wc = watcher::Config::default();
        let clusters = Controller::new(api::<NatsCluster>(&client, ns), wc.clone())
            .owns(api::<ConfigMap>(&client, ns), wc.clone())
            .owns(api::<Service>(&client, ns), wc.clone())
            .owns(api::<StatefulSet>(&client, ns), wc.clone())
            .owns_with(dyn_api(&client, ns, &ctx.pdb), ctx.pdb.clone(), wc.clone())
            .graceful_shutdown_on(stopped(shutdown.clone()))
            .run(
                reconcile::<NatsCluster>,
                error_policy::<NatsCluster>,
                ctx.clone(),
            )
            .for_each(|res| async move {
                match res {
                    Ok((o, _)) => tracing::debug!("reconciled NatsCluster {o}"),
                    Err(e) => log_error("NatsCluster", &e),
                }
            });
        let streams = Controller::new(api::<Stream>(&client, ns), wc)
            .graceful_shutdown_on(stopped(shutdown.clone()))
            .run(reconcile::<Stream>, error_policy::<Stream>, ctx.clone())
            .for_each(|res| async move {
                match res {
                    Ok((o, _)) => tracing::debug!("reconciled Stream {o}"),
                    Err(e) => log_error("Stream", &e),
                }
            });
        let accounts = Controller::new(api::<Account>(&client, ns), watcher::Config::default())
            .graceful_shutdown_on(stopped(shutdown.clone()))
            .run(reconcile::<Account>, error_policy::<Account>, ctx.clone())
            .for_each(|res| async move {
                if let Err(e) = res {
                    log_error("Account", &e);
                }
            });
        tasks.push(tokio::spawn(clusters));
        tasks.push(tokio::spawn(accounts));
        tasks.push(tokio::spawn(streams));
    }
    for t in tasks {
        if let Err(e) = t.await {
            tracing::error!("controller task: {e}");
        }
    }
}

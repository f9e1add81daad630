//! State shared by the reconcilers: the client, event recorder, metrics, settings,
//! NATS connections and per-object retry backoff.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::core::ApiResource;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};

use crate::apply::{Applied, FIELD_MANAGER};
use crate::client_auth::ClientAuth;
use crate::cluster::health::{HealthCheck, HttpHealth};
use crate::metrics::Metrics;

/// Operator settings that are not per resource.
#[derive(Clone, Debug)]
pub struct Settings {
    /// NATS URL per NatsCluster (`namespace/name` or just `name`), instead of the client Service.
    pub nats_urls: BTreeMap<String, String>,
    /// How often a Stream is compared with the server (drift correction).
    pub stream_resync: Duration,
    /// How often a NatsCluster is reconciled without a change.
    pub cluster_resync: Duration,
    /// Timeout of one connection attempt or JetStream request.
    pub nats_timeout: Duration,
    /// How often an Account's JWT is pushed again without a change (a broker that lost its
    /// resolver volume converges).
    pub account_resync: Duration,
    /// Monitor base URL per broker pod (`namespace/pod` or `pod`), instead of its IP or DNS
    /// name, for the rolling upgrade's `/healthz` checks.
    pub monitor_urls: BTreeMap<String, String>,
    /// How often a NatsCluster is looked at while its pods roll.
    pub rollout_poll: Duration,
    /// How long a rolling update may wait on one pod before `Degraded` says it is stuck.
    pub rollout_deadline: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            nats_urls: BTreeMap::new(),
            stream_resync: Duration::from_secs(30),
            cluster_resync: Duration::from_secs(300),
            nats_timeout: Duration::from_secs(5),
            account_resync: Duration::from_secs(60),
            monitor_urls: BTreeMap::new(),
            rollout_poll: Duration::from_secs(5),
            rollout_deadline: Duration::from_secs(600),
        }
    }
}

impl Settings {
    /// Parse `namespace/name=url` or `name=url` entries into `nats_urls`.
    pub fn parse_nats_urls(entries: &[String]) -> Result<BTreeMap<String, String>, String> {
        Self::parse_urls(
            "--nats-url",
            "[namespace/]cluster=nats://host:port",
            entries,
        )
    }

    /// Parse `namespace/pod=url` or `pod=url` entries into `monitor_urls`.
    pub fn parse_monitor_urls(entries: &[String]) -> Result<BTreeMap<String, String>, String> {
        Self::parse_urls("--monitor-url", "[namespace/]pod=http://host:port", entries)
    }

    fn parse_urls(
        flag: &str,
        form: &str,
        entries: &[String],
    ) -> Result<BTreeMap<String, String>, String> {
        entries
            .iter()
            .filter(|e| !e.trim().is_empty())
            .map(|e| match e.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => {
                    Ok((k.trim().to_string(), v.trim().to_string()))
                }
                _ => Err(format!("{flag} {e:?}: expected {form}")),
            })
            .collect()
    }

    /// The override URLs of every server of a NatsCluster: the override URL split at `;`
    /// (`nats://a:4222;nats://b:4222`), if there is one.
    pub fn server_urls_override(&self, namespace: &str, cluster: &str) -> Option<Vec<String>> {
        self.nats_url_override(namespace, cluster).map(|u| {
            u.split(';')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
    }

    /// The override URL for a NatsCluster, if any.
    pub fn nats_url_override(&self, namespace: &str, cluster: &str) -> Option<&String> {
        self.nats_urls
            .get(&format!("{namespace}/{cluster}"))
            .or_else(|| self.nats_urls.get(cluster))
    }
}

/// Exponential retry delays per object: 5 s, 10 s, 20 s, ... up to 5 minutes.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// The first delay.
    pub const BASE: Duration = Duration::from_secs(5);
    /// The longest delay.
    pub const MAX: Duration = Duration::from_secs(300);

    /// Count one more failure of `key` and return how long to wait before retrying.
    pub fn next(&self, key: &str) -> Duration {
        let mut m = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(key.to_string()).or_default();
        let d = Self::BASE.saturating_mul(1u32 << (*n).min(10));
        *n = n.saturating_add(1);
        d.min(Self::MAX)
    }

    /// Forget the failures of `key` (it reconciled).
    pub fn reset(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

/// async-nats clients by URL, connected on first use and kept.
#[derive(Default)]
pub struct NatsClients {
    clients: tokio::sync::Mutex<HashMap<String, async_nats::Client>>,
}

impl NatsClients {
    /// A connected client for `url` (cached), or the connection error's text.
    pub async fn get(&self, url: &str, timeout: Duration) -> Result<async_nats::Client, String> {
        self.connect(url, &ClientAuth::default(), timeout).await
    }

    /// A client for `url` authenticated with a creds file (cached per URL and creds).
    pub async fn get_with_creds(
        &self,
        url: &str,
        creds: &str,
        timeout: Duration,
    ) -> Result<async_nats::Client, String> {
        self.connect(url, &ClientAuth::creds(creds), timeout).await
    }

    /// A client for `url` presenting `auth` (TLS and login; cached per URL and `auth`).
    pub async fn connect(
        &self,
        url: &str,
        auth: &ClientAuth,
        timeout: Duration,
    ) -> Result<async_nats::Client, String> {
        let key = if auth.is_anonymous() {
            url.to_string()
        } else {
            format!("{url}#{}", auth.digest())
        };
        let mut m = self.clients.lock().await;
        if let Some(c) = m.get(&key) {
            if c.connection_state() == async_nats::connection::State::Connected {
                return Ok(c.clone());
            }
        }
        let opts = auth
            .connect_options()?
            .name("natrix-controller")
            .connection_timeout(timeout)
            .request_timeout(Some(timeout));
        let c = tokio::time::timeout(timeout * 2, opts.connect(url))
            .await
            .map_err(|_| format!("no connection within {:?}", timeout * 2))?
            .map_err(|e| e.to_string())?;
        if let Some(old) = m.insert(key, c.clone()) {
            drop(old);
        }
        Ok(c)
    }

    /// Drop the cached clients of `url` (e.g. after the account they log in to was deleted).
    pub async fn forget(&self, url: &str) {
        let mut m = self.clients.lock().await;
        m.retain(|k, _| k != url && !k.starts_with(&format!("{url}#")));
    }
}

/// Everything a reconcile needs.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Publishes Kubernetes Events.
    pub recorder: Recorder,
    /// Reconcile counters.
    pub metrics: Arc<Metrics>,
    /// The PodDisruptionBudget API the server serves (policy/v1, or policy/v1beta1 before 1.21).
    pub pdb: ApiResource,
    /// Operator settings.
    pub settings: Settings,
    /// NATS connections for the Stream reconciler.
    pub nats: NatsClients,
    /// Retry delays per object.
    pub backoff: Backoff,
    /// Broker health for rolling upgrades (`/healthz` over HTTP unless replaced).
    pub health: Arc<dyn HealthCheck>,
    /// What was last applied per child (an unchanged child is not applied again).
    pub applied: Applied,
    reporter: Reporter,
}

/// Backoff key of an object: `<controller>/<namespace>/<name>`.
fn object_key<K: kube::ResourceExt>(controller: &str, o: &K) -> String {
    format!(
        "{controller}/{}/{}",
        o.namespace().unwrap_or_default(),
        o.name_any()
    )
}

impl Context {
    /// Records a finished reconcile of `o` (metrics; the backoff starts over after a success).
    pub fn finished<K: kube::ResourceExt, T>(
        &self,
        controller: &'static str,
        o: &K,
        started: std::time::Instant,
        res: &crate::error::Result<T>,
    ) {
        self.metrics
            .record(controller, started.elapsed(), res.is_err());
        if res.is_ok() {
            self.backoff.reset(&object_key(controller, o));
        }
    }

    /// The `error_policy` of every controller: requeue `o` after its next backoff step.
    pub fn retry<K: kube::ResourceExt>(
        &self,
        controller: &str,
        kind: &str,
        o: &K,
        err: &crate::error::Error,
    ) -> kube::runtime::controller::Action {
        let wait = self.backoff.next(&object_key(controller, o));
        tracing::warn!(
            "{kind} {}/{}: {err}; retrying in {wait:?}",
            o.namespace().unwrap_or_default(),
            o.name_any()
        );
        kube::runtime::controller::Action::requeue(wait)
    }

    /// A context for `client`; `pdb` from [`crate::apply::pdb_resource`].
    pub fn new(
        client: Client,
        metrics: Arc<Metrics>,
        pdb: ApiResource,
        settings: Settings,
    ) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        let health = Arc::new(HttpHealth {
            overrides: settings.monitor_urls.clone(),
            timeout: settings.nats_timeout,
        });
        Context {
            health,
            recorder: Recorder::new(client.clone(), reporter.clone()),
            reporter,
            client,
            metrics,
            pdb,
            settings,
            nats: NatsClients::default(),
            backoff: Backoff::default(),
            applied: Applied::default(),
        }
    }

    /// This context with another broker health check (tests answer for pods that never run).
    pub fn with_health(mut self, health: Arc<dyn HealthCheck>) -> Self {
        self.health = health;
        self
    }

    /// Publish an Event about `obj`; a failure is logged, never fatal. Repeats of a reason
    /// within minutes become a series of the first Event (whose note stays).
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        self.publish(&self.recorder, obj, warning, reason, action, note)
            .await
    }

    /// Publish an Event of its own about `obj` (never folded into an earlier Event of the
    /// same reason): for steps whose notes differ, such as each pod of a rolling update.
    pub async fn event_each<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let fresh = Recorder::new(self.client.clone(), self.reporter.clone());
        self.publish(&fresh, obj, warning, reason, action, note)
            .await
    }

    async fn publish<K: Resource<DynamicType = ()>>(
        &self,
        recorder: &Recorder,
        obj: &K,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let ev = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            note: Some(note.chars().take(1000).collect()),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&ev, &obj.object_ref(&())).await {
            tracing::warn!("publishing event {reason}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let b = Backoff::default();
        assert_eq!(b.next("a"), Duration::from_secs(5));
        assert_eq!(b.next("a"), Duration::from_secs(10));
        assert_eq!(b.next("a"), Duration::from_secs(20));
        assert_eq!(b.next("b"), Duration::from_secs(5));
        for _ in 0..20 {
            b.next("a");
        }
        assert_eq!(b.next("a"), Backoff::MAX);
        b.reset("a");
        assert_eq!(b.next("a"), Duration::from_secs(5));
    }

    #[test]
    fn nats_url_overrides() {
        let urls = Settings::parse_nats_urls(&[
            "prod/nats=nats://10.0.0.1:4222".into(),
            "other=nats://127.0.0.1:1".into(),
        ])
        .unwrap();
        let s = Settings {
            nats_urls: urls,
            ..Settings::default()
        };
        assert_eq!(
            s.nats_url_override("prod", "nats").unwrap(),
            "nats://10.0.0.1:4222"
        );
        assert_eq!(s.nats_url_override("dev", "nats"), None);
        assert_eq!(
            s.nats_url_override("dev", "other").unwrap(),
            "nats://127.0.0.1:1"
        );
        assert!(Settings::parse_nats_urls(&["nourl".into()]).is_err());
        let m =
            Settings::parse_monitor_urls(&["prod/nats-0=http://127.0.0.1:8222".into()]).unwrap();
        assert_eq!(m["prod/nats-0"], "http://127.0.0.1:8222");
        let e = Settings::parse_monitor_urls(&["nats-0=".into()]).unwrap_err();
        assert!(e.starts_with("--monitor-url"), "{e}");
    }
}

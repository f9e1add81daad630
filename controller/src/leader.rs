//! Leader election with a coordination.k8s.io/v1 Lease: acquire, renew, hold, release.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use kube::Client;

/// What to do with the Lease as it is now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// No Lease yet: create it holding it.
    Create,
    /// We hold it: renew.
    Renew,
    /// Nobody holds it, or the holder stopped renewing: take it over.
    TakeOver,
    /// Someone else holds it and renews it: wait.
    Wait,
}

/// Decide from the Lease's spec (None: no Lease), our identity and the time.
pub fn decide(spec: Option<&LeaseSpec>, identity: &str, now: Timestamp) -> Decision {
    let Some(spec) = spec else {
        return Decision::Create;
    };
    match spec.holder_identity.as_deref() {
        Some(h) if h == identity => Decision::Renew,
        None | Some("") => Decision::TakeOver,
        Some(_) => {
            let secs = i64::from(spec.lease_duration_seconds.unwrap_or(15));
            let expired = match &spec.renew_time {
                Some(MicroTime(t)) => *t + SignedDuration::from_secs(secs) < now,
                None => true,
            };
            if expired {
                Decision::TakeOver
            } else {
                Decision::Wait
            }
        }
    }
}

/// A Lease-based lock.
#[derive(Clone)]
pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

impl LeaseLock {
    /// A lock on Lease `namespace/name` for `identity`, valid `duration` after each renewal.
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        duration: Duration,
    ) -> Self {
        LeaseLock {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
            duration,
        }
    }

    fn spec(&self, now: Timestamp, acquire: bool, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration.as_secs().max(1) as i32),
            acquire_time: acquire.then_some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// One attempt: returns whether we hold the Lease afterwards. A conflict (someone
    /// else wrote it first) is `Ok(false)`.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let current = self.api.get_opt(&self.name).await?;
        let decision = decide(
            current.as_ref().and_then(|l| l.spec.as_ref()),
            &self.identity,
            now,
        );
        let res = match (decision, current) {
            (Decision::Wait, _) => return Ok(false),
            (Decision::Create, _) | (_, None) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..Default::default()
                    },
                    spec: Some(self.spec(now, true, 0)),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            (d, Some(mut lease)) => {
                let old = lease.spec.clone().unwrap_or_default();
                let mut spec = self.spec(
                    now,
                    d == Decision::TakeOver,
                    old.lease_transitions.unwrap_or(0),
                );
                if d == Decision::TakeOver {
                    spec.lease_transitions = Some(old.lease_transitions.unwrap_or(0) + 1);
                } else {
                    spec.acquire_time = old.acquire_time;
                }
                lease.spec = Some(spec);
                // resourceVersion in the metadata makes this a compare-and-swap.
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match res {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Wait until we hold the Lease, retrying every `retry`.
    pub async fn acquire(&self, retry: Duration) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => return,
                Ok(false) => tracing::debug!("Lease {} held by another replica", self.name),
                Err(e) => tracing::warn!("Lease {}: {e}", self.name),
            }
            tokio::time::sleep(retry).await;
        }
    }

    /// Renew every third of the duration; returns when the Lease is lost (not renewed
    /// within the duration, or taken by someone else).
    pub async fn hold(&self) {
        let mut last_ok = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.duration / 3).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last_ok = tokio::time::Instant::now(),
                Ok(false) => {
                    tracing::error!("Lease {} was taken by another replica", self.name);
                    return;
                }
                Err(e) => {
                    tracing::warn!("renewing Lease {}: {e}", self.name);
                    if last_ok.elapsed() >= self.duration {
                        tracing::error!(
                            "Lease {} not renewed within {:?}",
                            self.name,
                            self.duration
                        );
                        return;
                    }
                }
            }
        }
    }

    /// Give the Lease up (on shutdown) so another replica takes over at once.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        let ours = lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref())
            == Some(self.identity.as_str());
        if !ours {
            return Ok(());
        }
        if let Some(spec) = lease.spec.as_mut() {
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
        }
        self.api
            .replace(&self.name, &PostParams::default(), &lease)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: Option<&str>, renewed: i64, secs: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(String::from),
            renew_time: Some(MicroTime(Timestamp::from_second(renewed).unwrap())),
            lease_duration_seconds: Some(secs),
            ..Default::default()
        }
    }

    #[test]
    fn decisions() {
        let now = Timestamp::from_second(1_000).unwrap();
        assert_eq!(decide(None, "me", now), Decision::Create);
        assert_eq!(
            decide(Some(&spec(Some("me"), 0, 15)), "me", now),
            Decision::Renew
        );
        assert_eq!(
            decide(Some(&spec(Some("you"), 990, 15)), "me", now),
            Decision::Wait
        );
        assert_eq!(
            decide(Some(&spec(Some("you"), 900, 15)), "me", now),
            Decision::TakeOver
        );
        assert_eq!(
            decide(Some(&spec(None, 999, 15)), "me", now),
            Decision::TakeOver
        );
    }
}

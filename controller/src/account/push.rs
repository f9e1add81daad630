//! Talking to the nats-resolver of every broker through the system account: where the
//! brokers are, `$SYS.REQ.CLAIMS.UPDATE` / `DELETE` and how their answers read.

use crate::client_auth::ClientAuth;
use std::time::Duration;

use crate::context::{NatsClients, Settings};
use crate::crd::{NatsCluster, PushResult};
use crate::render::{self, RenderError};

/// Subject of an account JWT push.
pub const UPDATE_SUBJECT: &str = "$SYS.REQ.CLAIMS.UPDATE";
/// Subject of a delete request.
pub const DELETE_SUBJECT: &str = "$SYS.REQ.CLAIMS.DELETE";

/// One broker: its name in `status.pushResults` and its URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    /// Pod name, or the URL when overridden.
    pub name: String,
    /// NATS URL of that one server.
    pub url: String,
}

/// Every broker of a NatsCluster: each pod's DNS name through the headless Service, or the
/// override URLs (`--nats-url [ns/]cluster=url;url`).
pub fn servers(nc: &NatsCluster, settings: &Settings) -> Result<Vec<Server>, RenderError> {
    let n = render::names(nc)?;
    if let Some(urls) = settings.server_urls_override(&n.namespace, &n.statefulset) {
        return Ok(urls
            .into_iter()
            .map(|u| Server {
                name: u.clone(),
                url: u,
            })
            .collect());
    }
    Ok((0..nc.spec.replicas)
        .map(|i| {
            let pod = format!("{}-{i}", n.statefulset);
            Server {
                url: format!(
                    "nats://{pod}.{}.{}.svc:{}",
                    n.headless, n.namespace, nc.spec.ports.client
                ),
                name: pod,
            }
        })
        .collect())
}

/// Read a resolver answer: `{"data":{"code":200,"message":..}}` is success, anything else
/// (`{"error":{"code":..,"description":..}}`) a failure with the server's words.
pub fn parse_answer(payload: &[u8]) -> PushResult {
    let v: serde_json::Value = match serde_json::from_slice(payload) {
        Ok(v) => v,
        Err(_) => {
            let text: String = String::from_utf8_lossy(payload).chars().take(200).collect();
            return PushResult {
                ok: false,
                message: Some(format!("unexpected answer: {text:?}")),
            };
        }
    };
    if let Some(d) = v.get("data") {
        let code = d.get("code").and_then(|c| c.as_i64());
        let msg = d
            .get("message")
            .and_then(|m| m.as_str())
            .unwrap_or_default()
            .to_string();
        if code == Some(200) {
            return PushResult {
                ok: true,
                message: Some(msg),
            };
        }
        return PushResult {
            ok: false,
            message: Some(format!("code {}: {msg}", code.unwrap_or_default())),
        };
    }
    if let Some(e) = v.get("error") {
        let code = e.get("code").and_then(|c| c.as_i64()).unwrap_or_default();
        let desc = e
            .get("description")
            .and_then(|m| m.as_str())
            .unwrap_or_default();
        return PushResult {
            ok: false,
            message: Some(format!("code {code}: {desc}")),
        };
    }
    PushResult {
        ok: false,
        message: Some("answer has neither data nor error".into()),
    }
}

/// Send `payload` to `subject` on one server as the system user (`auth`: the cluster's TLS and
/// the system user's creds); the server's verdict.
pub async fn request(
    clients: &NatsClients,
    server: &Server,
    auth: &ClientAuth,
    subject: &str,
    payload: String,
    timeout: Duration,
) -> PushResult {
    let client = match clients.connect(&server.url, auth, timeout).await {
        Ok(c) => c,
        Err(e) => {
            return PushResult {
                ok: false,
                message: Some(format!(
                    "connecting to {} as the system user: {e}; check that the broker runs and \
                     that it trusts the operator of this cluster's operator Secret",
                    server.url
                )),
            }
        }
    };
    match tokio::time::timeout(timeout, client.request(subject.to_string(), payload.into())).await {
        Ok(Ok(m)) => parse_answer(&m.payload),
        Ok(Err(e)) => PushResult {
            ok: false,
            message: Some(format!(
                "{subject}: {e}; is the full resolver (spec.resolver.enabled) on in this broker?"
            )),
        },
        Err(_) => PushResult {
            ok: false,
            message: Some(format!("{subject}: no answer within {timeout:?}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::NatsClusterSpec;
    use std::collections::BTreeMap;

    #[test]
    fn answers() {
        let ok = parse_answer(
            br#"{"data":{"code":200,"account":"A","message":"jwt updated"},"server":{"name":"n"}}"#,
        );
        assert!(ok.ok);
        assert_eq!(ok.message.as_deref(), Some("jwt updated"));
        let err = parse_answer(
            br#"{"error":{"code":500,"account":"A","description":"delete not enabled"}}"#,
        );
        assert!(!err.ok);
        assert_eq!(err.message.as_deref(), Some("code 500: delete not enabled"));
        assert!(!parse_answer(b"nope").ok);
        assert!(!parse_answer(b"{}").ok);
    }

    #[test]
    fn servers_are_pods_or_overrides() {
        let spec: NatsClusterSpec = serde_json::from_value(serde_json::json!({})).unwrap();
        let mut nc = NatsCluster::new("nats", spec);
        nc.metadata.namespace = Some("prod".into());
        let s = servers(&nc, &Settings::default()).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[1].name, "nats-1");
        assert_eq!(s[1].url, "nats://nats-1.nats-headless.prod.svc:4222");
        let settings = Settings {
            nats_urls: BTreeMap::from([(
                "prod/nats".to_string(),
                "nats://127.0.0.1:1; nats://127.0.0.1:2".to_string(),
            )]),
            ..Settings::default()
        };
        let s = servers(&nc, &settings).unwrap();
        assert_eq!(
            s.iter().map(|s| s.url.as_str()).collect::<Vec<_>>(),
            vec!["nats://127.0.0.1:1", "nats://127.0.0.1:2"]
        );
    }
}

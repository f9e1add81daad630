//! A broker's health as the rolling upgrade sees it: `GET /healthz` on its monitor port
//! (JetStream included), behind a trait so tests can answer for pods that never run.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The broker pod to check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Namespace of the pod.
    pub namespace: String,
    /// Pod name.
    pub pod: String,
    /// Headless Service giving the pod its DNS name.
    pub headless: String,
    /// The pod's IP, when known.
    pub ip: Option<String>,
    /// Monitor (HTTP) port.
    pub monitor_port: i32,
}

/// Checks whether a broker is healthy; the error says what it answered.
pub trait HealthCheck: Send + Sync {
    /// `Ok` when the broker's `/healthz` answers ok.
    fn check<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<(), String>>;
}

/// `GET <base>/healthz` over plain HTTP, where the base is an override for the pod, else
/// the pod's IP, else its DNS name through the headless Service.
#[derive(Clone, Debug)]
pub struct HttpHealth {
    /// Base URL per pod (`namespace/pod` or `pod`), e.g. `http://127.0.0.1:8222`.
    pub overrides: BTreeMap<String, String>,
    /// Timeout of the whole request.
    pub timeout: Duration,
}

impl HttpHealth {
    /// The `/healthz` URL for `t`.
    pub fn url(&self, t: &Target) -> String {
        let base = self
            .overrides
            .get(&format!("{}/{}", t.namespace, t.pod))
            .or_else(|| self.overrides.get(&t.pod))
            .map(|b| b.trim_end_matches('/').to_string())
            .unwrap_or_else(|| match &t.ip {
                Some(ip) if ip.contains(':') => format!("http://[{ip}]:{}", t.monitor_port),
                Some(ip) => format!("http://{ip}:{}", t.monitor_port),
                None => format!(
                    "http://{}.{}.{}.svc:{}",
                    t.pod, t.headless, t.namespace, t.monitor_port
                ),
            });
        format!("{base}/healthz")
    }
}

impl HealthCheck for HttpHealth {
    fn check<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let url = self.url(target);
            match tokio::time::timeout(self.timeout, get(&url)).await {
                Ok(Ok((200, body))) if healthz_ok(&body) => Ok(()),
                Ok(Ok((code, body))) => {
                    let body: String = body.trim().chars().take(300).collect();
                    Err(format!("GET {url}: HTTP {code} {body}"))
                }
                Ok(Err(e)) => Err(format!("GET {url}: {e}")),
                Err(_) => Err(format!("GET {url}: no answer within {:?}", self.timeout)),
            }
        })
    }
}

/// Whether a `/healthz` body says ok (`{"status":"ok"}`).
pub fn healthz_ok(body: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("status").and_then(|s| s.as_str()).map(|s| s == "ok"))
        .unwrap_or(false)
}

/// Split `http://host:port/path` into the address to dial, the Host header and the path.
pub fn split_url(url: &str) -> Result<(String, String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url:?}: only http:// monitor URLs are supported"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if hostport.is_empty() {
        return Err(format!("{url:?}: no host"));
    }
    let has_port = match hostport.rfind(':') {
        Some(i) => !hostport[i..].contains(']'),
        None => false,
    };
    let addr = if has_port {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    };
    Ok((addr, hostport.to_string(), path.to_string()))
}

/// One HTTP/1.1 GET; the status code and body.
async fn get(url: &str) -> Result<(u16, String), String> {
    let (addr, host, path) = split_url(url)?;
    let mut s = tokio::net::TcpStream::connect(&addr)
        .await
        .map_err(|e| format!("connecting: {e}"))?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .map_err(|e| format!("sending: {e}"))?;
    let mut raw = Vec::new();
    s.take(64 * 1024)
        .read_to_end(&mut raw)
        .await
        .map_err(|e| format!("reading: {e}"))?;
    parse_response(&raw)
}

/// The status code and body of a raw HTTP/1.1 response (chunked bodies are joined).
pub fn parse_response(raw: &[u8]) -> Result<(u16, String), String> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| "incomplete HTTP response".to_string())?;
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| format!("not an HTTP response: {:?}", head.lines().next()))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(ip: Option<&str>) -> Target {
        Target {
            namespace: "prod".into(),
            pod: "nats-2".into(),
            headless: "nats-headless".into(),
            ip: ip.map(String::from),
            monitor_port: 8222,
        }
    }

    fn http(overrides: &[(&str, &str)]) -> HttpHealth {
        HttpHealth {
            overrides: overrides
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            timeout: Duration::from_secs(2),
        }
    }

    #[test]
    fn urls() {
        let h = http(&[]);
        assert_eq!(
            h.url(&target(None)),
            "http://nats-2.nats-headless.prod.svc:8222/healthz"
        );
        assert_eq!(
            h.url(&target(Some("10.1.2.3"))),
            "http://10.1.2.3:8222/healthz"
        );
        assert_eq!(
            h.url(&target(Some("fd00::5"))),
            "http://[fd00::5]:8222/healthz"
        );
        let h = http(&[("prod/nats-2", "http://127.0.0.1:9/"), ("nats-1", "x")]);
        assert_eq!(
            h.url(&target(Some("10.1.2.3"))),
            "http://127.0.0.1:9/healthz"
        );
        let h = http(&[("nats-2", "http://127.0.0.2:7")]);
        assert_eq!(h.url(&target(None)), "http://127.0.0.2:7/healthz");
    }

    #[test]
    fn url_parts() {
        assert_eq!(
            split_url("http://a.b:8222/healthz").unwrap(),
            ("a.b:8222".into(), "a.b:8222".into(), "/healthz".into())
        );
        assert_eq!(
            split_url("http://[fd00::5]:8222/healthz").unwrap().0,
            "[fd00::5]:8222"
        );
        assert_eq!(split_url("http://host").unwrap().0, "host:80");
        assert_eq!(split_url("http://[fd00::5]/x").unwrap().0, "[fd00::5]:80");
        assert!(split_url("https://host/").is_err());
        assert!(split_url("http:///x").is_err());
    }

    #[test]
    fn responses() {
        let (c, b) = parse_response(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"status\":\"ok\"}",
        )
        .unwrap();
        assert_eq!(c, 200);
        assert!(healthz_ok(&b));
        let (c, b) = parse_response(
            b"HTTP/1.1 503 Service Unavailable\r\ntransfer-encoding: chunked\r\n\r\n\
              b\r\n{\"status\":\"\r\n13\r\nunavailable\",\"x\":1}\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(c, 503);
        assert_eq!(b, "{\"status\":\"unavailable\",\"x\":1}");
        assert!(!healthz_ok(&b));
        assert!(!healthz_ok("ok"));
        assert!(parse_response(b"garbage").is_err());
    }

    #[tokio::test]
    async fn checks_a_real_http_server() {
        use tokio::net::TcpListener;
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let answers = [
            "HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n{\"status\":\"ok\"}",
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 60\r\n\r\n\
             {\"status\":\"unavailable\",\"error\":\"JetStream stream X down\"}",
        ];
        tokio::spawn(async move {
            for a in answers {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap();
                assert!(String::from_utf8_lossy(&buf[..n]).starts_with("GET /healthz HTTP/1.1"));
                s.write_all(a.as_bytes()).await.unwrap();
            }
        });
        let h = http(&[("nats-2", &format!("http://{addr}"))]);
        let t = target(None);
        assert_eq!(h.check(&t).await, Ok(()));
        let e = h.check(&t).await.unwrap_err();
        assert!(e.contains("HTTP 503") && e.contains("stream X down"), "{e}");
        // Nothing listens any more.
        let e = h.check(&t).await.unwrap_err();
        assert!(e.contains("connecting"), "{e}");
    }
}

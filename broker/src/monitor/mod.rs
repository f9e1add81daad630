//! The HTTP monitoring server: nats-server's endpoints and JSON.
//!
//! Output follows nats-server 2.15 byte for byte where it can: field names and order, Go's
//! indented JSON with HTML-safe escaping, Go duration and time formats, the 400 messages of its
//! argument decoders and the 404 page. A `callback=` argument wraps JSON answers as JSONP
//! (`application/javascript`), as nats-server did before 2.11 and dashboards still use.

pub mod accounts;
pub mod connz;
pub mod jsz;
pub mod metrics;
pub mod proc;
pub mod profile;
pub mod subsz;
pub mod util;
pub mod varz;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::log::rfc3339;
use crate::server::{host_str, Server, VERSION};
use connz::ConnzOptions;
use subsz::SubszOptions;
use util::{go_escape, Params};

/// Endpoint paths (before the base path), as nats-server names them in `http_req_stats`.
pub const ROOT_PATH: &str = "/";
/// `/varz`.
pub const VARZ_PATH: &str = "/varz";
/// `/connz`.
pub const CONNZ_PATH: &str = "/connz";
/// `/routez`.
pub const ROUTEZ_PATH: &str = "/routez";
/// `/subsz`.
pub const SUBSZ_PATH: &str = "/subsz";
/// `/subscriptionsz`, an alias of `/subsz` counted under it.
pub const SUBSCRIPTIONSZ_PATH: &str = "/subscriptionsz";
/// `/healthz`.
pub const HEALTHZ_PATH: &str = "/healthz";
/// `/accountz`.
pub const ACCOUNTZ_PATH: &str = "/accountz";
/// `/accstatz`.
pub const ACCSTATZ_PATH: &str = "/accstatz";
/// `/jsz`.
pub const JSZ_PATH: &str = "/jsz";
/// `/leafz`.
pub const LEAFZ_PATH: &str = "/leafz";
/// `/gatewayz`.
pub const GATEWAYZ_PATH: &str = "/gatewayz";
/// `/metrics`: Prometheus text under prometheus-nats-exporter's names (not in nats-server).
pub const METRICS_PATH: &str = "/metrics";

/// Shared state of the monitoring server.
struct Monitor {
    server: Arc<Server>,
    /// Normalized base path: "/" or "/prefix" without a trailing slash.
    base: String,
    req_stats: Mutex<BTreeMap<String, u64>>,
}

impl Monitor {
    fn count(&self, path: &str) {
        *self.req_stats.lock().entry(path.to_string()).or_insert(0) += 1;
    }

    /// Maps a request path to the endpoint it names, honouring the base path.
    fn endpoint<'a>(&self, path: &'a str) -> Option<&'a str> {
        if path == self.base {
            return Some(ROOT_PATH);
        }
        let rest = if self.base == "/" {
            path
        } else {
            path.strip_prefix(self.base.as_str())?
        };
        if rest.starts_with('/') && rest != "/" {
            Some(rest)
        } else {
            None
        }
    }
}

/// nats-server's `normalizeBasePath`: leading slash, cleaned, no trailing slash.
fn normalize_base_path(p: &str) -> String {
    let parts: Vec<&str> = p
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    if parts.is_empty() {
        "/".into()
    } else {
        format!("/{}", parts.join("/"))
    }
}

/// Opens what the options ask for: the HTTP and HTTPS monitoring ports and the profiling
/// port, each serving in its own task; nats-server's startup checks and log lines.
pub async fn start(server: &Arc<Server>) -> std::io::Result<()> {
    let opts = server.options();
    // nats-server's StartMonitoring checks, with its messages.
    if opts.http_port != 0 && opts.https_port != 0 {
        return Err(std::io::Error::other(format!(
            "Can't start monitoring: can't specify both HTTP ({}) and HTTPs ({}) ports",
            opts.http_port, opts.https_port
        )));
    }
    if opts.http_port != 0 {
        let http_port = if opts.http_port < 0 {
            0
        } else {
            opts.http_port as u16
        };
        let http = TcpListener::bind((opts.http_host.as_str(), http_port)).await?;
        let haddr = http.local_addr()?;
        *server.http_addr.write() = Some(haddr);
        tracing::info!(
            "Starting http monitor on {}:{}",
            host_str(&opts.http_host),
            haddr.port()
        );
        tracing::info!(
            "Listening for monitoring connections on http://{}:{}",
            host_str(&opts.http_host),
            haddr.port()
        );
        let me = server.clone();
        tokio::spawn(async move { serve(me, http).await });
    }
    if opts.prof_port != 0 {
        // As nats-server: on the client listen host.
        let port = if opts.prof_port < 0 {
            0
        } else {
            opts.prof_port as u16
        };
        let prof = TcpListener::bind((opts.host.as_str(), port)).await?;
        tracing::info!("profiling port: {}", prof.local_addr()?.port());
        let me = server.clone();
        tokio::spawn(async move { profile::serve(me, prof).await });
    }
    if opts.https_port != 0 {
        let Some(tls) = &opts.tls else {
            return Err(std::io::Error::other(
                "Can't start monitoring: TLS cert and key required for HTTPS",
            ));
        };
        // The client certificate and settings, but never asking for client certificates
        // (nats-server sets ClientAuth = NoClientCert on its clone of the config).
        let mut mon_tls = tls.clone();
        mon_tls.verify = false;
        mon_tls.verify_and_map = false;
        crate::server::tls::install_crypto_provider();
        let config = crate::server::tls::server_config(&mon_tls)
            .map_err(|e| std::io::Error::other(format!("Can't start monitoring: {e}")))?;
        let https_port = if opts.https_port < 0 {
            0
        } else {
            opts.https_port as u16
        };
        let https = TcpListener::bind((opts.http_host.as_str(), https_port)).await?;
        let haddr = https.local_addr()?;
        *server.https_addr.write() = Some(haddr);
        tracing::info!(
            "Starting https monitor on {}:{}",
            host_str(&opts.http_host),
            haddr.port()
        );
        let me = server.clone();
        // nats-server's default handshake timeout when none is set.
        let timeout = if tls.timeout.is_zero() {
            std::time::Duration::from_secs(2)
        } else {
            tls.timeout
        };
        tokio::spawn(async move { serve_tls(me, https, config, timeout).await });
    }
    Ok(())
}

/// Serves monitoring on an already bound listener until the server shuts down.
pub async fn serve(server: Arc<Server>, listener: TcpListener) {
    serve_on(server, listener).await
}

/// Serves monitoring over TLS (`https_port`) on an already bound listener until the server
/// shuts down. Handshakes run concurrently, each bounded by `handshake_timeout`; one that
/// fails or times out only drops that connection.
pub async fn serve_tls(
    server: Arc<Server>,
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    handshake_timeout: Duration,
) {
    let listener = TlsListener::new(listener, config, handshake_timeout);
    serve_on(server, listener).await
}

async fn serve_on<L>(server: Arc<Server>, listener: L)
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let base = normalize_base_path(&server.options().http_base_path);
    let monitor = Arc::new(Monitor {
        server: server.clone(),
        base,
        req_stats: Mutex::new(BTreeMap::new()),
    });
    let app = Router::new().fallback(handle).with_state(monitor);
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(async move { server.wait_shutdown().await })
        .await;
}

/// A TCP listener that hands out TLS streams: a background task accepts sockets and runs each
/// handshake in its own task, so a slow or failed handshake never holds up the others.
pub struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Starts accepting on `listener` with `config` (no client certificates are asked for
    /// unless `config` does).
    pub fn new(
        listener: TcpListener,
        config: Arc<rustls::ServerConfig>,
        handshake_timeout: Duration,
    ) -> TlsListener {
        let local = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (tx, rx) = mpsc::channel(64);
        let acceptor = TlsAcceptor::from(config);
        let task = tokio::spawn(async move {
            loop {
                let (sock, addr) = tokio::select! {
                    res = listener.accept() => match res {
                        Ok(conn) => conn,
                        Err(e) => {
                            tracing::debug!("Error accepting monitoring connection: {e}");
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    },
                    _ = tx.closed() => return,
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(sock)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, addr)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!("{addr} - https monitoring TLS handshake error: {e}")
                        }
                        Err(_) => {
                            tracing::debug!("{addr} - https monitoring TLS handshake timeout")
                        }
                    }
                });
            }
        });
        TlsListener { rx, local, task }
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            // The accept task only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

async fn handle(state: State<Arc<Monitor>>, uri: Uri) -> Response {
    let callback = Query::<Vec<(String, String)>>::try_from_uri(&uri)
        .ok()
        .and_then(|q| {
            q.0.into_iter()
                .find(|(k, _)| k == "callback")
                .map(|(_, v)| v)
        })
        .filter(|cb| !cb.is_empty());
    let resp = route(state, uri).await;
    match callback {
        Some(cb) if is_json(&resp) => jsonp(resp, &cb).await,
        _ => resp,
    }
}

fn is_json(resp: &Response) -> bool {
    resp.status() == StatusCode::OK
        && resp
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"))
}

/// Wraps a JSON answer as `callback(...)`.
async fn jsonp(resp: Response, callback: &str) -> Response {
    let (mut parts, body) = resp.into_parts();
    let Ok(json) = axum::body::to_bytes(body, usize::MAX).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let mut out = Vec::with_capacity(json.len() + callback.len() + 2);
    out.extend_from_slice(callback.as_bytes());
    out.push(b'(');
    out.extend_from_slice(&json);
    out.push(b')');
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/javascript"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(out))
}

async fn route(State(m): State<Arc<Monitor>>, uri: Uri) -> Response {
    let params = Params(
        Query::<Vec<(String, String)>>::try_from_uri(&uri)
            .map(|q| q.0)
            .unwrap_or_default(),
    );
    let Some(endpoint) = m.endpoint(uri.path()) else {
        return not_found();
    };
    let s = &m.server;
    match endpoint {
        ROOT_PATH => {
            m.count(ROOT_PATH);
            root_page(&m)
        }
        VARZ_PATH => {
            m.count(VARZ_PATH);
            let stats = m.req_stats.lock().clone();
            json(&s.varz(stats))
        }
        CONNZ_PATH => match ConnzOptions::from_params(&params) {
            Ok(opts) => {
                m.count(CONNZ_PATH);
                json(&s.connz(&opts))
            }
            Err(e) => bad_request(e),
        },
        SUBSZ_PATH | SUBSCRIPTIONSZ_PATH => {
            m.count(SUBSZ_PATH);
            match SubszOptions::from_params(&params) {
                Ok(opts) => json(&s.subsz(&opts)),
                Err(e) => bad_request(e),
            }
        }
        ROUTEZ_PATH => {
            let detail = params.get("subs").eq_ignore_ascii_case("detail");
            let subs = if detail {
                false
            } else {
                match params.bool("subs") {
                    Ok(b) => b,
                    Err(e) => return bad_request(e),
                }
            };
            m.count(ROUTEZ_PATH);
            json(&routez_doc(s, subs, detail))
        }
        HEALTHZ_PATH => {
            m.count(HEALTHZ_PATH);
            for p in [
                "js-enabled",
                "js-enabled-only",
                "js-server-only",
                "js-meta-only",
            ] {
                if let Err(e) = params.bool(p) {
                    return bad_request(e);
                }
            }
            let flag = |p: &str| params.bool(p).unwrap_or(false);
            let scope = if flag("js-enabled-only") || flag("js-server-only") {
                HealthScope::Enabled
            } else if flag("js-meta-only") {
                HealthScope::Meta
            } else {
                HealthScope::Full
            };
            match healthz_error_in(s, scope) {
                None => respond(r#"{"status":"ok"}"#.to_string()),
                Some(e) => {
                    let mut body = serde_json::json!({"status": "unavailable", "status_code": 503, "error": e});
                    // nats-server leaves the code out while the meta layer recovers.
                    if e == crate::jetstream::clustered::META_RECOVERING {
                        body.as_object_mut().map(|m| m.remove("status_code"));
                    }
                    let mut r = respond(body.to_string());
                    *r.status_mut() = axum::http::StatusCode::SERVICE_UNAVAILABLE;
                    r
                }
            }
        }
        ACCOUNTZ_PATH => {
            m.count(ACCOUNTZ_PATH);
            match s.accountz(params.get("acc"), now()) {
                Ok(doc) => json(&doc),
                Err(e) => bad_request(e),
            }
        }
        ACCSTATZ_PATH => {
            m.count(ACCSTATZ_PATH);
            match params.bool("unused") {
                Ok(unused) => json(&s.accstatz(unused, now())),
                Err(e) => bad_request(e),
            }
        }
        JSZ_PATH => {
            m.count(JSZ_PATH);
            for p in ["accounts", "streams", "consumers", "config", "leader-only"] {
                if let Err(e) = params.bool(p) {
                    return bad_request(e);
                }
            }
            for p in ["offset", "limit"] {
                if let Err(e) = params.int(p) {
                    return bad_request(e);
                }
            }
            let flag = |p: &str| params.bool(p).unwrap_or(false);
            let opts = jsz::JszOptions {
                account: Some(params.get("acc").to_string()).filter(|a| !a.is_empty()),
                accounts: flag("accounts"),
                streams: flag("streams"),
                consumers: flag("consumers"),
                config: flag("config"),
                offset: params.int("offset").unwrap_or(0).max(0) as usize,
                limit: params.int("limit").unwrap_or(0).max(0) as usize,
            };
            let server = m.server.clone();
            let doc = tokio::task::spawn_blocking(move || jsz::jsz(&server, &opts))
                .await
                .ok()
                .flatten();
            match doc {
                Some(d) => json(&d),
                None => json(&Jsz::disabled(s)),
            }
        }
        LEAFZ_PATH => {
            m.count(LEAFZ_PATH);
            if let Err(e) = params.bool("subs") {
                return bad_request(e);
            }
            json(&leafz_doc(s))
        }
        METRICS_PATH => {
            m.count(METRICS_PATH);
            let stats = m.req_stats.lock().clone();
            // JetStream details ask each stream's thread: off the async workers.
            let server = m.server.clone();
            let body = tokio::task::spawn_blocking(move || metrics::render(&server, stats))
                .await
                .unwrap_or_default();
            let mut r = body.into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(metrics::CONTENT_TYPE),
            );
            r
        }
        GATEWAYZ_PATH => {
            m.count(GATEWAYZ_PATH);
            if let Err(e) = params.bool("accs") {
                return bad_request(e);
            }
            json(&Gatewayz {
                server_id: s.server_id.clone(),
                now: now(),
                outbound_gateways: BTreeMap::new(),
                inbound_gateways: BTreeMap::new(),
            })
        }
        _ => not_found(),
    }
}

fn now() -> String {
    rfc3339(SystemTime::now())
}

/// The `/healthz` status: `ok`, or `unavailable` when JetStream has a stream that is not
/// running (it failed to recover, or its thread stopped).
fn healthz_status(s: &Server) -> &'static str {
    if healthz_error(s).is_some() {
        "unavailable"
    } else {
        "ok"
    }
}

pub use crate::jetstream::HealthScope;

/// Why the server is unhealthy, if it is.
pub(crate) fn healthz_error(s: &Server) -> Option<String> {
    healthz_error_in(s, HealthScope::Full)
}

/// Why the server is unhealthy as far as `scope` looks, if it is.
pub(crate) fn healthz_error_in(s: &Server, scope: HealthScope) -> Option<String> {
    crate::jetstream::JetStream::of(s)?.unhealthy(scope)
}

/// The `/routez` document; `subs` adds each route's `subscriptions_list`, `detail` its
/// `subscriptions_list_detail`.
pub(crate) fn routez_doc(s: &Server, subs: bool, detail: bool) -> Routez {
    Routez {
        server_id: s.server_id.clone(),
        server_name: s.server_name.clone(),
        now: now(),
        num_routes: crate::cluster::Cluster::of(s).map_or(0, |c| c.num_routes()),
        routes: crate::cluster::Cluster::of(s)
            .map(|c| c.routez(subs, detail))
            .unwrap_or_default(),
    }
}

/// The `/leafz` document (no leaf nodes).
fn leafz_doc(s: &Server) -> Leafz {
    Leafz {
        server_id: s.server_id.clone(),
        now: now(),
        leafnodes: 0,
        leafs: Vec::new(),
    }
}

/// Go's `json.MarshalIndent(v, "", "  ")` with its HTML-safe escaping, as `application/json`.
fn json<T: Serialize>(v: &T) -> Response {
    match serde_json::to_string_pretty(v) {
        Ok(body) => respond(go_escape(body)),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// A 200 JSON response with nats-server's headers.
fn respond(body: String) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    r
}

/// A 400 with nats-server's plain-text message.
fn bad_request(msg: String) -> Response {
    let mut r = (StatusCode::BAD_REQUEST, msg).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Go's `http.NotFound`.
fn not_found() -> Response {
    let mut r = (StatusCode::NOT_FOUND, "404 page not found\n").into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// The index page, nats-server's layout with links to the endpoints Natrix serves.
fn root_page(m: &Monitor) -> Response {
    let link = |p: &str| {
        if m.base == "/" {
            format!(".{p}")
        } else {
            format!(".{}{}", m.base, p)
        }
    };
    let entries = [
        ("General", VARZ_PATH),
        ("JetStream", JSZ_PATH),
        ("Connections", CONNZ_PATH),
        ("Accounts", ACCOUNTZ_PATH),
        ("Account Stats", ACCSTATZ_PATH),
        ("Subscriptions", SUBSZ_PATH),
        ("Routes", ROUTEZ_PATH),
        ("LeafNodes", LEAFZ_PATH),
        ("Gateways", GATEWAYZ_PATH),
        ("Metrics", METRICS_PATH),
        ("Health Probe", HEALTHZ_PATH),
    ];
    let mut links = String::new();
    for (i, (name, path)) in entries.iter().enumerate() {
        let class = if i + 1 == entries.len() {
            " class=last"
        } else {
            ""
        };
        links.push_str(&format!(
            "\t<a href={}{}>{}<span class=\"endpoint\"> {}</span></a>\n",
            link(path),
            class,
            name,
            path
        ));
    }
    let html = format!(
        r#"<html lang="en">
	<head>
	<link rel="shortcut icon" href="https://nats.io/favicon.ico">
	<style type="text/css">
		body {{ font-family: ui-sans-serif,system-ui,-apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,"Helvetica Neue",Arial,"Noto Sans",sans-serif; font-size: 18; font-weight: light-bold; margin-left: 32px }}
		a {{ display:block; margin-left: 7px; padding-bottom: 6px; color: rgb(72 72 92); text-decoration: none }}
		a:hover {{ font-weight: 600; color: rgb(59 50 202) }}
		a.help {{ display:inline; font-weight: 600; color: rgb(59 50 202); font-size: 20}}
		a.last {{ padding-bottom: 16px }}
		a.version {{ font-size: 14; font-weight: 400; width: 312px; text-align: right; margin-top: -2rem }}
		a.version:hover {{ color: rgb(22 22 32) }}
		.endpoint {{ font-size: 12px; color: #999; font-family: monospace; display: none }}
		a:hover .endpoint {{ display: inline }}

	</style>
	</head>
	<body>
	<h2>Natrix</h2>

	<a href={varz} class='version'>v{version} (natrix {natrix})</a>

	</div>
	<br/>
{links}    <a href=https://docs.nats.io/running-a-nats-service/nats_admin/monitoring class="help">Help</a>
  </body>
</html>"#,
        varz = link(VARZ_PATH),
        version = VERSION,
        natrix = env!("CARGO_PKG_VERSION"),
        links = links,
    );
    let mut r = html.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

/// `/routez` with no routes (clustering is not implemented yet).
#[derive(Debug, Serialize)]
pub(crate) struct Routez {
    server_id: String,
    server_name: String,
    now: String,
    num_routes: usize,
    routes: Vec<serde_json::Value>,
}

/// `/leafz` with no leaf nodes.
#[derive(Debug, Serialize)]
struct Leafz {
    server_id: String,
    now: String,
    leafnodes: usize,
    leafs: Vec<serde_json::Value>,
}

/// `/gatewayz` with no gateways.
#[derive(Debug, Serialize)]
struct Gatewayz {
    server_id: String,
    now: String,
    outbound_gateways: BTreeMap<String, serde_json::Value>,
    inbound_gateways: BTreeMap<String, serde_json::Value>,
}

/// `/jsz` while JetStream is disabled, shaped as nats-server's.
#[derive(Debug, Serialize)]
struct Jsz {
    memory: u64,
    storage: u64,
    reserved_memory: u64,
    reserved_storage: u64,
    accounts: u64,
    ha_assets: u64,
    api: JszApi,
    server_id: String,
    now: String,
    disabled: bool,
    config: JszConfig,
    streams: u64,
    consumers: u64,
    messages: u64,
    bytes: u64,
    total: u64,
}

#[derive(Debug, Serialize)]
struct JszApi {
    level: u64,
    total: u64,
    errors: u64,
}

#[derive(Debug, Serialize)]
struct JszConfig {
    max_memory: i64,
    max_storage: i64,
}

impl Jsz {
    fn disabled(s: &Server) -> Jsz {
        Jsz {
            memory: 0,
            storage: 0,
            reserved_memory: 0,
            reserved_storage: 0,
            accounts: 0,
            ha_assets: 0,
            api: JszApi {
                level: 0,
                total: 0,
                errors: 0,
            },
            server_id: s.server_id.clone(),
            now: now(),
            disabled: true,
            config: JszConfig {
                max_memory: 0,
                max_storage: 0,
            },
            streams: 0,
            consumers: 0,
            messages: 0,
            bytes: 0,
            total: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_paths() {
        assert_eq!(normalize_base_path(""), "/");
        assert_eq!(normalize_base_path("nats/"), "/nats");
        assert_eq!(normalize_base_path("/a//b/"), "/a/b");
    }
}

//! OpenTelemetry traces without the OpenTelemetry SDK: a `tracing_subscriber` layer records
//! finished spans into a bounded queue and a background task exports them in batches as
//! OTLP/HTTP JSON (`POST <endpoint>/v1/traces`) through the hyper client kube already uses.
//!
//! Configured like every OpenTelemetry SDK: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (the full
//! URL) or `OTEL_EXPORTER_OTLP_ENDPOINT` (a base URL, `/v1/traces` appended), overridden by
//! `--otlp-endpoint`; `OTEL_SERVICE_NAME` (default `natrix-controller`),
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_[TRACES_]HEADERS` (never logged) and
//! `OTEL_SDK_DISABLED`. Without an endpoint there is no layer and no export task.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::sync::Notify;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::layer::Context as LayerContext;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use crate::metrics::Metrics;

/// `service.name` when `OTEL_SERVICE_NAME` is unset.
pub const DEFAULT_SERVICE_NAME: &str = "natrix-controller";
/// Instrumentation scope of every exported span.
const SCOPE: &str = "natrix-controller";
/// Longest attribute value kept (longer values are cut).
const MAX_VALUE_CHARS: usize = 4096;
/// Most attributes kept per span.
const MAX_ATTRIBUTES: usize = 64;

/// Where and how spans are exported.
#[derive(Clone, PartialEq, Eq)]
pub struct OtlpConfig {
    /// The full traces URL (`.../v1/traces`).
    pub endpoint: String,
    /// `service.name` of the resource.
    pub service_name: String,
    /// Further resource attributes (`OTEL_RESOURCE_ATTRIBUTES`).
    pub resource: Vec<(String, String)>,
    /// Extra request headers (e.g. an API key); never logged.
    pub headers: Vec<(String, String)>,
    /// Spans kept waiting for export at most; more are dropped and counted.
    pub queue_capacity: usize,
    /// Spans per export request at most; a full batch is exported right away.
    pub batch_size: usize,
    /// How often waiting spans are exported.
    pub interval: Duration,
    /// Timeout of one export request.
    pub timeout: Duration,
}

impl std::fmt::Debug for OtlpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpConfig")
            .field("endpoint", &redact(&self.endpoint))
            .field("service_name", &self.service_name)
            .field("resource", &self.resource)
            .field("headers", &format!("{} header(s)", self.headers.len()))
            .field("queue_capacity", &self.queue_capacity)
            .field("batch_size", &self.batch_size)
            .field("interval", &self.interval)
            .finish()
    }
}

impl OtlpConfig {
    /// The configuration from `--otlp-endpoint` (a base URL, like `OTEL_EXPORTER_OTLP_ENDPOINT`)
    /// and the `OTEL_*` variables read through `env`; `None` when no endpoint is configured or
    /// `OTEL_SDK_DISABLED=true`.
    pub fn from_env(
        flag: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<OtlpConfig>, String> {
        let var = |k: &str| {
            env(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let flag = flag.map(str::trim).filter(|f| !f.is_empty());
        let (source, endpoint) = match (
            flag,
            var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            var("OTEL_EXPORTER_OTLP_ENDPOINT"),
        ) {
            (Some(f), _, _) => ("--otlp-endpoint", traces_url(f)),
            (None, Some(t), _) => ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", t),
            (None, None, Some(b)) => ("OTEL_EXPORTER_OTLP_ENDPOINT", traces_url(&b)),
            (None, None, None) => return Ok(None),
        };
        let uri: hyper::Uri = endpoint
            .parse()
            .map_err(|e| format!("{source} {:?}: {e}", redact(&endpoint)))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(format!(
                "{source} {:?}: expected an http:// or https:// URL",
                redact(&endpoint)
            ));
        }
        let headers = match var("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
            .or_else(|| var("OTEL_EXPORTER_OTLP_HEADERS"))
        {
            // The values may be keys: the error names the position only.
            Some(h) => parse_pairs(&h)
                .map_err(|i| format!("OTEL_EXPORTER_OTLP_HEADERS: entry {i} is not key=value"))?,
            None => Vec::new(),
        };
        for (k, v) in &headers {
            let bad_name = hyper::header::HeaderName::from_bytes(k.as_bytes()).is_err();
            if bad_name || hyper::header::HeaderValue::from_str(v).is_err() {
                return Err(format!(
                    "OTEL_EXPORTER_OTLP_HEADERS: header {k:?} is not a valid HTTP header"
                ));
            }
        }
        let resource = match var("OTEL_RESOURCE_ATTRIBUTES") {
            Some(r) => parse_pairs(&r)
                .map_err(|i| format!("OTEL_RESOURCE_ATTRIBUTES: entry {i} is not key=value"))?,
            None => Vec::new(),
        };
        let service_name = var("OTEL_SERVICE_NAME")
            .or_else(|| {
                resource
                    .iter()
                    .find(|(k, _)| k == "service.name")
                    .map(|(_, v)| v.clone())
            })
            .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_string());
        Ok(Some(OtlpConfig {
            endpoint,
            service_name,
            resource: resource
                .into_iter()
                .filter(|(k, _)| k != "service.name")
                .collect(),
            headers,
            queue_capacity: 2048,
            batch_size: 512,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
        }))
    }
}

/// `<base>/v1/traces` for a base endpoint URL.
fn traces_url(base: &str) -> String {
    format!("{}/v1/traces", base.trim_end_matches('/'))
}

/// A URL without its user info (`http://user:pass@host` → `http://host`) and query.
pub fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host = authority.rsplit('@').next().unwrap_or_default();
    if scheme.is_empty() {
        format!("{host}{path}")
    } else {
        format!("{scheme}://{host}{path}")
    }
}

/// `k1=v1,k2=v2` with percent-encoded values (the W3C Baggage form of the OTEL_* lists);
/// `Err(position)` of the first malformed entry.
fn parse_pairs(s: &str) -> Result<Vec<(String, String)>, usize> {
    s.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .enumerate()
        .map(|(i, e)| match e.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                Ok((k.trim().to_string(), percent_decode(v.trim())))
            }
            _ => Err(i + 1),
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An attribute value.
#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    /// `stringValue`.
    Str(String),
    /// `intValue`.
    Int(i64),
    /// `boolValue`.
    Bool(bool),
    /// `doubleValue`.
    Double(f64),
}

impl AttrValue {
    fn to_json(&self) -> Value {
        match self {
            AttrValue::Str(s) => json!({ "stringValue": s }),
            // int64 is a decimal string in the protobuf JSON mapping.
            AttrValue::Int(i) => json!({ "intValue": i.to_string() }),
            AttrValue::Bool(b) => json!({ "boolValue": b }),
            AttrValue::Double(d) if d.is_finite() => json!({ "doubleValue": d }),
            AttrValue::Double(d) => json!({ "stringValue": d.to_string() }),
        }
    }
}

/// One span, as recorded and exported.
#[derive(Clone, Debug, PartialEq)]
pub struct SpanRecord {
    /// W3C trace id (16 random bytes, never all zero).
    pub trace_id: [u8; 16],
    /// Span id (8 random bytes, never all zero).
    pub span_id: [u8; 8],
    /// The parent span's id, if it has one.
    pub parent_span_id: Option<[u8; 8]>,
    /// Span name (the tracing name, or its `otel.name` field).
    pub name: String,
    /// OTLP span kind (1 internal, 2 server, 3 client, 4 producer, 5 consumer).
    pub kind: u8,
    /// Start, Unix nanoseconds.
    pub start_unix_nanos: u64,
    /// End, Unix nanoseconds.
    pub end_unix_nanos: u64,
    /// Its fields.
    pub attributes: Vec<(String, AttrValue)>,
    /// `Some(message)` when the span recorded an error (`error` or `otel.status_code=ERROR`).
    pub error: Option<String>,
}

impl SpanRecord {
    fn to_json(&self) -> Value {
        let mut span = json!({
            "traceId": hex(&self.trace_id),
            "spanId": hex(&self.span_id),
            "name": self.name,
            "kind": self.kind,
            "startTimeUnixNano": self.start_unix_nanos.to_string(),
            "endTimeUnixNano": self.end_unix_nanos.to_string(),
            "attributes": attributes_json(&self.attributes),
            "status": match &self.error {
                Some(m) => json!({ "code": 2, "message": m }),
                None => json!({ "code": 0 }),
            },
        });
        if let Some(p) = &self.parent_span_id {
            span["parentSpanId"] = json!(hex(p));
        }
        span
    }

    fn set(&mut self, key: &str, value: AttrValue) {
        let text = || match &value {
            AttrValue::Str(s) => s.clone(),
            AttrValue::Int(i) => i.to_string(),
            AttrValue::Bool(b) => b.to_string(),
            AttrValue::Double(d) => d.to_string(),
        };
        match key {
            "otel.name" => self.name = text(),
            "otel.kind" => {
                self.kind = match text().to_ascii_lowercase().as_str() {
                    "server" => 2,
                    "client" => 3,
                    "producer" => 4,
                    "consumer" => 5,
                    _ => 1,
                }
            }
            "otel.status_code" => {
                if text().eq_ignore_ascii_case("error") {
                    self.error.get_or_insert_with(String::new);
                } else {
                    self.error = None;
                }
            }
            "otel.status_message" => {
                if let Some(e) = &mut self.error {
                    *e = text();
                }
            }
            _ => {
                if key == "error" {
                    self.error = Some(text());
                }
                let value = match value {
                    AttrValue::Str(s) if s.chars().count() > MAX_VALUE_CHARS => {
                        AttrValue::Str(s.chars().take(MAX_VALUE_CHARS).collect())
                    }
                    v => v,
                };
                let full = self.attributes.len() >= MAX_ATTRIBUTES;
                match self.attributes.iter_mut().find(|(k, _)| k == key) {
                    Some(a) => a.1 = value,
                    None if !full => self.attributes.push((key.to_string(), value)),
                    None => {}
                }
            }
        }
    }
}

fn attributes_json(attrs: &[(String, AttrValue)]) -> Value {
    Value::Array(
        attrs
            .iter()
            .map(|(k, v)| json!({ "key": k, "value": v.to_json() }))
            .collect(),
    )
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn random_nonzero<const N: usize>() -> [u8; N] {
    loop {
        let mut b = [0u8; N];
        b.iter_mut().for_each(|x| *x = fastrand::u8(..));
        if b.iter().any(|x| *x != 0) {
            return b;
        }
    }
}

struct Fields<'a>(&'a mut SpanRecord);

impl Visit for Fields<'_> {
    fn record_str(&mut self, f: &Field, v: &str) {
        self.0.set(f.name(), AttrValue::Str(v.to_string()));
    }
    fn record_i64(&mut self, f: &Field, v: i64) {
        self.0.set(f.name(), AttrValue::Int(v));
    }
    fn record_u64(&mut self, f: &Field, v: u64) {
        let v = i64::try_from(v).map_or_else(|_| AttrValue::Str(v.to_string()), AttrValue::Int);
        self.0.set(f.name(), v);
    }
    fn record_bool(&mut self, f: &Field, v: bool) {
        self.0.set(f.name(), AttrValue::Bool(v));
    }
    fn record_f64(&mut self, f: &Field, v: f64) {
        self.0.set(f.name(), AttrValue::Double(v));
    }
    fn record_error(&mut self, f: &Field, v: &(dyn std::error::Error + 'static)) {
        self.0.set(f.name(), AttrValue::Str(v.to_string()));
    }
    fn record_debug(&mut self, f: &Field, v: &dyn std::fmt::Debug) {
        self.0.set(f.name(), AttrValue::Str(format!("{v:?}")));
    }
}

/// Finished spans waiting for export, shared by the layer and the exporter.
struct Queue {
    spans: Mutex<VecDeque<SpanRecord>>,
    capacity: usize,
    batch: usize,
    wake: Notify,
    metrics: Arc<Metrics>,
}

impl Queue {
    fn push(&self, span: SpanRecord) {
        let len = {
            let mut q = self.spans.lock().unwrap_or_else(|e| e.into_inner());
            if q.len() >= self.capacity {
                drop(q);
                self.metrics.otlp_dropped(1, "queue_full");
                return;
            }
            q.push_back(span);
            q.len()
        };
        if len >= self.batch {
            self.wake.notify_one();
        }
    }

    fn take(&self) -> Vec<SpanRecord> {
        let mut q = self.spans.lock().unwrap_or_else(|e| e.into_inner());
        let n = q.len().min(self.batch);
        q.drain(..n).collect()
    }

    fn len(&self) -> usize {
        self.spans.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// The `tracing_subscriber` layer that records spans for export.
pub struct OtlpLayer {
    queue: Arc<Queue>,
}

impl<S> Layer<S> for OtlpLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: LayerContext<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let parent = span.parent().and_then(|p| {
            p.extensions()
                .get::<SpanRecord>()
                .map(|r| (r.trace_id, r.span_id))
        });
        let mut rec = SpanRecord {
            trace_id: parent.map_or_else(random_nonzero, |p| p.0),
            span_id: random_nonzero(),
            parent_span_id: parent.map(|p| p.1),
            name: attrs.metadata().name().to_string(),
            kind: 1,
            start_unix_nanos: unix_nanos(),
            end_unix_nanos: 0,
            attributes: Vec::new(),
            error: None,
        };
        attrs.record(&mut Fields(&mut rec));
        span.extensions_mut().insert(rec);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: LayerContext<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(rec) = span.extensions_mut().get_mut::<SpanRecord>() {
                values.record(&mut Fields(rec));
            }
        }
    }

    fn on_close(&self, id: Id, ctx: LayerContext<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(mut rec) = span.extensions_mut().remove::<SpanRecord>() else {
            return;
        };
        rec.end_unix_nanos = unix_nanos().max(rec.start_unix_nanos);
        self.queue.push(rec);
    }
}

/// Exports queued spans until shut down; see [`Exporter::spawn`].
pub struct Exporter {
    queue: Arc<Queue>,
    config: OtlpConfig,
}

/// The layer and its exporter for `config`: install the layer, then spawn the exporter on the
/// runtime.
pub fn pipeline(config: OtlpConfig, metrics: Arc<Metrics>) -> (OtlpLayer, Exporter) {
    let queue = Arc::new(Queue {
        spans: Mutex::new(VecDeque::new()),
        capacity: config.queue_capacity.max(1),
        batch: config.batch_size.max(1),
        wake: Notify::new(),
        metrics,
    });
    (
        OtlpLayer {
            queue: queue.clone(),
        },
        Exporter { queue, config },
    )
}

/// The running export task.
pub struct ExporterHandle {
    stop: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl ExporterHandle {
    /// Export what is still queued (within `timeout`) and stop.
    pub async fn shutdown(self, timeout: Duration) {
        self.stop.notify_one();
        if tokio::time::timeout(timeout, self.task).await.is_err() {
            tracing::debug!("OTLP export: spans still queued at shutdown were dropped");
        }
    }
}

/// The ExportTraceServiceRequest JSON of `spans`.
pub fn request_json(config: &OtlpConfig, spans: &[SpanRecord]) -> Value {
    let mut resource = vec![(
        "service.name".to_string(),
        AttrValue::Str(config.service_name.clone()),
    )];
    resource.extend(
        config
            .resource
            .iter()
            .map(|(k, v)| (k.clone(), AttrValue::Str(v.clone()))),
    );
    json!({
        "resourceSpans": [{
            "resource": { "attributes": attributes_json(&resource) },
            "scopeSpans": [{
                "scope": { "name": SCOPE, "version": env!("CARGO_PKG_VERSION") },
                "spans": spans.iter().map(SpanRecord::to_json).collect::<Vec<_>>(),
            }],
        }]
    })
}

type HttpClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Full<bytes::Bytes>,
>;

impl Exporter {
    /// Start exporting on the current Tokio runtime: every `interval`, or as soon as a batch
    /// is full. Never blocks the layer: spans beyond the queue's capacity are dropped.
    pub fn spawn(self) -> ExporterHandle {
        let stop = Arc::new(Notify::new());
        let task = tokio::spawn(self.run(stop.clone()));
        ExporterHandle { stop, task }
    }

    async fn run(self, stop: Arc<Notify>) {
        let client = match http_client() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("OTLP export disabled: {e}");
                return;
            }
        };
        tracing::info!(
            "exporting traces as OTLP/HTTP JSON to {} (service.name {})",
            redact(&self.config.endpoint),
            self.config.service_name
        );
        let mut failing = false;
        loop {
            let stopping = tokio::select! {
                _ = stop.notified() => true,
                _ = self.queue.wake.notified() => false,
                _ = tokio::time::sleep(self.config.interval) => false,
            };
            loop {
                let batch = self.queue.take();
                if batch.is_empty() {
                    break;
                }
                let n = batch.len() as u64;
                match self.export(&client, &batch).await {
                    Ok(()) => {
                        self.queue.metrics.otlp_exported(n);
                        if failing {
                            tracing::info!("OTLP export works again");
                            failing = false;
                        }
                    }
                    Err(e) => {
                        self.queue.metrics.otlp_dropped(n, "export_failed");
                        if failing {
                            tracing::debug!("OTLP export of {n} spans failed: {e}");
                        } else {
                            tracing::warn!(
                                "OTLP export of {n} spans failed (dropped; further failures \
                                 are logged at debug level): {e}"
                            );
                            failing = true;
                        }
                    }
                }
                if self.queue.len() < self.queue.batch && !stopping {
                    break;
                }
            }
            if stopping {
                return;
            }
        }
    }

    async fn export(&self, client: &HttpClient, spans: &[SpanRecord]) -> Result<(), String> {
        let body = serde_json::to_vec(&request_json(&self.config, spans))
            .map_err(|e| format!("encoding: {e}"))?;
        let mut req = hyper::Request::post(&self.config.endpoint)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(
                hyper::header::USER_AGENT,
                concat!("natrix-controller/", env!("CARGO_PKG_VERSION")),
            );
        for (k, v) in &self.config.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = req
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            // The builder error could quote a header value: keep it out of the message.
            .map_err(|_| "building the request failed (check the endpoint and headers)")?;
        let url = redact(&self.config.endpoint);
        let res = tokio::time::timeout(self.config.timeout, async {
            let res = client
                .request(req)
                .await
                .map_err(|e| format!("POST {url}: {}", error_chain(&e)))?;
            let status = res.status();
            let body = http_body_util::BodyExt::collect(res.into_body())
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Ok::<_, String>((status, body))
        })
        .await
        .map_err(|_| format!("POST {url}: no answer within {:?}", self.config.timeout))??;
        let (status, body) = res;
        if status.is_success() {
            return Ok(());
        }
        let body: String = String::from_utf8_lossy(&body)
            .trim()
            .chars()
            .take(300)
            .collect();
        Err(format!("POST {url}: HTTP {status} {body}"))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn http_client() -> Result<HttpClient, String> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(rustls::crypto::ring::default_provider())
        .map_err(|e| format!("loading the system's CA certificates: {e}"))?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https),
    )
}

/// The span of one reconcile, carrying the object's kind, namespace and name; the
/// reconcile's error is recorded on it by [`record_result`].
pub fn reconcile_span(kind: &str, namespace: &str, name: &str) -> tracing::Span {
    tracing::info_span!(
        "reconcile",
        otel.name = %format!("reconcile {kind}"),
        k8s.object.kind = kind,
        k8s.namespace.name = %namespace,
        k8s.object.name = %name,
        error = tracing::field::Empty,
    )
}

/// Mark `span` failed with `res`'s error, if it is one.
pub fn record_result<T, E: std::fmt::Display>(span: &tracing::Span, res: &Result<T, E>) {
    if let Err(e) = res {
        span.record("error", tracing::field::display(e));
    }
}

/// Run `fut` (a reconcile of `kind` `o`) inside its [`reconcile_span`].
pub async fn traced<K, T, E, F>(kind: &str, o: &K, fut: F) -> Result<T, E>
where
    K: kube::ResourceExt,
    E: std::fmt::Display,
    F: std::future::Future<Output = Result<T, E>>,
{
    use tracing::Instrument;
    let span = reconcile_span(kind, &o.namespace().unwrap_or_default(), &o.name_any());
    let res = fut.instrument(span.clone()).await;
    record_result(&span, &res);
    res
}

#[cfg(test)]
mod tests;

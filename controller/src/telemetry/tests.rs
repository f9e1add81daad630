use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::http::HeaderMap;
use k8s_openapi::api::core::v1::ConfigMap;
use tokio::sync::mpsc;
use tracing_subscriber::layer::SubscriberExt;

use super::*;

/// A hang guard for the in-test collector, not a timing assertion.
const HANG: Duration = Duration::from_secs(60);

fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let m: BTreeMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| m.get(k).cloned()
}

#[test]
fn no_endpoint_no_export() {
    assert_eq!(OtlpConfig::from_env(None, env(&[])).unwrap(), None);
    assert_eq!(
        OtlpConfig::from_env(Some("  "), env(&[("OTEL_SERVICE_NAME", "x")])).unwrap(),
        None
    );
    // Disabled wins over every endpoint.
    let off = env(&[
        ("OTEL_SDK_DISABLED", "true"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
    ]);
    assert_eq!(
        OtlpConfig::from_env(Some("http://d:4318"), off).unwrap(),
        None
    );
}

#[test]
fn endpoints_and_resource_from_the_environment() {
    let c = OtlpConfig::from_env(
        None,
        env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/")]),
    )
    .unwrap()
    .unwrap();
    assert_eq!(c.endpoint, "http://c:4318/v1/traces");
    assert_eq!(c.service_name, DEFAULT_SERVICE_NAME);
    assert!(c.headers.is_empty() && c.resource.is_empty());
    // The traces endpoint is taken as it is, and beats the base endpoint.
    let both = env(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "https://t.example/otlp/traces",
        ),
        ("OTEL_SERVICE_NAME", "ops"),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment=prod, team=a%20b,service.name=r",
        ),
        ("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=s3cr3t"),
    ]);
    let c = OtlpConfig::from_env(None, &both).unwrap().unwrap();
    assert_eq!(c.endpoint, "https://t.example/otlp/traces");
    assert_eq!(c.service_name, "ops");
    assert_eq!(
        c.resource,
        vec![
            ("deployment.environment".to_string(), "prod".to_string()),
            ("team".to_string(), "a b".to_string())
        ]
    );
    assert_eq!(c.headers, vec![("x-api-key".into(), "s3cr3t".into())]);
    // Header values are never printed.
    assert!(!format!("{c:?}").contains("s3cr3t"), "{c:?}");
    // The flag beats both (a base URL like OTEL_EXPORTER_OTLP_ENDPOINT).
    let c = OtlpConfig::from_env(Some("http://flag:4318"), &both)
        .unwrap()
        .unwrap();
    assert_eq!(c.endpoint, "http://flag:4318/v1/traces");
    // service.name from the resource attributes when OTEL_SERVICE_NAME is unset.
    let c = OtlpConfig::from_env(
        Some("http://c:4318"),
        env(&[("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-res")]),
    )
    .unwrap()
    .unwrap();
    assert_eq!(c.service_name, "from-res");
}

#[test]
fn bad_settings_are_errors_without_secrets() {
    let e = OtlpConfig::from_env(Some("ftp://user:pw@c:21"), env(&[])).unwrap_err();
    assert!(
        e.contains("--otlp-endpoint") && e.contains("http://"),
        "{e}"
    );
    assert!(!e.contains("pw"), "{e}");
    let e = OtlpConfig::from_env(
        None,
        env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "authorization=Bearer tok,junk",
            ),
        ]),
    )
    .unwrap_err();
    assert!(e.contains("entry 2") && !e.contains("tok"), "{e}");
    let e = OtlpConfig::from_env(
        None,
        env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-key=a%0Ab"),
        ]),
    )
    .unwrap_err();
    assert!(e.contains("x-key") && !e.contains("a\nb"), "{e}");
    assert_eq!(
        redact("https://user:pw@host:4318/v1/traces?key=1"),
        "https://host:4318/v1/traces"
    );
    assert_eq!(redact("host:1"), "host:1");
}

fn config(endpoint: String) -> OtlpConfig {
    OtlpConfig {
        endpoint,
        service_name: "natrix-test".into(),
        resource: vec![("k8s.cluster.name".into(), "test".into())],
        headers: vec![("x-api-key".into(), "k1".into())],
        queue_capacity: 100,
        batch_size: 100,
        // Only a full batch or the shutdown exports in these tests.
        interval: Duration::from_secs(3600),
        timeout: Duration::from_secs(30),
    }
}

/// One request the collector received.
struct Received {
    content_type: String,
    api_key: String,
    body: Value,
}

/// An OTLP/HTTP collector on 127.0.0.1 answering `status`; its base URL and the requests.
async fn collector(status: u16) -> (String, mpsc::UnboundedReceiver<Received>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let tx = tx.clone();
            async move {
                let h = |k: &str| {
                    headers
                        .get(k)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string()
                };
                let _ = tx.send(Received {
                    content_type: h("content-type"),
                    api_key: h("x-api-key"),
                    body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                });
                (
                    axum::http::StatusCode::from_u16(status).unwrap(),
                    "{\"partialSuccess\":{}}",
                )
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (format!("http://{addr}"), rx)
}

fn object(ns: &str, name: &str) -> ConfigMap {
    let mut o = ConfigMap::default();
    o.metadata.namespace = Some(ns.into());
    o.metadata.name = Some(name.into());
    o
}

/// Run two reconciles (one failing, with a child span) under a subscriber with `layer`.
async fn reconciles(layer: OtlpLayer) {
    let subscriber = tracing_subscriber::registry().with(layer);
    let _guard = tracing::subscriber::set_default(subscriber);
    let ok: Result<(), String> = traced("NatsCluster", &object("prod", "nats"), async {
        let child = tracing::info_span!("apply", objects = 5u64, dry_run = false, ratio = 0.5);
        child.in_scope(|| tracing::info!("applying"));
        Ok(())
    })
    .await;
    assert!(ok.is_ok());
    let failed: Result<(), String> = traced("Stream", &object("prod", "orders"), async {
        Err("JetStream API: insufficient resources".to_string())
    })
    .await;
    assert!(failed.is_err());
}

fn attr<'a>(attrs: &'a Value, key: &str) -> Option<&'a Value> {
    attrs
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
}

fn is_hex(v: &Value, len: usize) -> bool {
    v.as_str().is_some_and(|s| {
        s.len() == len
            && s.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            && s.chars().any(|c| c != '0')
    })
}

fn nanos(v: &Value) -> u64 {
    v.as_str().and_then(|s| s.parse().ok()).unwrap()
}

#[tokio::test]
async fn reconcile_spans_reach_the_collector_as_otlp_json() {
    let (base, mut rx) = collector(200).await;
    let metrics = Arc::new(Metrics::default());
    let (layer, exporter) = pipeline(config(format!("{base}/v1/traces")), metrics.clone());
    let handle = exporter.spawn();
    reconciles(layer).await;
    // The shutdown exports what is queued.
    handle.shutdown(HANG).await;
    let got = tokio::time::timeout(HANG, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.content_type, "application/json");
    assert_eq!(got.api_key, "k1");
    let rs = &got.body["resourceSpans"][0];
    let res = &rs["resource"]["attributes"];
    assert_eq!(
        attr(res, "service.name").unwrap()["stringValue"],
        "natrix-test"
    );
    assert_eq!(
        attr(res, "k8s.cluster.name").unwrap()["stringValue"],
        "test"
    );
    assert_eq!(rs["scopeSpans"][0]["scope"]["name"], "natrix-controller");
    let spans = rs["scopeSpans"][0]["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 3, "{spans:#?}");
    for s in spans {
        assert!(is_hex(&s["traceId"], 32), "{s}");
        assert!(is_hex(&s["spanId"], 16), "{s}");
        assert!(
            nanos(&s["endTimeUnixNano"]) >= nanos(&s["startTimeUnixNano"]),
            "{s}"
        );
        assert!(
            nanos(&s["startTimeUnixNano"]) > 1_600_000_000_000_000_000,
            "{s}"
        );
    }
    let by_name = |n: &str| spans.iter().find(|s| s["name"] == n).unwrap();
    let nc = by_name("reconcile NatsCluster");
    let a = &nc["attributes"];
    assert_eq!(attr(a, "k8s.object.name").unwrap()["stringValue"], "nats");
    assert_eq!(
        attr(a, "k8s.namespace.name").unwrap()["stringValue"],
        "prod"
    );
    assert_eq!(
        attr(a, "k8s.object.kind").unwrap()["stringValue"],
        "NatsCluster"
    );
    assert_eq!(nc["status"]["code"], 0);
    assert_eq!(nc["kind"], 1);
    assert!(nc.get("parentSpanId").is_none());
    // The child span is in the same trace, under the reconcile span, with typed attributes.
    let child = by_name("apply");
    assert_eq!(child["traceId"], nc["traceId"]);
    assert_eq!(child["parentSpanId"], nc["spanId"]);
    assert_eq!(
        attr(&child["attributes"], "objects").unwrap()["intValue"],
        "5"
    );
    assert_eq!(
        attr(&child["attributes"], "dry_run").unwrap()["boolValue"],
        false
    );
    assert_eq!(
        attr(&child["attributes"], "ratio").unwrap()["doubleValue"],
        0.5
    );
    // The failed reconcile: its own trace, status error with the message.
    let st = by_name("reconcile Stream");
    assert_ne!(st["traceId"], nc["traceId"]);
    assert_eq!(
        attr(&st["attributes"], "k8s.object.name").unwrap()["stringValue"],
        "orders"
    );
    assert_eq!(st["status"]["code"], 2);
    assert_eq!(
        st["status"]["message"],
        "JetStream API: insufficient resources"
    );
    assert_eq!(metrics.otlp_counts(), (3, 0, 0));
    assert!(rx.try_recv().is_err(), "one request for three spans");
}

#[tokio::test]
async fn a_full_batch_is_exported_without_waiting_for_the_interval() {
    let (base, mut rx) = collector(200).await;
    let metrics = Arc::new(Metrics::default());
    let mut c = config(format!("{base}/v1/traces"));
    c.batch_size = 2;
    let (layer, exporter) = pipeline(c, metrics.clone());
    let handle = exporter.spawn();
    {
        let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
        tracing::info_span!("one").in_scope(|| {});
        tracing::info_span!("two").in_scope(|| {});
    }
    // The interval is an hour: only the full batch can have sent this.
    let got = tokio::time::timeout(HANG, rx.recv())
        .await
        .unwrap()
        .unwrap();
    let spans = got.body["resourceSpans"][0]["scopeSpans"][0]["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect::<Vec<_>>();
    assert_eq!(spans, ["one", "two"]);
    handle.shutdown(HANG).await;
    assert_eq!(metrics.otlp_counts(), (2, 0, 0));
}

#[tokio::test]
async fn a_full_queue_drops_and_counts() {
    let metrics = Arc::new(Metrics::default());
    let mut c = config("http://127.0.0.1:9/v1/traces".into());
    c.queue_capacity = 2;
    // No exporter runs: nothing drains the queue.
    let (layer, _exporter) = pipeline(c, metrics.clone());
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
    for i in 0..5 {
        tracing::info_span!("s", i).in_scope(|| {});
    }
    assert_eq!(metrics.otlp_counts(), (0, 3, 0));
    assert!(metrics
        .render()
        .contains("natrix_controller_otlp_spans_dropped_total{reason=\"queue_full\"} 3\n"));
}

#[tokio::test]
async fn failed_exports_are_counted_and_never_block() {
    // The collector refuses the spans.
    let (base, mut rx) = collector(500).await;
    let metrics = Arc::new(Metrics::default());
    let (layer, exporter) = pipeline(config(format!("{base}/v1/traces")), metrics.clone());
    let handle = exporter.spawn();
    reconciles(layer).await;
    handle.shutdown(HANG).await;
    assert!(rx.recv().await.is_some());
    assert_eq!(metrics.otlp_counts(), (0, 0, 3));
    // Nothing listens at all.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let metrics = Arc::new(Metrics::default());
    let (layer, exporter) = pipeline(
        config(format!("http://127.0.0.1:{port}/v1/traces")),
        metrics.clone(),
    );
    let handle = exporter.spawn();
    reconciles(layer).await;
    handle.shutdown(HANG).await;
    assert_eq!(metrics.otlp_counts(), (0, 0, 3));
}

#[test]
fn span_fields_map_to_otel_conventions() {
    let mut r = SpanRecord {
        trace_id: random_nonzero(),
        span_id: random_nonzero(),
        parent_span_id: None,
        name: "HTTP".into(),
        kind: 1,
        start_unix_nanos: 1,
        end_unix_nanos: 2,
        attributes: vec![],
        error: None,
    };
    r.set("otel.name", AttrValue::Str("list pods".into()));
    r.set("otel.kind", AttrValue::Str("client".into()));
    r.set("otel.status_code", AttrValue::Str("ERROR".into()));
    r.set("http.status_code", AttrValue::Int(500));
    r.set("big", AttrValue::Str("x".repeat(MAX_VALUE_CHARS + 10)));
    let j = r.to_json();
    assert_eq!(j["name"], "list pods");
    assert_eq!(j["kind"], 3);
    assert_eq!(j["status"]["code"], 2);
    assert_eq!(
        attr(&j["attributes"], "http.status_code").unwrap()["intValue"],
        "500"
    );
    let big = attr(&j["attributes"], "big").unwrap()["stringValue"]
        .as_str()
        .unwrap();
    assert_eq!(big.len(), MAX_VALUE_CHARS);
    assert!(attr(&j["attributes"], "otel.name").is_none());
    for i in 0..(MAX_ATTRIBUTES + 5) {
        r.set(&format!("k{i}"), AttrValue::Bool(true));
    }
    assert_eq!(r.attributes.len(), MAX_ATTRIBUTES);
}

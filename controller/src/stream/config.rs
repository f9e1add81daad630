//! Stream spec → `async_nats::jetstream::stream::Config`, and the fields where a server's
//! configuration differs from the spec (drift).

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::stream::{
    Compression as JsCompression, Config, DiscardPolicy, Placement as JsPlacement, Republish,
    RetentionPolicy, Source, StorageType, SubjectTransform,
};

use crate::crd::{Compression, Discard, Retention, Storage, StreamSource, StreamSpec};
use crate::units::parse_duration;

/// Metadata keys the server adds by itself (`_nats.req.level`, ...): never drift.
pub const SERVER_METADATA_PREFIX: &str = "_nats.";

fn duration(field: &str, v: &Option<String>) -> Result<Duration, String> {
    match v {
        None => Ok(Duration::ZERO),
        Some(s) => parse_duration(s)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| format!("spec.{field}: {s:?} is not a duration such as 30s, 2m or 24h")),
    }
}

fn i32_limit(field: &str, v: i64) -> Result<i32, String> {
    i32::try_from(v)
        .map_err(|_| format!("spec.{field}: {v} is out of range (at most {})", i32::MAX))
}

fn source(s: &StreamSource, field: &str) -> Result<Source, String> {
    let mut v = serde_json::json!({ "name": s.name });
    if let Some(seq) = s.opt_start_seq {
        v["opt_start_seq"] = seq.into();
    }
    if let Some(t) = &s.opt_start_time {
        v["opt_start_time"] = t.clone().into();
    }
    if let Some(f) = &s.filter_subject {
        v["filter_subject"] = f.clone().into();
    }
    if let Some(api) = &s.external_api_prefix {
        v["external"] = serde_json::json!({ "api": api });
        if let Some(d) = &s.external_deliver_prefix {
            v["external"]["deliver"] = d.clone().into();
        }
    }
    if !s.subject_transforms.is_empty() {
        v["subject_transforms"] = s
            .subject_transforms
            .iter()
            .map(|t| serde_json::json!({ "src": t.source, "dest": t.dest }))
            .collect();
    }
    serde_json::from_value(v).map_err(|e| format!("spec.{field}: {e}"))
}

/// The JetStream configuration a Stream spec asks for.
pub fn to_config(spec: &StreamSpec) -> Result<Config, String> {
    let sources = spec
        .sources
        .iter()
        .enumerate()
        .map(|(i, s)| source(s, &format!("sources[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Config {
        name: spec.name.clone(),
        description: spec.description.clone().filter(|d| !d.is_empty()),
        subjects: spec.subjects.clone(),
        retention: match spec.retention {
            Retention::Limits => RetentionPolicy::Limits,
            Retention::Interest => RetentionPolicy::Interest,
            Retention::Workqueue => RetentionPolicy::WorkQueue,
        },
        max_consumers: i32_limit("maxConsumers", spec.max_consumers)?,
        max_messages: spec.max_msgs,
        max_messages_per_subject: spec.max_msgs_per_subject,
        max_bytes: spec.max_bytes,
        max_age: duration("maxAge", &spec.max_age)?,
        max_message_size: i32_limit("maxMsgSize", spec.max_msg_size)?,
        storage: match spec.storage {
            Storage::File => StorageType::File,
            Storage::Memory => StorageType::Memory,
        },
        discard: match spec.discard {
            Discard::Old => DiscardPolicy::Old,
            Discard::New => DiscardPolicy::New,
        },
        discard_new_per_subject: spec.discard_per_subject,
        num_replicas: usize::try_from(spec.replicas)
            .map_err(|_| format!("spec.replicas: {} is not a replica count", spec.replicas))?,
        no_ack: spec.no_ack,
        duplicate_window: duration("duplicateWindow", &spec.duplicate_window)?,
        placement: spec.placement.as_ref().map(|p| JsPlacement {
            cluster: p.cluster.clone(),
            tags: p.tags.clone(),
        }),
        mirror: spec
            .mirror
            .as_ref()
            .map(|m| source(m, "mirror"))
            .transpose()?,
        sources: (!sources.is_empty()).then_some(sources),
        subject_transform: spec.subject_transform.as_ref().map(|t| SubjectTransform {
            source: t.source.clone(),
            destination: t.dest.clone(),
        }),
        republish: spec.republish.as_ref().map(|r| Republish {
            source: r.source.clone(),
            destination: r.destination.clone(),
            headers_only: r.headers_only,
        }),
        sealed: spec.sealed,
        deny_delete: spec.deny_delete,
        deny_purge: spec.deny_purge,
        allow_rollup: spec.allow_rollup,
        allow_direct: spec.allow_direct,
        mirror_direct: spec.mirror_direct,
        first_sequence: spec.first_sequence,
        compression: Some(match spec.compression {
            Compression::None => JsCompression::None,
            Compression::S2 => JsCompression::S2,
        }),
        metadata: spec
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        ..Default::default()
    })
}

fn show<T: serde::Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "?".into())
}

fn user_metadata(m: &HashMap<String, String>) -> std::collections::BTreeMap<&str, &str> {
    m.iter()
        .filter(|(k, _)| !k.starts_with(SERVER_METADATA_PREFIX))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// The fields (JetStream API names) where `actual` differs from `desired`, each as
/// `field: server <value>, spec <value>`. Fields only settable at creation
/// (`first_seq`) are not compared, nor `duplicate_window` when the spec leaves it
/// to the server's default, nor the server's own `_nats.*` metadata.
pub fn diff(desired: &Config, actual: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let mut cmp = |field: &str, d: String, a: String| {
        if d != a {
            out.push(format!("{field}: server {a}, spec {d}"));
        }
    };
    let sorted = |v: &[String]| {
        let mut v = v.to_vec();
        v.sort();
        v
    };
    cmp(
        "subjects",
        show(&sorted(&desired.subjects)),
        show(&sorted(&actual.subjects)),
    );
    cmp(
        "description",
        show(&desired.description.as_deref().filter(|d| !d.is_empty())),
        show(&actual.description.as_deref().filter(|d| !d.is_empty())),
    );
    cmp(
        "retention",
        show(&desired.retention),
        show(&actual.retention),
    );
    cmp(
        "max_consumers",
        show(&desired.max_consumers),
        show(&actual.max_consumers),
    );
    cmp(
        "max_msgs",
        show(&desired.max_messages),
        show(&actual.max_messages),
    );
    cmp(
        "max_msgs_per_subject",
        show(&desired.max_messages_per_subject),
        show(&actual.max_messages_per_subject),
    );
    cmp(
        "max_bytes",
        show(&desired.max_bytes),
        show(&actual.max_bytes),
    );
    cmp(
        "max_age",
        format!("{:?}", desired.max_age),
        format!("{:?}", actual.max_age),
    );
    // The server reports an unlimited message size as -1 or 0.
    let msg_size = |v: i32| if v <= 0 { -1 } else { v };
    cmp(
        "max_msg_size",
        show(&msg_size(desired.max_message_size)),
        show(&msg_size(actual.max_message_size)),
    );
    cmp("storage", show(&desired.storage), show(&actual.storage));
    cmp("discard", show(&desired.discard), show(&actual.discard));
    cmp(
        "discard_new_per_subject",
        show(&desired.discard_new_per_subject),
        show(&actual.discard_new_per_subject),
    );
    cmp(
        "num_replicas",
        show(&desired.num_replicas),
        show(&actual.num_replicas.max(1)),
    );
    cmp("no_ack", show(&desired.no_ack), show(&actual.no_ack));
    if !desired.duplicate_window.is_zero() {
        cmp(
            "duplicate_window",
            format!("{:?}", desired.duplicate_window),
            format!("{:?}", actual.duplicate_window),
        );
    }
    let placement = |p: &Option<JsPlacement>| p.clone().filter(|p| *p != JsPlacement::default());
    cmp(
        "placement",
        show(&placement(&desired.placement)),
        show(&placement(&actual.placement)),
    );
    cmp("mirror", show(&desired.mirror), show(&actual.mirror));
    let sources = |s: &Option<Vec<Source>>| s.clone().unwrap_or_default();
    cmp(
        "sources",
        show(&sources(&desired.sources)),
        show(&sources(&actual.sources)),
    );
    cmp(
        "subject_transform",
        show(&desired.subject_transform),
        show(&actual.subject_transform),
    );
    cmp(
        "republish",
        show(&desired.republish),
        show(&actual.republish),
    );
    cmp("sealed", show(&desired.sealed), show(&actual.sealed));
    cmp(
        "deny_delete",
        show(&desired.deny_delete),
        show(&actual.deny_delete),
    );
    cmp(
        "deny_purge",
        show(&desired.deny_purge),
        show(&actual.deny_purge),
    );
    cmp(
        "allow_rollup_hdrs",
        show(&desired.allow_rollup),
        show(&actual.allow_rollup),
    );
    cmp(
        "allow_direct",
        show(&desired.allow_direct),
        show(&actual.allow_direct),
    );
    cmp(
        "mirror_direct",
        show(&desired.mirror_direct),
        show(&actual.mirror_direct),
    );
    let compression = |c: &Option<JsCompression>| c.clone().unwrap_or(JsCompression::None);
    cmp(
        "compression",
        show(&compression(&desired.compression)),
        show(&compression(&actual.compression)),
    );
    cmp(
        "metadata",
        show(&user_metadata(&desired.metadata)),
        show(&user_metadata(&actual.metadata)),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: serde_json::Value) -> StreamSpec {
        let mut base = serde_json::json!({"clusterRef": {"name": "nats"}, "name": "ORDERS"});
        base.as_object_mut()
            .unwrap()
            .extend(v.as_object().unwrap().clone());
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn defaults_are_file_storage_and_unlimited() {
        let c = to_config(&spec(serde_json::json!({"subjects": ["orders.>"]}))).unwrap();
        assert_eq!(c.name, "ORDERS");
        assert_eq!(c.storage, StorageType::File);
        assert_eq!(c.retention, RetentionPolicy::Limits);
        assert_eq!((c.max_messages, c.max_bytes, c.max_consumers), (-1, -1, -1));
        assert_eq!(c.max_age, Duration::ZERO);
        assert_eq!(c.num_replicas, 1);
        assert_eq!(c.subjects, vec!["orders.>"]);
    }

    #[test]
    fn every_field_maps_to_the_jetstream_name() {
        let c = to_config(&spec(serde_json::json!({
            "description": "d", "subjects": ["a", "b"], "retention": "workqueue",
            "maxConsumers": 5, "maxMsgs": 10, "maxMsgsPerSubject": 2, "maxBytes": 1024,
            "maxAge": "1h30m", "maxMsgSize": 512, "storage": "memory", "discard": "new",
            "discardPerSubject": true, "replicas": 3, "noAck": true, "duplicateWindow": "2m",
            "placement": {"cluster": "c1", "tags": ["ssd"]},
            "sources": [{"name": "S1", "optStartSeq": 5, "filterSubject": "x.>",
                         "externalApiPrefix": "$JS.hub.API", "externalDeliverPrefix": "dlv",
                         "optStartTime": "2024-01-02T03:04:05Z",
                         "subjectTransforms": [{"source": "x.>", "dest": "y.>"}]}],
            "subjectTransform": {"source": "a", "dest": "c"},
            "republish": {"source": ">", "destination": "rp.>", "headersOnly": true},
            "denyDelete": true, "denyPurge": true, "allowRollup": true, "allowDirect": true,
            "firstSequence": 100, "compression": "s2", "metadata": {"team": "orders"},
        })))
        .unwrap();
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["retention"], "workqueue");
        assert_eq!(v["max_age"], 5_400_000_000_000u64);
        assert_eq!(v["duplicate_window"], 120_000_000_000u64);
        assert_eq!(v["max_msg_size"], 512);
        assert_eq!(v["storage"], "memory");
        assert_eq!(v["discard"], "new");
        assert_eq!(v["discard_new_per_subject"], true);
        assert_eq!(v["num_replicas"], 3);
        assert_eq!(
            v["placement"],
            serde_json::json!({"cluster": "c1", "tags": ["ssd"]})
        );
        let s = &v["sources"][0];
        assert_eq!(s["opt_start_seq"], 5);
        assert_eq!(s["filter_subject"], "x.>");
        assert_eq!(
            s["external"],
            serde_json::json!({"api": "$JS.hub.API", "deliver": "dlv"})
        );
        assert_eq!(s["opt_start_time"], "2024-01-02T03:04:05Z");
        assert_eq!(s["subject_transforms"][0]["dest"], "y.>");
        assert_eq!(
            v["subject_transform"],
            serde_json::json!({"src": "a", "dest": "c"})
        );
        assert_eq!(v["republish"]["headers_only"], true);
        assert_eq!(v["allow_rollup_hdrs"], true);
        assert_eq!(v["first_seq"], 100);
        assert_eq!(v["compression"], "s2");
        assert_eq!(v["metadata"]["team"], "orders");
    }

    #[test]
    fn bad_values_name_the_field() {
        let e = to_config(&spec(serde_json::json!({"maxAge": "1d"}))).unwrap_err();
        assert!(e.starts_with("spec.maxAge:"), "{e}");
        let e =
            to_config(&spec(serde_json::json!({"maxConsumers": 3_000_000_000i64}))).unwrap_err();
        assert!(e.starts_with("spec.maxConsumers:"), "{e}");
        let e = to_config(&spec(
            serde_json::json!({"sources": [{"name": "A", "optStartTime": "yesterday"}]}),
        ))
        .unwrap_err();
        assert!(e.starts_with("spec.sources[0]:"), "{e}");
    }

    #[test]
    fn diff_ignores_server_defaults_and_reports_changes() {
        let want = to_config(&spec(
            serde_json::json!({"subjects": ["a", "b"], "maxMsgs": 100, "firstSequence": 7}),
        ))
        .unwrap();
        let mut have = want.clone();
        have.subjects = vec!["b".into(), "a".into()];
        have.duplicate_window = Duration::from_secs(120);
        have.first_sequence = None;
        have.compression = None;
        have.metadata.insert("_nats.req.level".into(), "0".into());
        assert_eq!(diff(&want, &have), Vec::<String>::new());
        have.max_messages = 5;
        have.subjects.push("c".into());
        let d = diff(&want, &have);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(
            d.contains(&"max_msgs: server 5, spec 100".to_string()),
            "{d:?}"
        );
        assert!(
            d[0].starts_with("subjects: server [\"a\",\"b\",\"c\"]"),
            "{d:?}"
        );
    }
}

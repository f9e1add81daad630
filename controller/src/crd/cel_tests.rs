//! Every CEL rule (`x-kubernetes-validations`) of the generated CRDs, evaluated client-side
//! with kube's `cel` feature (apiserver-style: schema defaults first, `oldSelf` on updates).
//! The test API server (Kubernetes 1.20) predates CEL, so these tests are the proof that the
//! rules compile, stay within the cost budget, accept what they should and refuse the rest.

use std::collections::BTreeSet;

use kube::core::cel::{analyze_rule, compile_schema, ErrorKind, ScopeContext, Validator};
use kube::CustomResourceExt;
use serde_json::{json, Value};

use super::{Account, NatsCluster, Stream};

/// The openAPIV3Schema of a CRD, as JSON.
fn schema<K: CustomResourceExt>() -> Value {
    let crd = K::crd();
    let s = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("derived CRDs have a schema");
    serde_json::to_value(s).unwrap()
}

/// Every `(rule, message)` in a schema, with the schema node that holds it.
fn rules_in(node: &Value, out: &mut Vec<(String, String, Value)>) {
    if let Some(rules) = node
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
    {
        for r in rules {
            out.push((
                r["rule"].as_str().unwrap().to_string(),
                r["message"].as_str().unwrap_or_default().to_string(),
                node.clone(),
            ));
        }
    }
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        props.values().for_each(|p| rules_in(p, out));
    }
    for key in ["items", "additionalProperties"] {
        if let Some(child) = node.get(key).filter(|c| c.is_object()) {
            rules_in(child, out);
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(list) = node.get(key).and_then(Value::as_array) {
            list.iter().for_each(|c| rules_in(c, out));
        }
    }
}

fn all_rules() -> Vec<(&'static str, String, String, Value)> {
    let mut out = Vec::new();
    for (kind, s) in [
        ("NatsCluster", schema::<NatsCluster>()),
        ("Account", schema::<Account>()),
        ("Stream", schema::<Stream>()),
    ] {
        let mut rules = Vec::new();
        rules_in(&s, &mut rules);
        out.extend(rules.into_iter().map(|(r, m, n)| (kind, r, m, n)));
    }
    out
}

fn schema_of(kind: &str) -> Value {
    match kind {
        "NatsCluster" => schema::<NatsCluster>(),
        "Account" => schema::<Account>(),
        "Stream" => schema::<Stream>(),
        k => panic!("unknown kind {k}"),
    }
}

fn object(kind: &str, spec: &Value) -> Value {
    json!({
        "apiVersion": "natrix.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": "x", "namespace": "ns"},
        "spec": spec,
    })
}

/// Messages of the rules a create (`old` None) or an update of `old` breaks. Any error other
/// than a rule evaluating to false (a compile or evaluation error) fails the test.
fn broken(kind: &str, new: &Value, old: Option<&Value>) -> BTreeSet<String> {
    let new = object(kind, new);
    let old = old.map(|o| object(kind, o));
    match Validator::new().validate(&schema_of(kind), &new, old.as_ref()) {
        Ok(()) => BTreeSet::new(),
        Err(errs) => errs
            .iter()
            .map(|e| {
                assert_eq!(
                    e.kind,
                    ErrorKind::ValidationFailure,
                    "rule {:?} did not evaluate cleanly: {e}",
                    e.rule
                );
                e.message.clone()
            })
            .collect(),
    }
}

/// One create or update and the rules it must break, each named by a part of its message.
struct Case {
    kind: &'static str,
    what: &'static str,
    old: Option<Value>,
    new: Value,
    breaks: &'static [&'static str],
}

fn create(
    kind: &'static str,
    what: &'static str,
    new: Value,
    breaks: &'static [&'static str],
) -> Case {
    Case {
        kind,
        what,
        old: None,
        new,
        breaks,
    }
}

fn update(
    kind: &'static str,
    what: &'static str,
    old: Value,
    new: Value,
    breaks: &'static [&'static str],
) -> Case {
    Case {
        kind,
        what,
        old: Some(old),
        new,
        breaks,
    }
}

const NC: &str = "NatsCluster";
const ACC: &str = "Account";
const STR: &str = "Stream";

const OPERATOR_RESOLVER: &str = "auth.operatorMode and resolver.enabled go together";
const POD_MONITOR: &str = "metrics.podMonitor needs metrics.enabled";
const PORTS: &str = "must be three different ports";
const JS_ENABLED: &str = "jetstream.enabled is immutable";
const JS_STORAGE: &str = "jetstream.fileStorage (size, storageClassName) is immutable";
const RESOLVER_ENABLED: &str = "resolver.enabled is immutable";
const RESOLVER_STORAGE: &str = "resolver.storage (size, storageClassName) is immutable";
const OPERATOR_MODE: &str = "auth.operatorMode is immutable";
const SYSTEM_ACCOUNT: &str = "auth.systemAccount is immutable in operator mode";
const ACC_CLUSTER: &str = "clusterRef is immutable: the account's keys";
const ACC_IMPORTS: &str = "more imports than limits.imports";
const ACC_EXPORTS: &str = "more exports than limits.exports";
const STR_CLUSTER: &str = "clusterRef is immutable: the stream lives in that cluster";
const STR_ACCOUNT: &str = "accountRef is immutable";
const STR_NAME: &str = "name is immutable";
const STR_STORAGE: &str = "storage is immutable";
const MIRROR_SUBJECTS: &str = "a mirror stream cannot have subjects";
const MIRROR_SOURCES: &str = "a mirror stream cannot have sources";

fn cases() -> Vec<Case> {
    let op = json!({"auth": {"operatorMode": true}, "resolver": {"enabled": true}});
    let js = json!({"jetstream": {"enabled": true, "fileStorage": {"size": "10Gi"}}});
    let stream =
        json!({"clusterRef": {"name": "nats"}, "name": "orders", "subjects": ["orders.>"]});
    let in_account = json!({"clusterRef": {"name": "nats"}, "name": "orders",
                            "accountRef": {"name": "team-a"}});
    vec![
        // NatsCluster: creates.
        create(NC, "all defaults", json!({}), &[]),
        create(
            NC,
            "operator mode with the resolver, JetStream and a PodMonitor",
            json!({"auth": {"operatorMode": true}, "resolver": {"enabled": true},
                   "jetstream": {"enabled": true}, "metrics": {"podMonitor": true}}),
            &[],
        ),
        create(
            NC,
            "operator mode without the resolver",
            json!({"auth": {"operatorMode": true}}),
            &[OPERATOR_RESOLVER],
        ),
        create(
            NC,
            "the resolver without operator mode",
            json!({"resolver": {"enabled": true}}),
            &[OPERATOR_RESOLVER],
        ),
        create(
            NC,
            "a PodMonitor without metrics",
            json!({"metrics": {"enabled": false, "podMonitor": true}}),
            &[POD_MONITOR],
        ),
        create(
            NC,
            "metrics off, no PodMonitor",
            json!({"metrics": {"enabled": false}}),
            &[],
        ),
        create(
            NC,
            "monitor port = client port",
            json!({"ports": {"monitor": 4222}}),
            &[PORTS],
        ),
        create(
            NC,
            "client port = cluster port",
            json!({"ports": {"client": 6222}}),
            &[PORTS],
        ),
        create(
            NC,
            "cluster port = monitor port",
            json!({"ports": {"cluster": 8222}}),
            &[PORTS],
        ),
        create(
            NC,
            "three other ports",
            json!({"ports": {"client": 14222, "cluster": 16222, "monitor": 18222}}),
            &[],
        ),
        // NatsCluster: updates.
        update(
            NC,
            "what the brokers reload or roll: replicas, ports, lame duck, memory store",
            js.clone(),
            json!({"replicas": 5, "ports": {"client": 4333}, "lameDuck": {"duration": "1m"},
                   "jetstream": {"enabled": true, "fileStorage": {"size": "10Gi"},
                                 "memoryStorage": {"maxSize": "1Gi"}}}),
            &[],
        ),
        update(
            NC,
            "turning JetStream on",
            json!({}),
            json!({"jetstream": {"enabled": true}}),
            &[JS_ENABLED],
        ),
        update(
            NC,
            "turning JetStream off",
            js.clone(),
            json!({}),
            &[JS_ENABLED],
        ),
        update(
            NC,
            "growing the JetStream volume",
            js.clone(),
            json!({"jetstream": {"enabled": true, "fileStorage": {"size": "20Gi"}}}),
            &[JS_STORAGE],
        ),
        update(
            NC,
            "another StorageClass for JetStream",
            js.clone(),
            json!({"jetstream": {"enabled": true,
                                 "fileStorage": {"size": "10Gi", "storageClassName": "fast"}}}),
            &[JS_STORAGE],
        ),
        update(
            NC,
            "JetStream's volume while JetStream is off (not rendered)",
            json!({"jetstream": {"fileStorage": {"size": "10Gi"}}}),
            json!({"jetstream": {"fileStorage": {"size": "50Gi"}}}),
            &[],
        ),
        update(
            NC,
            "turning operator mode and the resolver on",
            json!({}),
            op.clone(),
            &[RESOLVER_ENABLED, OPERATOR_MODE],
        ),
        update(
            NC,
            "turning operator mode and the resolver off",
            op.clone(),
            json!({}),
            &[RESOLVER_ENABLED, OPERATOR_MODE],
        ),
        update(
            NC,
            "growing the resolver volume",
            op.clone(),
            json!({"auth": {"operatorMode": true},
                   "resolver": {"enabled": true, "storage": {"size": "2Gi"}}}),
            &[RESOLVER_STORAGE],
        ),
        update(
            NC,
            "another StorageClass for the resolver",
            op.clone(),
            json!({"auth": {"operatorMode": true},
                   "resolver": {"enabled": true,
                                "storage": {"size": "1Gi", "storageClassName": "fast"}}}),
            &[RESOLVER_STORAGE],
        ),
        update(
            NC,
            "the resolver's volume while the resolver is off",
            json!({"resolver": {"storage": {"size": "1Gi"}}}),
            json!({"resolver": {"storage": {"size": "5Gi"}}}),
            &[],
        ),
        update(
            NC,
            "renaming the system account in operator mode",
            op.clone(),
            json!({"auth": {"operatorMode": true, "systemAccount": "SYSTEM"},
                   "resolver": {"enabled": true}}),
            &[SYSTEM_ACCOUNT],
        ),
        update(
            NC,
            "renaming the (unused) system account outside operator mode",
            json!({}),
            json!({"auth": {"systemAccount": "SYSTEM"}}),
            &[],
        ),
        update(
            NC,
            "turning the PodMonitor on and the pods' annotations off",
            json!({}),
            json!({"metrics": {"podMonitor": true}}),
            &[],
        ),
        update(
            NC,
            "metrics off while the PodMonitor stays",
            json!({"metrics": {"podMonitor": true}}),
            json!({"metrics": {"enabled": false, "podMonitor": true}}),
            &[POD_MONITOR],
        ),
        // Account.
        create(
            ACC,
            "just a cluster",
            json!({"clusterRef": {"name": "nats"}}),
            &[],
        ),
        create(
            ACC,
            "imports and exports within their limits",
            json!({"clusterRef": {"name": "nats"},
                   "limits": {"imports": 1, "exports": -1},
                   "imports": [{"account": "b", "subject": "b.>"}],
                   "exports": [{"subject": "a.>"}, {"subject": "svc", "type": "service"}]}),
            &[],
        ),
        create(
            ACC,
            "no imports under a zero limit",
            json!({"clusterRef": {"name": "nats"}, "limits": {"imports": 0, "exports": 0}}),
            &[],
        ),
        create(
            ACC,
            "an import over a zero limit",
            json!({"clusterRef": {"name": "nats"}, "limits": {"imports": 0},
                   "imports": [{"account": "b", "subject": "b.>"}]}),
            &[ACC_IMPORTS],
        ),
        create(
            ACC,
            "two exports over a limit of one",
            json!({"clusterRef": {"name": "nats"}, "limits": {"exports": 1},
                   "exports": [{"subject": "a.>"}, {"subject": "b.>"}]}),
            &[ACC_EXPORTS],
        ),
        update(
            ACC,
            "users and limits change",
            json!({"clusterRef": {"name": "nats"}}),
            json!({"clusterRef": {"name": "nats"}, "limits": {"conn": 10},
                   "users": [{"name": "app"}]}),
            &[],
        ),
        update(
            ACC,
            "moving to another cluster",
            json!({"clusterRef": {"name": "nats"}}),
            json!({"clusterRef": {"name": "other"}}),
            &[ACC_CLUSTER],
        ),
        // Stream.
        create(STR, "subjects", stream.clone(), &[]),
        create(
            STR,
            "a mirror",
            json!({"clusterRef": {"name": "nats"}, "name": "m", "mirror": {"name": "orders"}}),
            &[],
        ),
        create(
            STR,
            "a mirror with subjects",
            json!({"clusterRef": {"name": "nats"}, "name": "m", "mirror": {"name": "orders"},
                   "subjects": ["x"]}),
            &[MIRROR_SUBJECTS],
        ),
        create(
            STR,
            "a mirror with sources",
            json!({"clusterRef": {"name": "nats"}, "name": "m", "mirror": {"name": "orders"},
                   "sources": [{"name": "other"}]}),
            &[MIRROR_SOURCES],
        ),
        create(
            STR,
            "sources without a mirror",
            json!({"clusterRef": {"name": "nats"}, "name": "agg", "subjects": ["agg"],
                   "sources": [{"name": "orders"}]}),
            &[],
        ),
        update(
            STR,
            "subjects, limits and an explicit default storage",
            stream.clone(),
            json!({"clusterRef": {"name": "nats"}, "name": "orders", "storage": "file",
                   "subjects": ["orders.>", "refunds.>"], "maxAge": "24h"}),
            &[],
        ),
        update(
            STR,
            "renaming the stream",
            stream.clone(),
            json!({"clusterRef": {"name": "nats"}, "name": "orders2", "subjects": ["orders.>"]}),
            &[STR_NAME],
        ),
        update(
            STR,
            "file to memory storage",
            stream.clone(),
            json!({"clusterRef": {"name": "nats"}, "name": "orders", "storage": "memory",
                   "subjects": ["orders.>"]}),
            &[STR_STORAGE],
        ),
        update(
            STR,
            "moving to another cluster",
            stream.clone(),
            json!({"clusterRef": {"name": "other"}, "name": "orders", "subjects": ["orders.>"]}),
            &[STR_CLUSTER],
        ),
        update(
            STR,
            "moving into an account",
            stream.clone(),
            json!({"clusterRef": {"name": "nats"}, "name": "orders", "subjects": ["orders.>"],
                   "accountRef": {"name": "team-a"}}),
            &[STR_ACCOUNT],
        ),
        update(
            STR,
            "moving out of its account",
            in_account.clone(),
            json!({"clusterRef": {"name": "nats"}, "name": "orders"}),
            &[STR_ACCOUNT],
        ),
        update(
            STR,
            "moving to another account",
            in_account.clone(),
            json!({"clusterRef": {"name": "nats"}, "name": "orders",
                   "accountRef": {"name": "team-b"}}),
            &[STR_ACCOUNT],
        ),
        update(
            STR,
            "same account, new subjects",
            in_account,
            json!({"clusterRef": {"name": "nats"}, "name": "orders", "subjects": ["o.>"],
                   "accountRef": {"name": "team-a"}}),
            &[],
        ),
    ]
}

#[test]
fn every_case_breaks_exactly_its_rules() {
    for c in cases() {
        let got = broken(c.kind, &c.new, c.old.as_ref());
        for want in c.breaks {
            assert!(
                got.iter().any(|m| m.contains(want)),
                "{} ({}): expected {want:?} to be broken, got {got:?}",
                c.kind,
                c.what
            );
        }
        let unexpected: Vec<_> = got
            .iter()
            .filter(|m| !c.breaks.iter().any(|w| m.contains(w)))
            .collect();
        assert!(
            unexpected.is_empty(),
            "{} ({}): unexpected {unexpected:?}",
            c.kind,
            c.what
        );
    }
}

#[test]
fn every_rule_is_broken_by_some_case() {
    let cases = cases();
    let mut untested = Vec::new();
    for (kind, rule, message, _) in all_rules() {
        assert!(!message.is_empty(), "{kind} rule {rule:?} has no message");
        let tested = cases
            .iter()
            .any(|c| c.kind == kind && c.breaks.iter().any(|w| message.contains(w)));
        if !tested {
            untested.push(format!("{kind}: {message}"));
        }
    }
    assert!(untested.is_empty(), "rules no case breaks: {untested:#?}");
    // Each name in a case matches one rule only.
    for c in &cases {
        for w in c.breaks {
            let n = all_rules()
                .iter()
                .filter(|(k, _, m, _)| *k == c.kind && m.contains(w))
                .count();
            assert_eq!(n, 1, "{} ({}): {w:?} names {n} rules", c.kind, c.what);
        }
    }
}

#[test]
fn every_rule_compiles_in_scope_and_within_the_cost_budget() {
    let rules = all_rules();
    assert!(rules.len() >= 18, "{} rules", rules.len());
    for (kind, rule, _, node) in rules {
        let compiled = compile_schema(&node);
        assert!(
            !compiled.has_errors(),
            "{kind} rule {rule:?}: {:?}",
            compiled.compilation_errors()
        );
        let warnings = analyze_rule(&rule, &compiled, ScopeContext::CrdValidation);
        assert!(warnings.is_empty(), "{kind} rule {rule:?}: {warnings:?}");
    }
}

#[test]
fn creation_ignores_transition_rules() {
    // oldSelf rules only run on updates: a create with any immutable field set is fine.
    let spec = json!({"jetstream": {"enabled": true, "fileStorage": {"size": "1Ti",
                      "storageClassName": "slow"}},
                      "auth": {"operatorMode": true, "systemAccount": "SYSTEM"},
                      "resolver": {"enabled": true, "storage": {"size": "5Gi"}}});
    assert_eq!(broken(NC, &spec, None), BTreeSet::new());
    // And an unchanged update passes every transition rule.
    assert_eq!(broken(NC, &spec, Some(&spec)), BTreeSet::new());
}

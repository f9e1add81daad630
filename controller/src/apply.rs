//! Server-side apply of rendered objects, and the PodDisruptionBudget API version.
//!
//! A child is applied only when the live object is not already what the apply would make:
//! an unchanged apply is a no-op for the server but still a PATCH request every resync.
//! The live object must carry the hash of this rendering (an annotation set at apply time,
//! so a field removed from the rendering is applied too) and either be unchanged since our
//! last apply (same resourceVersion) or hold every rendered field with its rendered value;
//! anything else (a new rendering, an out-of-band edit of one of our fields, a deleted
//! object) is applied, which puts it back.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Mutex;

use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DynamicObject, ObjectMeta, Patch, PatchParams};
use kube::core::ApiResource;
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Field manager of every server-side apply, and the events' reporting controller.
pub const FIELD_MANAGER: &str = "natrix-controller";

/// Parameters of every apply: our field manager, taking over conflicting fields.
pub fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// Annotation on every applied child: sha256 of the rendered object it was applied from.
pub const APPLIED_HASH_ANNOTATION: &str = "natrix.io/applied-hash";

/// What the operator last applied, per object: the rendering's hash and the resourceVersion
/// the server returned.
#[derive(Debug, Default)]
pub struct Applied {
    last: Mutex<HashMap<String, (String, String)>>,
}

impl Applied {
    /// Remember what an apply of the rendering `hash` stored under `key` (`Kind/ns/name`).
    pub fn record(&self, key: String, hash: &str, stored: &Value) {
        let mut m = self.last.lock().unwrap_or_else(|e| e.into_inner());
        match stored["metadata"]["resourceVersion"].as_str() {
            Some(rv) => {
                m.insert(key, (hash.to_string(), rv.to_string()));
            }
            None => {
                m.remove(&key);
            }
        }
    }

    /// Whether applying `want` (stamped with `hash`) would leave `live` as it is.
    pub fn unchanged(&self, key: &str, hash: &str, want: &Value, live: &Value) -> bool {
        if live["metadata"]["annotations"][APPLIED_HASH_ANNOTATION].as_str() != Some(hash) {
            return false;
        }
        if live["metadata"]["deletionTimestamp"].is_string() {
            return false;
        }
        let same_version = {
            let m = self.last.lock().unwrap_or_else(|e| e.into_inner());
            m.get(key).is_some_and(|(h, rv)| {
                h == hash && live["metadata"]["resourceVersion"].as_str() == Some(rv)
            })
        };
        same_version || covers(want, live)
    }
}

/// Whether `live` holds every field of `want` with the same value: objects may have more
/// fields (server defaults, other managers), lists must have as many items; a null, empty or
/// zero value in `want` matches a missing one (the API server drops Go's `omitempty` zeros).
pub fn covers(want: &Value, live: &Value) -> bool {
    match (want, live) {
        (Value::Null, _) => true,
        (w, Value::Null) => is_zero(w),
        (Value::Object(w), Value::Object(l)) => w
            .iter()
            .all(|(k, v)| covers(v, l.get(k).unwrap_or(&Value::Null))),
        (Value::Array(w), Value::Array(l)) => {
            w.len() == l.len() && w.iter().zip(l).all(|(a, b)| covers(a, b))
        }
        (w, l) => w == l,
    }
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// Set the applied-hash annotation of a rendered object (as JSON) and return the hash: sha256
/// of the object without that annotation.
pub fn stamp(obj: &mut Value) -> String {
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return String::new();
    };
    if let Some(Value::Object(a)) = meta.get_mut("annotations") {
        a.remove(APPLIED_HASH_ANNOTATION);
    }
    if meta
        .get("annotations")
        .is_some_and(|a| a.is_null() || a.as_object().is_some_and(|a| a.is_empty()))
    {
        meta.remove("annotations");
    }
    // Serializing a JSON value cannot fail.
    let hash: String = Sha256::digest(serde_json::to_vec(obj).unwrap_or_default())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        let a = meta
            .entry("annotations")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(a) = a.as_object_mut() {
            a.insert(APPLIED_HASH_ANNOTATION.into(), hash.clone().into());
        }
    }
    hash
}

/// Server-side apply `obj` (namespaced, named) unless the live object already is what it
/// would make (see the module docs); return the live or newly stored object.
pub async fn apply<K>(client: &Client, applied: &Applied, obj: &K) -> Result<K>
where
    K: Resource<DynamicType = ()> + Serialize + DeserializeOwned + Clone + Debug,
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
{
    let (ns, name) = namespace_and_name(obj.meta())?;
    let api: Api<K> = Api::namespaced(client.clone(), &ns);
    let kind = kind_name::<K>();
    converge(&api, applied, &K::kind(&()), kind, &ns, &name, obj).await
}

/// Server-side apply a dynamic object of `ar` (namespaced, named) unless the live object
/// already is what it would make (see the module docs); return the live or stored object.
pub async fn apply_dynamic(
    client: &Client,
    applied: &Applied,
    ar: &ApiResource,
    obj: &DynamicObject,
) -> Result<DynamicObject> {
    let (ns, name) = namespace_and_name(&obj.metadata)?;
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, ar);
    let kind = match ar.kind.as_str() {
        "PodDisruptionBudget" => "PodDisruptionBudget",
        _ => "object",
    };
    converge(&api, applied, &ar.kind, kind, &ns, &name, obj).await
}

fn namespace_and_name(meta: &ObjectMeta) -> Result<(String, String)> {
    let name = meta.name.clone().ok_or(Error::MissingMetadata("name"))?;
    let ns = meta
        .namespace
        .clone()
        .ok_or(Error::MissingMetadata("namespace"))?;
    Ok((ns, name))
}

/// The step both applies share: return the live object when it already is what `obj` would
/// make, else apply `obj` and remember what the server stored.
async fn converge<T, O>(
    api: &Api<T>,
    applied: &Applied,
    api_kind: &str,
    error_kind: &'static str,
    ns: &str,
    name: &str,
    obj: &O,
) -> Result<T>
where
    T: Serialize + DeserializeOwned + Clone + Debug,
    O: Serialize,
{
    let mut want = serde_json::to_value(obj)?;
    let hash = stamp(&mut want);
    let key = format!("{api_kind}/{ns}/{name}");
    let err = |source| Error::Apply {
        kind: error_kind,
        name: format!("{ns}/{name}"),
        source,
    };
    if let Some(live) = api.get_opt(name).await.map_err(err)? {
        if applied.unchanged(&key, &hash, &want, &serde_json::to_value(&live)?) {
            return Ok(live);
        }
    }
    let stored = api
        .patch(name, &apply_params(), &Patch::Apply(&want))
        .await
        .map_err(err)?;
    applied.record(key, &hash, &serde_json::to_value(&stored)?);
    Ok(stored)
}

fn kind_name<K: Resource<DynamicType = ()>>() -> &'static str {
    match K::kind(&()).as_ref() {
        "ConfigMap" => "ConfigMap",
        "Service" => "Service",
        "StatefulSet" => "StatefulSet",
        _ => "object",
    }
}

/// policy/v1 PodDisruptionBudget (Kubernetes 1.21+).
pub fn pdb_v1() -> ApiResource {
    ApiResource::erase::<PodDisruptionBudget>(&())
}

/// policy/v1beta1 PodDisruptionBudget (Kubernetes before 1.21; removed in 1.25).
pub fn pdb_v1beta1() -> ApiResource {
    ApiResource {
        group: "policy".into(),
        version: "v1beta1".into(),
        api_version: "policy/v1beta1".into(),
        kind: "PodDisruptionBudget".into(),
        plural: "poddisruptionbudgets".into(),
    }
}

/// The PodDisruptionBudget API the server serves: policy/v1 when discovery lists it,
/// policy/v1beta1 otherwise.
pub async fn pdb_resource(client: &Client) -> ApiResource {
    match client.list_api_group_resources("policy/v1").await {
        Ok(list)
            if list
                .resources
                .iter()
                .any(|r| r.name == "poddisruptionbudgets") =>
        {
            pdb_v1()
        }
        Ok(_) => pdb_v1beta1(),
        Err(e) => {
            tracing::info!("policy/v1 not served ({e}); using policy/v1beta1 PodDisruptionBudgets");
            pdb_v1beta1()
        }
    }
}

/// A rendered (policy/v1) PodDisruptionBudget as a dynamic object of `ar`'s version;
/// the spec fields we render are the same in v1beta1.
pub fn pdb_object(pdb: &PodDisruptionBudget, ar: &ApiResource) -> Result<DynamicObject> {
    let mut v = serde_json::to_value(pdb)?;
    v["apiVersion"] = ar.api_version.clone().into();
    v["kind"] = ar.kind.clone().into();
    Ok(serde_json::from_value(v)?)
}

/// Server-side apply a PodDisruptionBudget in `ar`'s version (unless unchanged, as [`apply`]).
pub async fn apply_pdb(
    client: &Client,
    applied: &Applied,
    ar: &ApiResource,
    pdb: &PodDisruptionBudget,
) -> Result<DynamicObject> {
    apply_dynamic(client, applied, ar, &pdb_object(pdb, ar)?).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{NatsCluster, NatsClusterSpec};

    #[test]
    fn pdb_keeps_its_spec_in_v1beta1() {
        let spec: NatsClusterSpec = serde_json::from_value(serde_json::json!({})).unwrap();
        let mut nc = NatsCluster::new("nats", spec);
        nc.metadata.namespace = Some("ns".into());
        nc.metadata.uid = Some("u1".into());
        let pdb = crate::render::render(&nc).unwrap().pdb.unwrap();
        let o = pdb_object(&pdb, &pdb_v1beta1()).unwrap();
        let v = serde_json::to_value(&o).unwrap();
        assert_eq!(v["apiVersion"], "policy/v1beta1");
        assert_eq!(v["kind"], "PodDisruptionBudget");
        assert_eq!(v["spec"]["maxUnavailable"], 1);
        assert_eq!(
            v["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"],
            "nats"
        );
        assert_eq!(v["metadata"]["ownerReferences"][0]["uid"], "u1");
        assert_eq!(v["metadata"]["ownerReferences"][0]["controller"], true);
        let v1 = serde_json::to_value(pdb_object(&pdb, &pdb_v1()).unwrap()).unwrap();
        assert_eq!(v1["apiVersion"], "policy/v1");
    }

    #[test]
    fn covers_ignores_server_defaults_but_not_changes() {
        let want = serde_json::json!({
            "metadata": {"name": "n", "labels": {"a": "1"}},
            "spec": {"ports": [{"name": "client", "port": 4222}], "paused": false,
                     "emptyDir": {}, "args": []},
        });
        let mut live = serde_json::json!({
            "metadata": {"name": "n", "labels": {"a": "1", "b": "2"}, "resourceVersion": "7"},
            "spec": {"ports": [{"name": "client", "port": 4222, "protocol": "TCP"}],
                     "emptyDir": {}, "clusterIP": "10.0.0.1"},
            "status": {"x": 1},
        });
        assert!(covers(&want, &live));
        live["spec"]["ports"][0]["port"] = 4223.into();
        assert!(!covers(&want, &live));
        live["spec"]["ports"][0]["port"] = 4222.into();
        live["spec"]["ports"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"name": "extra", "port": 1}));
        assert!(!covers(&want, &live), "a list item added out of band");
        live["spec"]["ports"].as_array_mut().unwrap().pop();
        live["metadata"]["labels"]["a"] = "changed".into();
        assert!(!covers(&want, &live));
        live["metadata"]["labels"]
            .as_object_mut()
            .unwrap()
            .remove("a");
        assert!(!covers(&want, &live), "a label removed out of band");
    }

    #[test]
    fn stamp_hashes_the_rendering_without_its_own_annotation() {
        let mut a = serde_json::json!({"metadata": {"name": "n"}, "data": {"k": "v"}});
        let h = stamp(&mut a);
        assert_eq!(h.len(), 64);
        assert_eq!(a["metadata"]["annotations"][APPLIED_HASH_ANNOTATION], h);
        // Stamping again (the annotation already there) gives the same hash.
        assert_eq!(stamp(&mut a), h);
        let mut b = serde_json::json!({"metadata": {"name": "n"}, "data": {"k": "w"}});
        assert_ne!(stamp(&mut b), h);
    }

    #[test]
    fn unchanged_needs_the_hash_and_our_version_or_every_field() {
        let applied = Applied::default();
        let mut want = serde_json::json!({"metadata": {"name": "n"}, "data": {"k": "v"}});
        let hash = stamp(&mut want);
        let mut live = want.clone();
        live["metadata"]["resourceVersion"] = "5".into();
        assert!(applied.unchanged("k", &hash, &want, &live));
        // Another rendering: applied, whatever the live object holds.
        assert!(!applied.unchanged("k", "other", &want, &live));
        // Edited out of band: applied.
        live["data"]["k"] = "edited".into();
        assert!(!applied.unchanged("k", &hash, &want, &live));
        // ... unless it is the very version our last apply stored (a value the server
        // normalizes, say): then the apply would change nothing.
        applied.record("k".into(), &hash, &live);
        assert!(applied.unchanged("k", &hash, &want, &live));
        live["metadata"]["resourceVersion"] = "6".into();
        assert!(!applied.unchanged("k", &hash, &want, &live));
        // Being deleted: applied (it comes back once gone).
        let mut gone = want.clone();
        gone["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z".into();
        assert!(!applied.unchanged("k", &hash, &want, &gone));
        // Without our annotation (applied by an older operator): applied once.
        let mut old = want.clone();
        old["metadata"]["annotations"] = serde_json::json!({});
        assert!(!applied.unchanged("k", &hash, &want, &old));
    }
}

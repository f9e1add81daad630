//! Server-side apply of rendered objects, and the PodDisruptionBudget API version.

use std::fmt::Debug;

use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::ApiResource;
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::context::FIELD_MANAGER;
use crate::error::{Error, Result};

/// Parameters of every apply: our field manager, taking over conflicting fields.
pub fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// Server-side apply `obj` (namespaced, named) and return what the server stored.
pub async fn apply<K>(client: &Client, obj: &K) -> Result<K>
where
    K: Resource<DynamicType = ()> + Serialize + DeserializeOwned + Clone + Debug,
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
{
    let name = obj
        .meta()
        .name
        .clone()
        .ok_or(Error::MissingMetadata("name"))?;
    let ns = obj
        .meta()
        .namespace
        .clone()
        .ok_or(Error::MissingMetadata("namespace"))?;
    let api: Api<K> = Api::namespaced(client.clone(), &ns);
    api.patch(&name, &apply_params(), &Patch::Apply(obj))
        .await
        .map_err(|source| Error::Apply {
            kind: kind_name::<K>(),
            name: format!("{ns}/{name}"),
            source,
        })
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

/// Server-side apply a PodDisruptionBudget in `ar`'s version.
pub async fn apply_pdb(
    client: &Client,
    ar: &ApiResource,
    pdb: &PodDisruptionBudget,
) -> Result<DynamicObject> {
    let name = pdb
        .metadata
        .name
        .clone()
        .ok_or(Error::MissingMetadata("name"))?;
    let ns = pdb
        .metadata
        .namespace
        .clone()
        .ok_or(Error::MissingMetadata("namespace"))?;
    let obj = pdb_object(pdb, ar)?;
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, ar);
    api.patch(&name, &apply_params(), &Patch::Apply(&obj))
        .await
        .map_err(|source| Error::Apply {
            kind: "PodDisruptionBudget",
            name: format!("{ns}/{name}"),
            source,
        })
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
}

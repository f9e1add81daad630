//! Pure rendering: a NatsCluster in, the desired Kubernetes objects out (no API calls).

pub mod conf;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    RollingUpdateStatefulSetStrategy, StatefulSet, StatefulSetSpec, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvVar, EnvVarSource, HTTPGetAction, KeyToPath, ObjectFieldSelector, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile,
    SecretKeySelector, SecretVolumeSource, SecurityContext, Service, ServicePort, ServiceSpec,
    Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::DynamicObject;
use kube::core::ApiResource;
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};

use crate::crd::{NatsCluster, StorageSpec};
use crate::units::parse_duration;

/// Annotation on the pod template with the checksum of the restart-only configuration.
pub const CONFIG_HASH_ANNOTATION: &str = "natrix.io/config-hash";
/// Annotation on the StatefulSet with the hash of its pod template (a change rolls the pods
/// one at a time, see `cluster::rollout`).
pub const TEMPLATE_HASH_ANNOTATION: &str = "natrix.io/template-hash";
/// Key of nats.conf in the ConfigMap.
pub const CONF_KEY: &str = "nats.conf";
/// Directory the ConfigMap is mounted at.
pub const CONF_DIR: &str = "/etc/nats";
/// User and group the broker runs as.
pub const RUN_AS: i64 = 1000;
/// Name of the container (and Service) port of the HTTP monitor: probes and metrics.
pub const MONITOR_PORT_NAME: &str = "monitor";
/// Path of the brokers' Prometheus exporter on the monitor port.
pub const METRICS_PATH: &str = "/metrics";
/// Pod annotation asking annotation-driven Prometheus setups to scrape the pod.
pub const SCRAPE_ANNOTATION: &str = "prometheus.io/scrape";
/// Pod annotation with the port Prometheus scrapes.
pub const SCRAPE_PORT_ANNOTATION: &str = "prometheus.io/port";
/// Pod annotation with the path Prometheus scrapes.
pub const SCRAPE_PATH_ANNOTATION: &str = "prometheus.io/path";

/// Why a NatsCluster cannot be rendered.
#[derive(Debug, PartialEq, Eq)]
pub enum RenderError {
    /// The object has no name, namespace or uid (it was not read from the API server).
    MissingMetadata(&'static str),
    /// A field has a value the schema should have refused, or fields contradict each other.
    InvalidSpec(String),
}

impl RenderError {
    fn invalid(field: &str, value: &str) -> Self {
        RenderError::InvalidSpec(format!("spec.{field}: invalid value {value:?}"))
    }
}

impl std::fmt::Display for RenderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RenderError::MissingMetadata(what) => write!(f, "NatsCluster has no metadata.{what}"),
            RenderError::InvalidSpec(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for RenderError {}

/// Names of a NatsCluster's children.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    /// Namespace of everything.
    pub namespace: String,
    /// StatefulSet (and cluster name).
    pub statefulset: String,
    /// Headless Service for the pods' DNS names.
    pub headless: String,
    /// Client Service.
    pub client: String,
    /// ConfigMap holding nats.conf.
    pub config_map: String,
    /// PodDisruptionBudget.
    pub pdb: String,
    /// Secret with the operator JWT and the system account (operator mode).
    pub operator_secret: String,
    /// Prometheus Operator PodMonitor (`metrics.podMonitor`).
    pub pod_monitor: String,
}

/// Children names for a NatsCluster.
pub fn names(nc: &NatsCluster) -> Result<Names, RenderError> {
    let name = nc
        .metadata
        .name
        .clone()
        .ok_or(RenderError::MissingMetadata("name"))?;
    let namespace = nc
        .metadata
        .namespace
        .clone()
        .ok_or(RenderError::MissingMetadata("namespace"))?;
    Ok(Names {
        namespace,
        headless: format!("{name}-headless"),
        client: name.clone(),
        config_map: format!("{name}-config"),
        pdb: name.clone(),
        operator_secret: format!("{name}-operator"),
        pod_monitor: name.clone(),
        statefulset: name,
    })
}

/// Labels shared by every child; the first two select the pods.
pub fn labels(nc: &NatsCluster) -> BTreeMap<String, String> {
    let mut l = selector_labels(nc);
    l.insert("app.kubernetes.io/component".into(), "broker".into());
    l.insert(
        "app.kubernetes.io/managed-by".into(),
        "natrix-controller".into(),
    );
    l
}

/// Labels selecting a NatsCluster's pods.
pub fn selector_labels(nc: &NatsCluster) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "natrix".into()),
        ("app.kubernetes.io/instance".into(), nc.name_any()),
    ])
}

fn owner_ref(nc: &NatsCluster) -> Result<OwnerReference, RenderError> {
    nc.controller_owner_ref(&())
        .ok_or(RenderError::MissingMetadata("uid"))
}

fn meta(nc: &NatsCluster, name: &str) -> Result<ObjectMeta, RenderError> {
    Ok(ObjectMeta {
        name: Some(name.to_string()),
        namespace: nc.metadata.namespace.clone(),
        labels: Some(labels(nc)),
        owner_references: Some(vec![owner_ref(nc)?]),
        ..Default::default()
    })
}

/// Every object a NatsCluster needs.
#[derive(Clone, Debug)]
pub struct Rendered {
    /// nats.conf text.
    pub conf: String,
    /// sha256 of the restart-only part of nats.conf.
    pub config_hash: String,
    /// ConfigMap with nats.conf.
    pub config_map: ConfigMap,
    /// Headless Service (pod DNS, routes).
    pub headless_service: Service,
    /// Client Service.
    pub client_service: Service,
    /// The broker StatefulSet.
    pub statefulset: StatefulSet,
    /// The PodDisruptionBudget, unless disabled.
    pub pdb: Option<PodDisruptionBudget>,
    /// The PodMonitor (`metrics.podMonitor`), a `monitoring.coreos.com/v1` object.
    pub pod_monitor: Option<DynamicObject>,
}

/// nats.conf text for a NatsCluster.
pub fn render_conf(nc: &NatsCluster) -> Result<String, RenderError> {
    let tree = conf::conf_tree(nc)?;
    Ok(conf::to_text(&header(nc)?, &tree))
}

fn header(nc: &NatsCluster) -> Result<String, RenderError> {
    let n = names(nc)?;
    Ok(format!(
        "Rendered by natrix-controller for NatsCluster {}/{}; edit the NatsCluster, not this file.",
        n.namespace, n.statefulset
    ))
}

/// Render every child object of a NatsCluster.
pub fn render(nc: &NatsCluster) -> Result<Rendered, RenderError> {
    let tree = conf::conf_tree(nc)?;
    let conf = conf::to_text(&header(nc)?, &tree);
    let config_hash = hex(&Sha256::digest(conf::restart_only_text(&tree).as_bytes()));
    Ok(Rendered {
        config_map: config_map(nc, &conf)?,
        headless_service: headless_service(nc)?,
        client_service: client_service(nc)?,
        statefulset: statefulset(nc, &config_hash)?,
        pdb: pdb(nc)?,
        pod_monitor: pod_monitor(nc)?,
        conf,
        config_hash,
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn config_map(nc: &NatsCluster, conf: &str) -> Result<ConfigMap, RenderError> {
    let n = names(nc)?;
    Ok(ConfigMap {
        metadata: meta(nc, &n.config_map)?,
        data: Some(BTreeMap::from([(CONF_KEY.to_string(), conf.to_string())])),
        ..Default::default()
    })
}

fn port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

fn headless_service(nc: &NatsCluster) -> Result<Service, RenderError> {
    let n = names(nc)?;
    let p = &nc.spec.ports;
    Ok(Service {
        metadata: meta(nc, &n.headless)?,
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(nc)),
            ports: Some(vec![
                port("client", p.client),
                port("cluster", p.cluster),
                port(MONITOR_PORT_NAME, p.monitor),
            ]),
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn client_service(nc: &NatsCluster) -> Result<Service, RenderError> {
    let n = names(nc)?;
    Ok(Service {
        metadata: meta(nc, &n.client)?,
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector_labels(nc)),
            ports: Some(vec![port("client", nc.spec.ports.client)]),
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn probe(path: &str, period: i32, failure: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String(MONITOR_PORT_NAME.into()),
            ..Default::default()
        }),
        initial_delay_seconds: Some(10),
        timeout_seconds: Some(5),
        period_seconds: Some(period),
        failure_threshold: Some(failure),
        ..Default::default()
    }
}

fn pvc(name: &str, st: &StorageSpec) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: st.storage_class_name.clone(),
            volume_mode: Some("Filesystem".into()),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(st.size.clone()),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn secret_volume(name: &str, secret: &str) -> Volume {
    Volume {
        name: name.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(true),
        ..Default::default()
    }
}

/// `terminationGracePeriodSeconds`: lame duck grace + duration + 20 s.
pub fn termination_grace_seconds(nc: &NatsCluster) -> Result<i64, RenderError> {
    let ld = &nc.spec.lame_duck;
    let g = parse_duration(&ld.grace_period)
        .ok_or_else(|| RenderError::invalid("lameDuck.gracePeriod", &ld.grace_period))?;
    let d = parse_duration(&ld.duration)
        .ok_or_else(|| RenderError::invalid("lameDuck.duration", &ld.duration))?;
    Ok((g + d).ceil() as i64 + 20)
}

fn statefulset(nc: &NatsCluster, config_hash: &str) -> Result<StatefulSet, RenderError> {
    let n = names(nc)?;
    let spec = &nc.spec;
    let p = &spec.ports;
    let tag = spec
        .image
        .tag
        .clone()
        .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string());

    let mut volumes = vec![
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: n.config_map.clone(),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume {
            name: "pid".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        },
    ];
    let mut mounts = vec![
        mount("config", CONF_DIR),
        VolumeMount {
            name: "pid".into(),
            mount_path: "/var/run/nats".into(),
            ..Default::default()
        },
    ];
    let mut claims = Vec::new();
    if spec.jetstream.enabled {
        claims.push(pvc("data", &spec.jetstream.file_storage));
        mounts.push(VolumeMount {
            name: "data".into(),
            mount_path: conf::STORE_DIR.into(),
            ..Default::default()
        });
    }
    if spec.resolver.enabled {
        claims.push(pvc("resolver", &spec.resolver.storage));
        mounts.push(VolumeMount {
            name: "resolver".into(),
            mount_path: conf::RESOLVER_DIR.into(),
            ..Default::default()
        });
    }
    if let Some(tls) = &spec.tls {
        for (listener, t) in [("client", &tls.client), ("cluster", &tls.cluster)] {
            if let Some(t) = t {
                let vol = format!("tls-{listener}");
                volumes.push(secret_volume(&vol, &t.secret_name));
                mounts.push(mount(&vol, &format!("{}/{listener}", conf::TLS_DIR)));
            }
        }
        if let Some(ca) = &tls.ca {
            volumes.push(secret_volume("tls-ca", &ca.secret_name));
            mounts.push(mount("tls-ca", &format!("{}/ca", conf::TLS_DIR)));
        }
    }
    let mut env = vec![EnvVar {
        name: "SERVER_NAME".into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: "metadata.name".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }];
    if spec.auth.operator_mode {
        // Only the operator JWT and the preload fragment: no seeds in the pods.
        let mut vol = secret_volume("operator", &n.operator_secret);
        if let Some(sv) = vol.secret.as_mut() {
            sv.items = Some(
                [crate::auth::OPERATOR_JWT_KEY, crate::auth::PRELOAD_KEY]
                    .iter()
                    .map(|k| KeyToPath {
                        key: (*k).into(),
                        path: (*k).into(),
                        ..Default::default()
                    })
                    .collect(),
            );
        }
        volumes.push(vol);
        mounts.push(mount("operator", "/etc/nats/operator"));
        env.push(EnvVar {
            name: "SYSTEM_ACCOUNT".into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: n.operator_secret.clone(),
                    key: crate::auth::SYSTEM_ACCOUNT_KEY.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
    }

    let container_port = |name: &str, port: i32| ContainerPort {
        name: Some(name.into()),
        container_port: port,
        protocol: Some("TCP".into()),
        ..Default::default()
    };
    let container = Container {
        name: "nats".into(),
        image: Some(format!("{}:{tag}", spec.image.repository)),
        image_pull_policy: spec.image.pull_policy.map(|p| p.as_str().to_string()),
        command: Some(vec!["natrix-broker".into()]),
        args: Some(vec!["-c".into(), format!("{CONF_DIR}/{CONF_KEY}")]),
        env: Some(env),
        ports: Some(vec![
            container_port("client", p.client),
            container_port("cluster", p.cluster),
            container_port(MONITOR_PORT_NAME, p.monitor),
        ]),
        startup_probe: Some(probe("/healthz", 10, 90)),
        readiness_probe: Some(probe("/healthz?js-server-only=true", 10, 3)),
        liveness_probe: Some(probe("/healthz?js-enabled-only=true", 30, 3)),
        resources: spec.resources.clone(),
        volume_mounts: Some(mounts),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };

    let pod = &spec.pod;
    let mut pod_labels = pod.labels.clone();
    pod_labels.extend(labels(nc));
    // The scrape annotations first: the user's `pod.annotations` may override them.
    let mut annotations = scrape_annotations(nc);
    annotations.extend(pod.annotations.clone());
    annotations.insert(CONFIG_HASH_ANNOTATION.into(), config_hash.into());
    let non_empty = |v: &BTreeMap<String, String>| (!v.is_empty()).then(|| v.clone());
    let pod_spec = PodSpec {
        containers: vec![container],
        volumes: Some(volumes),
        termination_grace_period_seconds: Some(termination_grace_seconds(nc)?),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS),
            run_as_group: Some(RUN_AS),
            fs_group: Some(RUN_AS),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        image_pull_secrets: (!spec.image_pull_secrets.is_empty())
            .then(|| spec.image_pull_secrets.clone()),
        affinity: pod.affinity.clone(),
        tolerations: (!pod.tolerations.is_empty()).then(|| pod.tolerations.clone()),
        node_selector: non_empty(&pod.node_selector),
        topology_spread_constraints: (!pod.topology_spread_constraints.is_empty())
            .then(|| pod.topology_spread_constraints.clone()),
        service_account_name: pod.service_account_name.clone(),
        ..Default::default()
    };

    let template = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(pod_labels),
            annotations: Some(annotations),
            ..Default::default()
        }),
        spec: Some(pod_spec),
    };
    let mut metadata = meta(nc, &n.statefulset)?;
    metadata.annotations = Some(BTreeMap::from([(
        TEMPLATE_HASH_ANNOTATION.to_string(),
        template_hash(&template),
    )]));
    Ok(StatefulSet {
        metadata,
        spec: Some(StatefulSetSpec {
            replicas: Some(spec.replicas),
            service_name: Some(n.headless.clone()),
            pod_management_policy: Some("Parallel".into()),
            selector: LabelSelector {
                match_labels: Some(selector_labels(nc)),
                ..Default::default()
            },
            template,
            // The reconciler sets the partition (health-gated rolling upgrades).
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateStatefulSetStrategy {
                    partition: Some(0),
                    ..Default::default()
                }),
            }),
            volume_claim_templates: (!claims.is_empty()).then_some(claims),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// sha256 of a pod template's JSON (a change means the pods restart).
pub fn template_hash(t: &PodTemplateSpec) -> String {
    // Serializing a k8s-openapi type cannot fail (no maps with non-string keys).
    let json = serde_json::to_vec(t).unwrap_or_default();
    hex(&Sha256::digest(&json))
}

/// Set the replicas and the rolling update partition of a rendered StatefulSet.
pub fn set_rollout(sts: &mut StatefulSet, replicas: i32, partition: i32) {
    if let Some(spec) = sts.spec.as_mut() {
        spec.replicas = Some(replicas);
        spec.update_strategy = Some(StatefulSetUpdateStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateStatefulSetStrategy {
                partition: Some(partition),
                ..Default::default()
            }),
        });
    }
}

/// The template hash annotation of a (rendered) StatefulSet.
pub fn sts_template_hash(sts: &StatefulSet) -> Option<&str> {
    sts.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(TEMPLATE_HASH_ANNOTATION))
        .map(String::as_str)
}

/// The `prometheus.io/*` pod annotations when `metrics.enabled` (none otherwise).
fn scrape_annotations(nc: &NatsCluster) -> BTreeMap<String, String> {
    if !nc.spec.metrics.enabled {
        return BTreeMap::new();
    }
    BTreeMap::from([
        (SCRAPE_ANNOTATION.to_string(), "true".to_string()),
        (
            SCRAPE_PORT_ANNOTATION.to_string(),
            nc.spec.ports.monitor.to_string(),
        ),
        (SCRAPE_PATH_ANNOTATION.to_string(), METRICS_PATH.to_string()),
    ])
}

/// The Prometheus Operator's `monitoring.coreos.com/v1` PodMonitor.
pub fn pod_monitor_resource() -> ApiResource {
    ApiResource {
        group: "monitoring.coreos.com".into(),
        version: "v1".into(),
        api_version: "monitoring.coreos.com/v1".into(),
        kind: "PodMonitor".into(),
        plural: "podmonitors".into(),
    }
}

/// The PodMonitor scraping the pods' `/metrics` on the monitor port, when `metrics.podMonitor`.
fn pod_monitor(nc: &NatsCluster) -> Result<Option<DynamicObject>, RenderError> {
    let m = &nc.spec.metrics;
    if !m.pod_monitor {
        return Ok(None);
    }
    if !m.enabled {
        return Err(RenderError::InvalidSpec(
            "spec.metrics.podMonitor needs spec.metrics.enabled: true".into(),
        ));
    }
    let n = names(nc)?;
    let mut obj =
        DynamicObject::new(&n.pod_monitor, &pod_monitor_resource()).data(serde_json::json!({
            "spec": {
                "selector": {"matchLabels": selector_labels(nc)},
                "podMetricsEndpoints": [{"port": MONITOR_PORT_NAME, "path": METRICS_PATH}],
            }
        }));
    obj.metadata = meta(nc, &n.pod_monitor)?;
    Ok(Some(obj))
}

fn pdb(nc: &NatsCluster) -> Result<Option<PodDisruptionBudget>, RenderError> {
    let p = &nc.spec.pod_disruption_budget;
    if !p.enabled {
        return Ok(None);
    }
    let n = names(nc)?;
    Ok(Some(PodDisruptionBudget {
        metadata: meta(nc, &n.pdb)?,
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(p.max_unavailable)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(nc)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }))
}

#[cfg(test)]
mod tests;

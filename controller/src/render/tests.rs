use super::*;
use crate::crd::{ListenerTls, NatsCluster, NatsClusterSpec, SecretKeyRef, TlsSpec};

fn cluster(spec: serde_json::Value) -> NatsCluster {
    let spec: NatsClusterSpec = serde_json::from_value(spec).unwrap();
    let mut nc = NatsCluster::new("nats", spec);
    nc.metadata.namespace = Some("prod".into());
    nc.metadata.uid = Some("1234-uid".into());
    nc
}

fn parse(conf: &str) -> natrix_broker::config::Map {
    let env = |k: &str| match k {
        "SERVER_NAME" => Some("nats-0".to_string()),
        "SYSTEM_ACCOUNT" => Some("ADUMMY".to_string()),
        _ => None,
    };
    natrix_broker::config::parser::parse_str(conf, "nats.conf", std::path::Path::new(""), &env)
        .unwrap_or_else(|e| panic!("rendered nats.conf does not parse: {e}\n{conf}"))
}

#[test]
fn default_conf_parses_and_loads_in_the_broker() {
    let r = render(&cluster(serde_json::json!({}))).unwrap();
    let map = parse(&r.conf);
    let mut opts = natrix_broker::options::Options::default();
    natrix_broker::config::apply(&map, &mut opts).unwrap();
    assert_eq!(opts.server_name.as_deref(), Some("nats-0"));
    assert_eq!(opts.port, 4222);
    assert_eq!(opts.http_port, 8222);
    assert!(opts.lame_duck_on_sigterm);
    assert_eq!(
        opts.watch_config,
        Some(natrix_broker::options::WATCH_CONFIG_INTERVAL),
        "brokers reload a changed ConfigMap by themselves"
    );
    assert_eq!(opts.lame_duck_grace_period.as_secs(), 10);
    assert_eq!(opts.lame_duck_duration.as_secs(), 30);
    let c = opts.cluster.unwrap();
    assert_eq!(c.name.as_deref(), Some("nats"));
    assert_eq!(c.port, 6222);
    assert!(c.no_advertise);
    assert_eq!(
        c.routes,
        vec![
            "nats://nats-0.nats-headless:6222",
            "nats://nats-1.nats-headless:6222",
            "nats://nats-2.nats-headless:6222"
        ]
    );
}

#[test]
fn jetstream_resolver_tls_conf_parses() {
    let mut nc = cluster(serde_json::json!({
        "replicas": 5,
        "jetstream": {"enabled": true, "fileStorage": {"size": "20Gi", "storageClassName": "fast"},
                      "memoryStorage": {"maxSize": "1G"}},
        "resolver": {"enabled": true},
        "auth": {"operatorMode": true},
        "config": {"max_payload": 2097152, "cluster": {"connect_retries": 30}, "debug": true},
    }));
    nc.spec.tls = Some(TlsSpec {
        client: Some(ListenerTls {
            secret_name: "client-tls".into(),
            verify: true,
        }),
        cluster: Some(ListenerTls {
            secret_name: "route-tls".into(),
            verify: false,
        }),
        ca: Some(SecretKeyRef {
            secret_name: "ca".into(),
            key: "ca.crt".into(),
        }),
    });
    let r = render(&nc).unwrap();
    let include = format!("include \"{}\"", conf::PRELOAD_INCLUDE);
    assert!(r.conf.contains(&include), "{}", r.conf);
    // The included file comes from the operator Secret (see the operator-mode test below).
    parse(&r.conf.replace(&include, ""));
    let c = &r.conf;
    assert!(c.contains("store_dir: \"/data\""), "{c}");
    assert!(
        c.contains(&format!("max_file_store: {}", 20i64 << 30)),
        "{c}"
    );
    assert!(c.contains("max_memory_store: 1000000000"), "{c}");
    assert!(c.contains("dir: \"/data/resolver\""), "{c}");
    assert!(c.contains("system_account: $SYSTEM_ACCOUNT"), "{c}");
    assert!(
        c.contains("connect_retries: 30"),
        "merged into cluster: {c}"
    );
    assert!(
        c.contains("no_advertise: true"),
        "merge keeps siblings: {c}"
    );
    assert!(c.contains("nats://nats-4.nats-headless:6222"), "{c}");
    assert!(
        c.contains("cert_file: \"/etc/nats/tls/client/tls.crt\""),
        "{c}"
    );
    let sts = r.statefulset.spec.unwrap();
    let claims = sts.volume_claim_templates.unwrap();
    assert_eq!(claims.len(), 2);
    let json = serde_json::to_value(&claims[0]).unwrap();
    assert_eq!(json["apiVersion"], "v1", "Argo CD drift: {json}");
    assert_eq!(json["kind"], "PersistentVolumeClaim");
    assert_eq!(json["spec"]["resources"]["requests"]["storage"], "20Gi");
    assert_eq!(json["spec"]["storageClassName"], "fast");
}

#[test]
fn operator_mode_and_resolver_go_together() {
    let e = render(&cluster(
        serde_json::json!({"auth": {"operatorMode": true}}),
    ))
    .unwrap_err();
    assert!(matches!(e, RenderError::InvalidSpec(_)));
    let e = render(&cluster(serde_json::json!({"resolver": {"enabled": true}}))).unwrap_err();
    assert!(matches!(e, RenderError::InvalidSpec(_)));
}

#[test]
fn every_port_has_a_protocol_and_client_service_hides_monitoring() {
    let r = render(&cluster(serde_json::json!({}))).unwrap();
    for svc in [&r.headless_service, &r.client_service] {
        for p in svc.spec.as_ref().unwrap().ports.as_ref().unwrap() {
            assert_eq!(p.protocol.as_deref(), Some("TCP"), "{p:?}");
        }
    }
    let sts = r.statefulset.spec.as_ref().unwrap();
    let pod = sts.template.spec.as_ref().unwrap();
    for p in pod.containers[0].ports.as_ref().unwrap() {
        assert_eq!(p.protocol.as_deref(), Some("TCP"), "{p:?}");
    }
    let client_ports: Vec<_> = r
        .client_service
        .spec
        .as_ref()
        .unwrap()
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .map(|p| p.port)
        .collect();
    assert_eq!(client_ports, vec![4222]);
    let h = r.headless_service.spec.as_ref().unwrap();
    assert_eq!(h.cluster_ip.as_deref(), Some("None"));
    assert_eq!(h.publish_not_ready_addresses, Some(true));
    assert_eq!(h.ports.as_ref().unwrap().len(), 3);
}

#[test]
fn statefulset_shape() {
    let r = render(&cluster(serde_json::json!({
        "replicas": 3,
        "lameDuck": {"gracePeriod": "15s", "duration": "1m"},
        "image": {"repository": "example/natrix", "tag": "1.2.3", "pullPolicy": "IfNotPresent"},
    })))
    .unwrap();
    let sts = r.statefulset.spec.as_ref().unwrap();
    assert_eq!(sts.replicas, Some(3));
    assert_eq!(sts.pod_management_policy.as_deref(), Some("Parallel"));
    assert_eq!(sts.service_name.as_deref(), Some("nats-headless"));
    assert!(sts.volume_claim_templates.is_none());
    let tmpl = &sts.template;
    let ann = tmpl
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .as_ref()
        .unwrap();
    assert_eq!(ann[CONFIG_HASH_ANNOTATION], r.config_hash);
    let pod = tmpl.spec.as_ref().unwrap();
    assert_eq!(pod.termination_grace_period_seconds, Some(15 + 60 + 20));
    let psc = pod.security_context.as_ref().unwrap();
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(psc.run_as_user, Some(RUN_AS));
    let c = &pod.containers[0];
    assert_eq!(c.image.as_deref(), Some("example/natrix:1.2.3"));
    assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
    assert_eq!(
        c.command.as_ref().unwrap(),
        &vec!["natrix-broker".to_string()]
    );
    assert_eq!(
        c.args.as_ref().unwrap(),
        &vec!["-c".to_string(), "/etc/nats/nats.conf".into()]
    );
    assert!(
        c.lifecycle.is_none(),
        "no preStop: lame_duck_on_sigterm does it"
    );
    let path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        let p = p.as_ref().unwrap();
        (
            p.http_get.as_ref().unwrap().path.clone().unwrap(),
            p.period_seconds,
            p.failure_threshold,
        )
    };
    assert_eq!(
        path(&c.startup_probe),
        ("/healthz".into(), Some(10), Some(90))
    );
    assert_eq!(
        path(&c.readiness_probe),
        ("/healthz?js-server-only=true".into(), Some(10), Some(3))
    );
    assert_eq!(
        path(&c.liveness_probe),
        ("/healthz?js-enabled-only=true".into(), Some(30), Some(3))
    );
    assert_eq!(
        c.security_context
            .as_ref()
            .unwrap()
            .allow_privilege_escalation,
        Some(false)
    );
    assert!(r.conf.contains("lame_duck_on_sigterm: true"));
}

#[test]
fn owner_references_on_everything_and_pdb() {
    let r = render(&cluster(
        serde_json::json!({"podDisruptionBudget": {"maxUnavailable": 2}}),
    ))
    .unwrap();
    let pdb = r.pdb.clone().unwrap();
    assert_eq!(
        pdb.spec.as_ref().unwrap().max_unavailable,
        Some(IntOrString::Int(2))
    );
    let metas = [
        &r.config_map.metadata,
        &r.headless_service.metadata,
        &r.client_service.metadata,
        &r.statefulset.metadata,
        &pdb.metadata,
    ];
    for m in metas {
        let o = &m.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (o.kind.as_str(), o.name.as_str(), o.uid.as_str()),
            ("NatsCluster", "nats", "1234-uid")
        );
        assert_eq!(o.controller, Some(true));
        assert_eq!(m.namespace.as_deref(), Some("prod"));
    }
    assert_eq!(r.config_map.data.as_ref().unwrap()[CONF_KEY], r.conf);
    let default = render(&cluster(serde_json::json!({}))).unwrap();
    assert_eq!(
        default.pdb.unwrap().spec.unwrap().max_unavailable,
        Some(IntOrString::Int(1))
    );
    let off = render(&cluster(
        serde_json::json!({"podDisruptionBudget": {"enabled": false}}),
    ))
    .unwrap();
    assert!(off.pdb.is_none());
    let mut no_uid = cluster(serde_json::json!({}));
    no_uid.metadata.uid = None;
    assert_eq!(
        render(&no_uid).unwrap_err(),
        RenderError::MissingMetadata("uid")
    );
}

#[test]
fn config_hash_ignores_reloadable_changes() {
    let base = render(&cluster(serde_json::json!({}))).unwrap();
    let reload = render(&cluster(
        serde_json::json!({"config": {"max_payload": 1024, "debug": true}}),
    ))
    .unwrap();
    assert_ne!(base.conf, reload.conf);
    assert_eq!(base.config_hash, reload.config_hash);
    let restart = render(&cluster(serde_json::json!({"ports": {"client": 4333}}))).unwrap();
    assert_ne!(base.config_hash, restart.config_hash);
    // Scaling changes only the routes, which the brokers reload; a cluster port does not.
    let scaled = render(&cluster(serde_json::json!({"replicas": 5}))).unwrap();
    assert_ne!(base.conf, scaled.conf);
    assert_eq!(base.config_hash, scaled.config_hash);
    let port = render(&cluster(serde_json::json!({"ports": {"cluster": 7222}}))).unwrap();
    assert_ne!(base.config_hash, port.config_hash);
}

#[test]
fn config_strings_with_dollar_are_variables_and_quotes_escape() {
    let r = render(&cluster(
        serde_json::json!({"config": {"server_tags": ["a\"b", "$SERVER_NAME"]}}),
    ))
    .unwrap();
    parse(&r.conf);
    assert!(r.conf.contains("\"a\\\"b\""), "{}", r.conf);
    assert!(r.conf.contains("  $SERVER_NAME\n"), "{}", r.conf);
}

#[test]
fn operator_mode_conf_loads_with_the_operator_secret() {
    let nc = cluster(serde_json::json!({
        "resolver": {"enabled": true, "storage": {"size": "2Gi"}},
        "auth": {"operatorMode": true},
    }));
    let r = render(&nc).unwrap();
    // The Secret's files where the pods mount them (the conf dir's operator/), and no
    // JWT or seed in the ConfigMap.
    let secret = crate::auth::new_operator_secret("nats", "SYS").unwrap();
    for v in secret.values() {
        assert!(!r.conf.contains(v.trim()), "Secret data in nats.conf");
    }
    let dir = std::env::temp_dir().join(format!("natrix-render-op-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("operator")).unwrap();
    for (k, v) in &secret {
        std::fs::write(dir.join("operator").join(k), v).unwrap();
    }
    let conf = r.conf.replace(
        conf::OPERATOR_JWT,
        &dir.join("operator/operator.jwt").display().to_string(),
    );
    let sys = secret[crate::auth::SYSTEM_ACCOUNT_KEY].clone();
    let env = |k: &str| match k {
        "SERVER_NAME" => Some("nats-0".to_string()),
        "SYSTEM_ACCOUNT" => Some(sys.clone()),
        _ => None,
    };
    let map = natrix_broker::config::parser::parse_str(&conf, "nats.conf", &dir, &env)
        .unwrap_or_else(|e| panic!("rendered nats.conf does not parse: {e}\n{conf}"));
    let mut opts = natrix_broker::options::Options::default();
    natrix_broker::config::apply(&map, &mut opts).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(opts.trusted_operators.len(), 1);
    assert_eq!(opts.system_account.as_deref(), Some(sys.as_str()));
    let res = opts.full_resolver.expect("full resolver");
    assert_eq!(res.dir, std::path::PathBuf::from(conf::RESOLVER_DIR));
    assert!(res.allow_delete);
    assert_eq!(
        opts.resolver_preload,
        vec![(sys, secret[crate::auth::SYSTEM_ACCOUNT_JWT_KEY].clone())]
    );
    // The pods get only the JWT and the preload fragment of the Secret, and the resolver PVC.
    let sts = r.statefulset.spec.unwrap();
    let pod = sts.template.spec.unwrap();
    let vol = pod
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == "operator")
        .unwrap();
    let items: Vec<String> = vol
        .secret
        .unwrap()
        .items
        .unwrap()
        .into_iter()
        .map(|i| i.key)
        .collect();
    assert_eq!(items, vec!["operator.jwt", "resolver-preload.conf"]);
    let claims = sts.volume_claim_templates.unwrap();
    let json = serde_json::to_value(&claims[0]).unwrap();
    assert_eq!(json["metadata"]["name"], "resolver");
    assert_eq!(json["spec"]["resources"]["requests"]["storage"], "2Gi");
}

#[test]
fn template_hash_changes_only_with_the_pod_template() {
    let hash = |v: serde_json::Value| {
        let r = render(&cluster(v)).unwrap();
        let sts = &r.statefulset;
        let h = sts_template_hash(sts).unwrap().to_string();
        assert_eq!(h, template_hash(&sts.spec.as_ref().unwrap().template));
        let u = sts.spec.as_ref().unwrap().update_strategy.as_ref().unwrap();
        assert_eq!(u.type_.as_deref(), Some("RollingUpdate"));
        assert_eq!(u.rolling_update.as_ref().unwrap().partition, Some(0));
        h
    };
    let base = hash(serde_json::json!({"image": {"tag": "1.0.0"}}));
    assert_eq!(base.len(), 64);
    // Same spec, same hash.
    assert_eq!(base, hash(serde_json::json!({"image": {"tag": "1.0.0"}})));
    // A new image restarts the pods.
    assert_ne!(base, hash(serde_json::json!({"image": {"tag": "1.1.0"}})));
    // The PodDisruptionBudget is not in the template; the lame duck timing is.
    assert_eq!(
        base,
        hash(
            serde_json::json!({"image": {"tag": "1.0.0"}, "podDisruptionBudget": {"enabled": false}})
        )
    );
    assert_ne!(
        base,
        hash(serde_json::json!({"image": {"tag": "1.0.0"}, "lameDuck": {"duration": "1m"}}))
    );
    let mut sts = render(&cluster(serde_json::json!({}))).unwrap().statefulset;
    set_rollout(&mut sts, 4, 2);
    let spec = sts.spec.unwrap();
    assert_eq!(spec.replicas, Some(4));
    assert_eq!(
        spec.update_strategy
            .unwrap()
            .rolling_update
            .unwrap()
            .partition,
        Some(2)
    );
}

fn pod_annotations(r: &Rendered) -> BTreeMap<String, String> {
    r.statefulset
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .clone()
        .unwrap()
}

#[test]
fn metrics_scrape_annotations_by_default_and_off_when_disabled() {
    let r = render(&cluster(serde_json::json!({"ports": {"monitor": 9222}}))).unwrap();
    let ann = pod_annotations(&r);
    assert_eq!(ann[SCRAPE_ANNOTATION], "true");
    assert_eq!(ann[SCRAPE_PORT_ANNOTATION], "9222");
    assert_eq!(ann[SCRAPE_PATH_ANNOTATION], "/metrics");
    assert_eq!(METRICS_PATH, natrix_broker::monitor::METRICS_PATH);
    // The port the annotations name is the container's monitor port.
    let c = &r
        .statefulset
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    let monitor = c
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .find(|p| p.name.as_deref() == Some(MONITOR_PORT_NAME))
        .unwrap();
    assert_eq!(monitor.container_port, 9222);
    assert!(r.pod_monitor.is_none(), "no PodMonitor unless asked for");

    let off = render(&cluster(serde_json::json!({"metrics": {"enabled": false}}))).unwrap();
    let ann = pod_annotations(&off);
    assert!(
        !ann.keys().any(|k| k.starts_with("prometheus.io/")),
        "{ann:?}"
    );
    assert_eq!(ann[CONFIG_HASH_ANNOTATION], off.config_hash);
    // Toggling the annotations changes the pod template, not the restart-only config.
    let on = render(&cluster(serde_json::json!({}))).unwrap();
    assert_eq!(off.config_hash, on.config_hash);
    assert_ne!(
        sts_template_hash(&off.statefulset),
        sts_template_hash(&on.statefulset)
    );

    // The user's pod annotations win over ours.
    let own = render(&cluster(serde_json::json!({
        "pod": {"annotations": {"prometheus.io/scrape": "false", "team": "a"}}
    })))
    .unwrap();
    let ann = pod_annotations(&own);
    assert_eq!(ann[SCRAPE_ANNOTATION], "false");
    assert_eq!(ann["team"], "a");
    assert_eq!(ann[SCRAPE_PATH_ANNOTATION], "/metrics");
}

#[test]
fn pod_monitor_selects_the_pods_and_scrapes_the_monitor_port() {
    let r = render(&cluster(
        serde_json::json!({"metrics": {"podMonitor": true}}),
    ))
    .unwrap();
    let pm = r.pod_monitor.clone().unwrap();
    let v = serde_json::to_value(&pm).unwrap();
    assert_eq!(v["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(v["kind"], "PodMonitor");
    assert_eq!(v["metadata"]["name"], "nats");
    assert_eq!(v["metadata"]["namespace"], "prod");
    let o = &v["metadata"]["ownerReferences"][0];
    assert_eq!(
        (&o["kind"], &o["name"], &o["uid"], &o["controller"]),
        (
            &serde_json::json!("NatsCluster"),
            &serde_json::json!("nats"),
            &serde_json::json!("1234-uid"),
            &serde_json::json!(true)
        )
    );
    // The selector is exactly the StatefulSet's: the pods' labels.
    let sts_selector =
        serde_json::to_value(&r.statefulset.spec.as_ref().unwrap().selector.match_labels).unwrap();
    assert_eq!(v["spec"]["selector"]["matchLabels"], sts_selector);
    let pod_labels = r
        .statefulset
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap();
    for (k, val) in v["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(
            Some(val.as_str().unwrap()),
            pod_labels.get(k).map(String::as_str)
        );
    }
    assert_eq!(
        v["spec"]["podMetricsEndpoints"],
        serde_json::json!([{"port": "monitor", "path": "/metrics"}])
    );
    let ar = pod_monitor_resource();
    assert_eq!(
        (ar.group.as_str(), ar.version.as_str(), ar.plural.as_str()),
        ("monitoring.coreos.com", "v1", "podmonitors")
    );

    // podMonitor without the metrics: refused (the CRD's CEL rule says so too).
    let e = render(&cluster(
        serde_json::json!({"metrics": {"enabled": false, "podMonitor": true}}),
    ))
    .unwrap_err();
    assert!(
        matches!(&e, RenderError::InvalidSpec(m) if m.contains("metrics.enabled")),
        "{e}"
    );
}

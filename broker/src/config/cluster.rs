//! The `cluster { ... }` block: routes to the other servers of a cluster.

use super::read::{bad, get_bool, get_int, get_str, split_host_port, type_err, unknown};
use super::value::{Entry, Kind};
use super::ConfigError;
use crate::options::ClusterOptions;

/// Keys of `cluster` nats-server knows that this broker does not implement: an error, never
/// silently ignored.
const CLUSTER_NOT_SUPPORTED: &[&str] = &[
    "pool_size",
    "accounts",
    "compression",
    "connect_backoff",
    "ping_interval",
    "ping_max",
    "write_deadline",
    "write_timeout",
];

/// Parses `cluster { ... }`; unknown keys are errors, as in nats-server.
pub(super) fn cluster(e: &Entry) -> Result<ClusterOptions, ConfigError> {
    let Kind::Map(m) = &e.value.kind else {
        return Err(type_err(e, "map"));
    };
    let mut c = ClusterOptions {
        host: "0.0.0.0".into(),
        ..ClusterOptions::default()
    };
    for f in &m.entries {
        match f.key.to_lowercase().as_str() {
            "name" => {
                let n = get_str(f)?;
                if n.contains(' ') {
                    return Err(bad(f, "cluster name cannot contain spaces or new lines"));
                }
                c.name = Some(n);
            }
            "listen" => {
                let s = match &f.value.kind {
                    Kind::Int(p) => format!(":{p}"),
                    Kind::String(s) => s.clone(),
                    _ => return Err(type_err(f, "host:port")),
                };
                let (h, p) = split_host_port(&s)
                    .map_err(|_| bad(f, format!("could not parse address string {s:?}")))?;
                if !h.is_empty() {
                    c.host = h;
                }
                c.port = p
                    .parse()
                    .map_err(|_| bad(f, format!("could not parse port {p:?}")))?;
            }
            "host" | "net" => c.host = get_str(f)?,
            "port" => {
                c.port = i32::try_from(get_int(f)?).map_err(|_| bad(f, "port out of range"))?
            }
            "routes" => {
                let Kind::Array(a) = &f.value.kind else {
                    return Err(type_err(f, "array of route URLs"));
                };
                for v in a {
                    match &v.kind {
                        Kind::String(s) => c.routes.push(s.clone()),
                        _ => return Err(type_err(f, "array of route URLs")),
                    }
                }
            }
            "advertise" | "cluster_advertise" => c.advertise = Some(get_str(f)?),
            "authorization" => {
                let Kind::Map(a) = &f.value.kind else {
                    return Err(type_err(f, "map"));
                };
                let mut auth = crate::options::RouteAuth::default();
                for k in &a.entries {
                    match k.key.to_lowercase().as_str() {
                        "user" | "username" => auth.user = get_str(k)?,
                        "password" | "pass" => auth.password = get_str(k)?,
                        // Routes authenticate on CONNECT right away; nothing to wait for.
                        "timeout" => {}
                        // As nats-server: routes present a user and password only.
                        "token" | "auth_token" => {
                            return Err(bad(f, "Cluster authorization does not support tokens"))
                        }
                        _ => {
                            return Err(ConfigError::Unsupported {
                                pos: k.key_pos.clone(),
                                key: format!("cluster.authorization.{}", k.key),
                            })
                        }
                    }
                }
                c.auth = Some(auth);
            }
            "tls" => {
                let t = super::tls_block::cluster_tls(f)?;
                if t.ca_file.is_none() {
                    return Err(bad(
                        f,
                        "cluster tls requires ca_file: routes verify each other's certificates (system roots are not used)",
                    ));
                }
                if t.cert_file.as_os_str().is_empty() {
                    return Err(bad(f, "missing 'cert_file' in TLS configuration"));
                }
                c.tls = Some(t);
            }
            "no_advertise" => c.no_advertise = get_bool(f)?,
            "permissions" => c.permissions = Some(route_permissions(f)?),
            "connect_retries" => {
                c.connect_retries =
                    i32::try_from(get_int(f)?).map_err(|_| bad(f, "value out of range"))?
            }
            k if CLUSTER_NOT_SUPPORTED.contains(&k) => {
                return Err(ConfigError::Unsupported {
                    pos: f.key_pos.clone(),
                    key: format!("cluster.{}", f.key),
                })
            }
            _ => return Err(unknown(f)),
        }
    }
    Ok(c)
}

/// `cluster { permissions { import, export } }`, kept as publish (import) and subscribe
/// (export) permissions as nats-server keeps them.
fn route_permissions(e: &Entry) -> Result<crate::options::Permissions, ConfigError> {
    let Kind::Map(m) = &e.value.kind else {
        return Err(type_err(e, "map"));
    };
    let mut p = crate::options::Permissions::default();
    for f in &m.entries {
        match f.key.to_lowercase().as_str() {
            // nats-server also takes the user-permission names.
            "import" | "publish" | "pub" => p.publish = super::security::subject_permission(f)?,
            "export" | "subscribe" | "sub" => p.subscribe = super::security::subject_permission(f)?,
            "allow_responses" | "allow_responses_map" => {
                return Err(bad(
                    e,
                    "Cluster permissions do not support dynamic responses",
                ))
            }
            _ => {
                return Err(bad(
                    f,
                    format!("Unknown field {:?} parsing permissions", f.key),
                ))
            }
        }
    }
    Ok(p)
}

/// Parses a route URL (`nats-route://host:port`, `nats://host:port`, or `host:port`) into
/// `host:port`.
pub fn route_host_port(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let rest = rest.trim_end_matches('/');
    split_host_port(rest).ok()?;
    Some(rest.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_urls() {
        assert_eq!(
            route_host_port("nats-route://127.0.0.1:6222/").as_deref(),
            Some("127.0.0.1:6222")
        );
        assert_eq!(route_host_port("nats://u:p@h:1").as_deref(), Some("h:1"));
        assert_eq!(route_host_port("nats://h"), None);
    }

    #[test]
    fn cluster_block() {
        let conf = r#"cluster { name: c1, listen: "127.0.0.1:6222", routes: ["nats://a:6222"], no_advertise: true }"#;
        let map = crate::config::parser::parse_str(conf, "", std::path::Path::new("."), &|_| None)
            .unwrap();
        let mut o = crate::options::Options::default();
        crate::config::apply(&map, &mut o).unwrap();
        let c = o.cluster.unwrap();
        assert_eq!(c.name.as_deref(), Some("c1"));
        assert_eq!((c.host.as_str(), c.port), ("127.0.0.1", 6222));
        assert_eq!(c.routes, vec!["nats://a:6222".to_string()]);
        assert!(c.no_advertise);
        let map = crate::config::parser::parse_str(
            "cluster { port: 1, pool_size: 3 }",
            "",
            std::path::Path::new("."),
            &|_| None,
        )
        .unwrap();
        let err = crate::config::apply(&map, &mut crate::options::Options::default());
        assert!(err.is_err());
        // nats-server's wording, at the authorization block.
        let map = crate::config::parser::parse_str(
            "cluster { port: 1, authorization { token: abc } }",
            "",
            std::path::Path::new("."),
            &|_| None,
        )
        .unwrap();
        let err = crate::config::apply(&map, &mut crate::options::Options::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with("1:20: Cluster authorization does not support tokens"),
            "{err}"
        );
    }
}

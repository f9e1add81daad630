//! `watch_config` (ours): notices that the configuration on disk changed — the config file,
//! the files it includes, the TLS certificates, keys and CAs it names — so the server can
//! reload without a signal. In Kubernetes a mounted ConfigMap or Secret changes by an atomic
//! symlink swap, which is why this compares contents rather than watching inodes.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::Path;

use crate::options::{Options, TlsOptions};

/// A digest of everything a reload would read: the config file parsed with its includes
/// (or the parse error, so a broken file is reported once, not on every poll), and the
/// contents of the TLS files the running options name.
pub fn fingerprint(config_file: &Path, opts: &Options) -> u64 {
    let mut h = DefaultHasher::new();
    match crate::config::parse_file(config_file) {
        Ok(map) => format!("{map:?}").hash(&mut h),
        Err(e) => e.to_string().hash(&mut h),
    }
    let tls = [
        opts.tls.as_ref(),
        opts.cluster.as_ref().and_then(|c| c.tls.as_ref()),
    ];
    for t in tls.into_iter().flatten() {
        hash_tls_files(t, &mut h);
    }
    h.finish()
}

fn hash_tls_files(t: &TlsOptions, h: &mut DefaultHasher) {
    for p in [Some(&t.cert_file), Some(&t.key_file), t.ca_file.as_ref()]
        .into_iter()
        .flatten()
    {
        std::fs::read(p).unwrap_or_default().hash(h);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn temp(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!(
            "natrix-watch-{tag}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn changes_in_the_file_its_includes_and_tls_files_show() {
        let d = temp("fp");
        let conf = d.join("nats.conf");
        let inc = d.join("users.conf");
        std::fs::write(&inc, "authorization { token: a }\n").unwrap();
        std::fs::write(&conf, "port: 4222\ninclude ./users.conf\n").unwrap();
        let mut opts = Options::default();
        let a = fingerprint(&conf, &opts);
        assert_eq!(a, fingerprint(&conf, &opts), "stable while nothing changes");
        std::fs::write(&inc, "authorization { token: b }\n").unwrap();
        let c = fingerprint(&conf, &opts);
        assert_ne!(a, c, "an included file changed");
        std::fs::write(&conf, "port: 4222\ninclude ./users.conf\n}}}\n").unwrap();
        let broken = fingerprint(&conf, &opts);
        assert_ne!(c, broken);
        assert_eq!(
            broken,
            fingerprint(&conf, &opts),
            "a broken file is one state"
        );
        let cert = d.join("cert.pem");
        std::fs::write(&cert, "one").unwrap();
        opts.tls = Some(TlsOptions {
            cert_file: cert.clone(),
            key_file: cert.clone(),
            ca_file: None,
            verify: false,
            verify_and_map: false,
            timeout: Duration::from_secs(2),
            handshake_first: false,
            handshake_first_fallback: None,
            cipher_suites: Vec::new(),
            curve_preferences: Vec::new(),
            insecure: false,
            certs: Vec::new(),
        });
        let t1 = fingerprint(&conf, &opts);
        std::fs::write(&cert, "two").unwrap();
        assert_ne!(t1, fingerprint(&conf, &opts), "a rotated certificate");
        let _ = std::fs::remove_dir_all(&d);
    }
}

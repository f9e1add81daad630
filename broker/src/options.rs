//! Server options: what the config file and the command line resolve to.

use std::path::PathBuf;
use std::time::Duration;

/// Every setting the broker runs with; defaults are nats-server's.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Path of the config file this came from, if any.
    pub config_file: Option<PathBuf>,
    pub server_name: Option<String>,
    /// Client listen host (`listen`/`host`/`-a`).
    pub host: String,
    /// Client port; 0 or -1 (RANDOM_PORT) picks an ephemeral port.
    pub port: i32,
    /// `client_advertise`: host:port given to clients in `connect_urls`.
    pub client_advertise: Option<String>,
    /// Monitoring host (`http: host:port` or `http_host`).
    pub http_host: String,
    /// Monitoring port; 0 means disabled, -1 random.
    pub http_port: i32,
    pub https_port: i32,
    pub http_base_path: String,
    pub max_payload: i32,
    pub max_pending: i64,
    pub max_control_line: i32,
    pub max_connections: i32,
    /// 0 means unlimited.
    pub max_subscriptions: i32,
    pub ping_interval: Duration,
    pub ping_max: i32,
    pub write_deadline: Duration,
    /// Placeholder until auth lands; kept so `/varz` reports it.
    pub auth_timeout: Duration,
    pub debug: bool,
    pub trace: bool,
    pub trace_verbose: bool,
    pub logtime: bool,
    pub log_file: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub ports_file_dir: Option<PathBuf>,
    pub no_header_support: bool,
    pub lame_duck_duration: Duration,
    pub lame_duck_grace_period: Duration,
    /// Only with `-t`: check the config and exit.
    pub check_config: bool,
}

impl Options {
    /// Cross-option checks nats-server makes before it starts; the message is nats-server's.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_payload as i64 > self.max_pending {
            return Err(format!(
                "max_payload ({}) cannot be higher than max_pending ({})",
                self.max_payload, self.max_pending
            ));
        }
        if self.max_payload < 0 {
            return Err(format!(
                "max_payload ({}) cannot be negative",
                self.max_payload
            ));
        }
        Ok(())
    }
}

/// nats-server's RANDOM_PORT sentinel.
pub const RANDOM_PORT: i32 = -1;

impl Default for Options {
    fn default() -> Self {
        Options {
            config_file: None,
            server_name: None,
            host: "0.0.0.0".into(),
            port: 4222,
            client_advertise: None,
            http_host: "0.0.0.0".into(),
            http_port: 0,
            https_port: 0,
            http_base_path: String::new(),
            max_payload: 1024 * 1024,
            max_pending: 64 * 1024 * 1024,
            max_control_line: 4096,
            max_connections: 64 * 1024,
            max_subscriptions: 0,
            ping_interval: Duration::from_secs(120),
            ping_max: 2,
            write_deadline: Duration::from_secs(10),
            auth_timeout: Duration::from_secs(2),
            debug: false,
            trace: false,
            trace_verbose: false,
            logtime: true,
            log_file: None,
            pid_file: None,
            ports_file_dir: None,
            no_header_support: false,
            lame_duck_duration: Duration::from_secs(120),
            lame_duck_grace_period: Duration::from_secs(10),
            check_config: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_payload_must_fit_in_max_pending() {
        assert!(Options::default().validate().is_ok());
        let o = Options {
            max_pending: 1000,
            max_payload: 2000,
            ..Options::default()
        };
        assert_eq!(
            o.validate().unwrap_err(),
            "max_payload (2000) cannot be higher than max_pending (1000)"
        );
    }
}

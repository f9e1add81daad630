//! The INFO message the server sends to clients, and the CONNECT message it receives.

use serde::{Deserialize, Serialize};

/// Fields of `INFO`, in nats-server's order; optional ones are omitted when unset.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Info {
    pub server_id: String,
    pub server_name: String,
    pub version: String,
    pub proto: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git_commit: Option<String>,
    pub go: String,
    pub host: String,
    pub port: u16,
    #[serde(default)]
    pub headers: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_required: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_required: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_verify: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_available: Option<bool>,
    pub max_payload: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jetstream: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub connect_urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ldm: Option<bool>,
    /// nats-server's API level; clients use it to gate JetStream features.
    pub api_lvl: i32,
}

impl Info {
    /// `INFO {...}\r\n` with this client's id and address filled in.
    pub fn encode_for(
        &self,
        client_id: u64,
        client_ip: &str,
        ldm: bool,
        nonce: Option<&str>,
    ) -> Vec<u8> {
        let mut info = self.clone();
        info.nonce = nonce.map(str::to_string);
        info.client_id = Some(client_id);
        info.client_ip = Some(client_ip.to_string());
        if ldm {
            info.ldm = Some(true);
        }
        let mut out = b"INFO ".to_vec();
        serde_json::to_writer(&mut out, &info).expect("INFO serializes");
        out.extend_from_slice(b" \r\n");
        out
    }
}

/// The fields of `CONNECT` this server acts on; unknown fields are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct ConnectInfo {
    /// nats-server defaults verbose and pedantic to true when CONNECT leaves them out.
    #[serde(default = "yes")]
    pub verbose: bool,
    #[serde(default = "yes")]
    pub pedantic: bool,
    #[serde(default)]
    pub tls_required: bool,
    #[serde(default)]
    pub auth_token: Option<String>,
    pub user: Option<String>,
    pub pass: Option<String>,
    pub name: Option<String>,
    pub lang: Option<String>,
    pub version: Option<String>,
    #[serde(default)]
    pub protocol: i32,
    #[serde(default = "yes")]
    pub echo: bool,
    #[serde(default)]
    pub headers: bool,
    #[serde(default)]
    pub no_responders: bool,
    pub sig: Option<String>,
    pub jwt: Option<String>,
    pub nkey: Option<String>,
}

fn yes() -> bool {
    true
}

impl Default for ConnectInfo {
    /// What an empty `CONNECT {}` means.
    fn default() -> Self {
        serde_json::from_str("{}").expect("empty CONNECT parses")
    }
}

//! `/accountz` and `/accstatz`: per-account detail (with nats-server's `ExtImport`/`ExtExport`
//! shapes for the configured imports and exports) and per-account traffic counters.
//!
//! Differences from nats-server: the system account has no internal `$SYS.REQ.*` service
//! imports/exports yet, so they are not listed; exports and imports come in configuration
//! order (services, then streams; stream imports, then service imports) where nats-server
//! iterates Go maps; `num_subscriptions` counts only the clients' subscriptions.

use std::sync::atomic::Ordering;

use serde::Serialize;

use crate::accounts::Account;
use crate::clock::go_float;
use crate::log::rfc3339;
use crate::options::{AccountConfig, Export, Import, ResponseType};
use crate::server::Server;

/// `/accountz`: the account names, or with `acc=` one account's detail.
#[derive(Debug, Serialize)]
pub struct Accountz {
    pub server_id: String,
    pub now: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub system_account: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accounts: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_detail: Option<AccountInfo>,
}

/// nats-server's `AccountInfo` (the fields Natrix can have).
#[derive(Debug, Serialize)]
pub struct AccountInfo {
    pub account_name: String,
    pub update_time: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub is_system: bool,
    pub expired: bool,
    pub complete: bool,
    pub jetstream_enabled: bool,
    pub leafnode_connections: u64,
    pub client_connections: u64,
    pub subscriptions: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exports: Vec<ExtExport>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub imports: Vec<ExtImport>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name_tag: String,
    pub sublist_stats: SublistStatsJson,
}

/// An export as nats-server shows it (`jwt.Export` plus `approved_accounts`).
#[derive(Debug, Serialize)]
pub struct ExtExport {
    pub subject: String,
    /// `"stream"` or `"service"`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `Singleton`, `Streamed` or `Chunked` for services.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub approved_accounts: Vec<String>,
}

/// An import as nats-server shows it (`jwt.Import` plus `invalid`, `share`, `tracking`).
#[derive(Debug, Serialize)]
pub struct ExtImport {
    /// The subject in the exporting account.
    pub subject: String,
    pub account: String,
    /// Deprecated duplicate of `local_subject`, set for service imports only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The subject in the importing account.
    pub local_subject: String,
    /// `"stream"` or `"service"`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub invalid: bool,
    pub share: bool,
    pub tracking: bool,
}

/// `SublistStats` with Go float formatting.
#[derive(Debug, Serialize)]
pub struct SublistStatsJson {
    pub num_subscriptions: u32,
    pub num_cache: u32,
    pub num_inserts: u64,
    pub num_removes: u64,
    pub num_matches: u64,
    #[serde(serialize_with = "go_float")]
    pub cache_hit_rate: f64,
    pub max_fanout: u32,
    #[serde(serialize_with = "go_float")]
    pub avg_fanout: f64,
}

/// `/accstatz`.
#[derive(Debug, Serialize)]
pub struct AccountStatz {
    pub server_id: String,
    pub now: String,
    pub account_statz: Vec<AccountStat>,
}

/// One account's counters in `/accstatz`.
#[derive(Debug, Serialize)]
pub struct AccountStat {
    pub acc: String,
    pub name: String,
    pub conns: u64,
    pub leafnodes: u64,
    pub total_conns: u64,
    pub num_subscriptions: u64,
    pub sent: DataStats,
    pub received: DataStats,
    pub slow_consumers: u64,
}

/// Messages and bytes, with the per-kind breakdown nats-server adds (always zero here: no
/// gateways, routes or leaf nodes).
#[derive(Debug, Default, Serialize)]
pub struct DataStats {
    pub msgs: u64,
    pub bytes: u64,
    pub gateways: MsgBytes,
    pub routes: MsgBytes,
    pub leafs: MsgBytes,
}

/// A message and byte count.
#[derive(Debug, Default, Serialize)]
pub struct MsgBytes {
    pub msgs: u64,
    pub bytes: u64,
}

fn response_type_name(r: ResponseType) -> &'static str {
    match r {
        ResponseType::Singleton => "Singleton",
        ResponseType::Stream => "Streamed",
        ResponseType::Chunked => "Chunked",
    }
}

/// The configured exports of an account, services first, as nats-server lists them.
fn exports(cfg: &AccountConfig) -> Vec<ExtExport> {
    let services = cfg.exports.iter().filter_map(|e| match e {
        Export::Service {
            subject,
            accounts,
            response_type,
        } => Some(ExtExport {
            subject: subject.clone(),
            kind: "service",
            response_type: Some(response_type_name(*response_type)),
            approved_accounts: accounts.clone(),
        }),
        Export::Stream { .. } => None,
    });
    let streams = cfg.exports.iter().filter_map(|e| match e {
        Export::Stream { subject, accounts } => Some(ExtExport {
            subject: subject.clone(),
            kind: "stream",
            response_type: None,
            approved_accounts: accounts.clone(),
        }),
        Export::Service { .. } => None,
    });
    services.chain(streams).collect()
}

/// The configured imports of an account, streams first, as nats-server lists them.
fn imports(cfg: &AccountConfig) -> Vec<ExtImport> {
    let streams = cfg.imports.iter().filter_map(|i| match i {
        Import::Stream {
            account,
            subject,
            to,
            prefix,
        } => Some(ExtImport {
            subject: subject.clone(),
            account: account.clone(),
            to: None,
            local_subject: match (prefix, to) {
                (Some(p), _) => format!("{p}.{subject}"),
                (None, Some(to)) => to.clone(),
                (None, None) => subject.clone(),
            },
            kind: "stream",
            invalid: false,
            share: false,
            tracking: false,
        }),
        Import::Service { .. } => None,
    });
    let services = cfg.imports.iter().filter_map(|i| match i {
        Import::Service {
            account,
            subject,
            to,
        } => {
            let local = to.clone().unwrap_or_else(|| subject.clone());
            Some(ExtImport {
                subject: subject.clone(),
                account: account.clone(),
                to: Some(local.clone()),
                local_subject: local,
                kind: "service",
                invalid: false,
                share: false,
                tracking: false,
            })
        }
        Import::Stream { .. } => None,
    });
    streams.chain(services).collect()
}

impl Server {
    /// `/accountz`; `Err` carries nats-server's 400 text for an unknown account.
    pub fn accountz(&self, acc: &str, now: String) -> Result<Accountz, String> {
        let mut doc = Accountz {
            server_id: self.server_id.clone(),
            now,
            system_account: self.system_account.name.clone(),
            accounts: None,
            account_detail: None,
        };
        let mut accounts = self.accounts();
        if acc.is_empty() {
            accounts.sort_by(|a, b| a.name.cmp(&b.name));
            doc.accounts = Some(accounts.iter().map(|a| a.name.clone()).collect());
            return Ok(doc);
        }
        let Some(a) = accounts.into_iter().find(|a| a.name == acc) else {
            return Err(format!("Account {acc} does not exist"));
        };
        let opts = self.options();
        let cfg = opts.accounts.iter().find(|c| c.name == acc);
        let st = a.sublist.stats();
        doc.account_detail = Some(AccountInfo {
            account_name: a.name.clone(),
            update_time: rfc3339(self.start),
            is_system: a.name == self.system_account.name,
            expired: false,
            complete: true,
            jetstream_enabled: false,
            leafnode_connections: 0,
            client_connections: a.num_connections.load(Ordering::Relaxed),
            subscriptions: a.sublist.count() as u64,
            exports: cfg.map(exports).unwrap_or_default(),
            imports: cfg.map(imports).unwrap_or_default(),
            name_tag: a.name.clone(),
            sublist_stats: SublistStatsJson {
                num_subscriptions: st.num_subs,
                num_cache: st.num_cache,
                num_inserts: st.num_inserts,
                num_removes: st.num_removes,
                num_matches: st.num_matches,
                cache_hit_rate: st.cache_hit_rate,
                max_fanout: st.max_fanout,
                avg_fanout: st.avg_fanout,
            },
        });
        Ok(doc)
    }

    /// `/accstatz`: accounts with client connections, or every account when `unused`.
    ///
    /// nats-server's HTTP handler reads only `unused` (an `acc=` argument is ignored there too).
    pub fn accstatz(&self, unused: bool, now: String) -> AccountStatz {
        let mut accounts = self.accounts();
        accounts.sort_by(|a, b| a.name.cmp(&b.name));
        let account_statz = accounts
            .iter()
            .filter(|a| unused || a.num_connections.load(Ordering::Relaxed) != 0)
            .map(|a| account_stat(a))
            .collect();
        AccountStatz {
            server_id: self.server_id.clone(),
            now,
            account_statz,
        }
    }
}

fn account_stat(a: &Account) -> AccountStat {
    let conns = a.num_connections.load(Ordering::Relaxed);
    AccountStat {
        acc: a.name.clone(),
        name: a.name.clone(),
        conns,
        leafnodes: 0,
        total_conns: conns,
        num_subscriptions: a.sublist.count() as u64,
        sent: DataStats {
            msgs: a.stats.out_msgs.load(Ordering::Relaxed),
            bytes: a.stats.out_bytes.load(Ordering::Relaxed),
            ..DataStats::default()
        },
        received: DataStats {
            msgs: a.stats.in_msgs.load(Ordering::Relaxed),
            bytes: a.stats.in_bytes.load(Ordering::Relaxed),
            ..DataStats::default()
        },
        slow_consumers: 0,
    }
}

//! `/connz`: open and closed client connections, with nats-server's options, sorting and paging.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;

use super::util::Params;
use crate::clock::unix_nanos as now_nanos;
use crate::clock::{from_unix_nanos, nanos_of, rtt_string, since, uptime};
use crate::log::rfc3339;
use crate::server::client::Client;
use crate::server::subscription::Subscription;
use crate::server::{ClosedClient, Server};

/// nats-server's `DefaultConnListSize`.
pub const DEFAULT_CONN_LIST_SIZE: i64 = 1024;

/// The `/connz` document.
#[derive(Debug, Serialize)]
pub struct Connz {
    pub server_id: String,
    pub now: String,
    pub num_connections: usize,
    pub total: usize,
    pub offset: i64,
    pub limit: i64,
    /// `None` serializes as `null`, as nats-server does for an unknown `acc`.
    pub connections: Option<Vec<ConnInfo>>,
}

/// One subscription as `subscriptions_list_detail` (and `/subsz` without the account fields).
#[derive(Debug, Clone, Serialize)]
pub struct SubDetail {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub account: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub account_tag: String,
    pub subject: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub qgroup: String,
    pub sid: String,
    pub msgs: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    pub cid: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl SubDetail {
    /// Detail of a live subscription, without the account fields.
    pub fn of(sub: &Subscription) -> SubDetail {
        SubDetail {
            account: String::new(),
            account_tag: String::new(),
            subject: sub.subject.clone(),
            qgroup: sub.queue.clone().unwrap_or_default(),
            sid: String::from_utf8_lossy(&sub.sid).into_owned(),
            msgs: sub.delivered.load(Ordering::Relaxed),
            max: sub.max.load(Ordering::Relaxed),
            cid: sub.client.cid,
        }
    }
}

/// One connection, fields in nats-server's `ConnInfo` order.
#[derive(Debug, Serialize)]
pub struct ConnInfo {
    pub cid: u64,
    pub kind: &'static str,
    #[serde(rename = "type")]
    pub conn_type: &'static str,
    pub ip: String,
    pub port: u16,
    pub start: String,
    pub last_activity: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub rtt: String,
    pub uptime: String,
    pub idle: String,
    pub pending_bytes: usize,
    pub in_msgs: u64,
    pub out_msgs: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
    pub subscriptions: u32,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub lang: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub authorized_user: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub account: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subscriptions_list: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subscriptions_list_detail: Vec<SubDetail>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name_tag: String,
    #[serde(skip)]
    keys: SortKeys,
}

/// Raw values the sort options compare.
#[derive(Debug, Default)]
struct SortKeys {
    last: i128,
    stop: i128,
    rtt: i64,
    uptime: u128,
    idle: u128,
}

/// A `sort=` value nats-server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortOpt {
    Cid,
    Start,
    Subs,
    Pending,
    MsgsTo,
    MsgsFrom,
    BytesTo,
    BytesFrom,
    Last,
    Idle,
    Uptime,
    Stop,
    Reason,
    Rtt,
}

impl SortOpt {
    /// Parses a sort key; `None` for an unknown one.
    pub fn parse(s: &str) -> Option<SortOpt> {
        use SortOpt::*;
        Some(match s {
            "" | "cid" => Cid,
            "start" => Start,
            "subs" => Subs,
            "pending" => Pending,
            "msgs_to" => MsgsTo,
            "msgs_from" => MsgsFrom,
            "bytes_to" => BytesTo,
            "bytes_from" => BytesFrom,
            "last" => Last,
            "idle" => Idle,
            "uptime" => Uptime,
            "stop" => Stop,
            "reason" => Reason,
            "rtt" => Rtt,
            _ => return None,
        })
    }
}

/// Which connections `state=` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    Open,
    Closed,
    All,
}

/// Parsed `/connz` arguments.
#[derive(Debug, Clone)]
pub struct ConnzOptions {
    pub sort: SortOpt,
    pub auth: bool,
    pub subs: bool,
    pub subs_detail: bool,
    pub offset: i64,
    pub limit: i64,
    pub cid: u64,
    pub state: ConnState,
    pub user: String,
    pub account: String,
}

impl ConnzOptions {
    /// Decodes the query as nats-server's `HandleConnz`; `Err` is the 400 body.
    pub fn from_params(p: &Params) -> Result<ConnzOptions, String> {
        let sort_raw = p.get("sort");
        let auth = p.bool("auth")?;
        let subs_detail = p.get("subs").eq_ignore_ascii_case("detail");
        let subs = if subs_detail { false } else { p.bool("subs")? };
        let offset = p.int("offset")?;
        let limit = p.int("limit")?;
        let cid = p.uint("cid")?;
        let state = match p.get("state").to_ascii_lowercase().as_str() {
            "" | "open" => ConnState::Open,
            "closed" => ConnState::Closed,
            "any" | "all" => ConnState::All,
            _ => return Err(format!("Error decoding state for {}", p.get("state"))),
        };
        let sort = SortOpt::parse(sort_raw)
            .ok_or_else(|| format!("invalid sorting option: {sort_raw}"))?;
        if sort == SortOpt::Stop && state != ConnState::Closed {
            return Err("sort by stop only valid on closed connections".into());
        }
        if sort == SortOpt::Reason && state != ConnState::Closed {
            return Err("sort by reason only valid on closed connections".into());
        }
        Ok(ConnzOptions {
            sort,
            auth,
            subs,
            subs_detail,
            offset: offset.max(0),
            limit: if cid > 0 {
                1
            } else if limit <= 0 {
                DEFAULT_CONN_LIST_SIZE
            } else {
                limit
            },
            cid,
            state,
            user: p.get("user").to_string(),
            account: p.get("acc").to_string(),
        })
    }
}

/// Live subscriptions of a client, ordered by sid (numerically when sids are numbers).
fn client_subs(c: &Client) -> Vec<Arc<Subscription>> {
    let mut subs: Vec<Arc<Subscription>> = c.subs.lock().values().cloned().collect();
    subs.sort_by(|a, b| {
        a.sid
            .len()
            .cmp(&b.sid.len())
            .then_with(|| a.sid.cmp(&b.sid))
    });
    subs
}

fn rtt_nanos(c: &Client) -> i64 {
    let rtt = c.rtt_nanos.load(Ordering::Relaxed);
    if rtt < 0 {
        0
    } else {
        rtt
    }
}

impl Server {
    /// nats-server's `getRTT` side effect: a client with a known `lang` and no RTT yet gets a
    /// PING now, so the next `/connz` can report a round trip.
    fn monitor_request_rtt(&self, c: &Client, lang: &str) {
        if lang.is_empty() || c.is_closing() {
            return;
        }
        if c.rtt_nanos
            .compare_exchange(0, -now_nanos(), Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            c.send_proto(b"PING\r\n");
        }
    }

    /// Builds the `ConnInfo` of a live connection.
    fn monitor_open_conn(&self, c: &Client, now: SystemTime, opts: &ConnzOptions) -> ConnInfo {
        let meta = c.meta.lock().clone();
        let last = from_unix_nanos(c.last_activity.load(Ordering::Relaxed));
        let rtt = rtt_nanos(c);
        if rtt == 0 {
            self.monitor_request_rtt(c, &meta.lang);
        }
        let subs = client_subs(c);
        let mut ci = ConnInfo {
            cid: c.cid,
            kind: "Client",
            conn_type: "nats",
            ip: c.addr.ip().to_string(),
            port: c.addr.port(),
            start: rfc3339(c.start),
            last_activity: rfc3339(last),
            stop: None,
            reason: None,
            rtt: rtt_string(rtt),
            uptime: uptime(since(c.start, now)),
            idle: uptime(since(last, now)),
            pending_bytes: c.pending_bytes(),
            in_msgs: c.stats.in_msgs.load(Ordering::Relaxed),
            out_msgs: c.stats.out_msgs.load(Ordering::Relaxed),
            in_bytes: c.stats.in_bytes.load(Ordering::Relaxed),
            out_bytes: c.stats.out_bytes.load(Ordering::Relaxed),
            subscriptions: subs.len() as u32,
            name: meta.name,
            lang: meta.lang,
            version: meta.version,
            authorized_user: String::new(),
            account: String::new(),
            subscriptions_list: Vec::new(),
            subscriptions_list_detail: Vec::new(),
            name_tag: String::new(),
            keys: SortKeys {
                last: nanos_of(last),
                stop: 0,
                rtt,
                uptime: since(c.start, now).as_nanos(),
                idle: since(last, now).as_nanos(),
            },
        };
        if opts.subs_detail {
            ci.subscriptions_list_detail = subs.iter().map(|s| SubDetail::of(s)).collect();
        } else if opts.subs {
            ci.subscriptions_list = subs.iter().map(|s| s.subject.clone()).collect();
        }
        if opts.auth {
            self.monitor_fill_auth(&mut ci, &c.account().name, c.user_name());
        }
        ci
    }

    /// Builds the `ConnInfo` of a closed connection, frozen at its close.
    fn monitor_closed_conn(&self, cc: &ClosedClient, opts: &ConnzOptions) -> ConnInfo {
        let c = &cc.client;
        let last = from_unix_nanos(c.last_activity.load(Ordering::Relaxed)).min(cc.stop);
        let rtt = rtt_nanos(c);
        let mut ci = ConnInfo {
            cid: c.cid,
            kind: "Client",
            conn_type: "nats",
            ip: c.addr.ip().to_string(),
            port: c.addr.port(),
            start: rfc3339(c.start),
            last_activity: rfc3339(last),
            stop: Some(rfc3339(cc.stop)),
            reason: Some(cc.reason.as_str()),
            rtt: rtt_string(rtt),
            uptime: uptime(since(c.start, cc.stop)),
            idle: uptime(since(last, cc.stop)),
            pending_bytes: c.pending_bytes(),
            in_msgs: c.stats.in_msgs.load(Ordering::Relaxed),
            out_msgs: c.stats.out_msgs.load(Ordering::Relaxed),
            in_bytes: c.stats.in_bytes.load(Ordering::Relaxed),
            out_bytes: c.stats.out_bytes.load(Ordering::Relaxed),
            subscriptions: cc.subs.len() as u32,
            name: cc.meta.name.clone(),
            lang: cc.meta.lang.clone(),
            version: cc.meta.version.clone(),
            authorized_user: String::new(),
            account: String::new(),
            subscriptions_list: Vec::new(),
            subscriptions_list_detail: Vec::new(),
            name_tag: String::new(),
            keys: SortKeys {
                last: nanos_of(last),
                stop: nanos_of(cc.stop),
                rtt,
                uptime: since(c.start, cc.stop).as_nanos(),
                idle: since(last, cc.stop).as_nanos(),
            },
        };
        if opts.subs_detail {
            ci.subscriptions_list_detail = cc.subs.iter().map(|s| SubDetail::of(s)).collect();
        } else if opts.subs {
            ci.subscriptions_list = cc.subs.iter().map(|s| s.subject.clone()).collect();
        }
        if opts.auth {
            self.monitor_fill_auth(&mut ci, &c.account().name, c.user_name());
        }
        ci
    }

    fn monitor_fill_auth(&self, ci: &mut ConnInfo, account: &str, user: Option<String>) {
        ci.authorized_user = user.unwrap_or_default();
        if account != "$G" {
            ci.account = account.to_string();
        }
        ci.name_tag = account.to_string();
    }

    /// The `/connz` document for already validated options.
    pub fn connz(&self, opts: &ConnzOptions) -> Connz {
        let now = SystemTime::now();
        let acc = opts.account.as_str();
        if !acc.is_empty() && !self.accounts().iter().any(|a| a.name == acc) {
            // nats-server returns a bare document when the account does not exist.
            return Connz {
                server_id: String::new(),
                now: rfc3339(now),
                num_connections: 0,
                total: 0,
                offset: opts.offset,
                limit: opts.limit,
                connections: None,
            };
        }
        let open: Vec<Arc<Client>> = match opts.state {
            ConnState::Closed => Vec::new(),
            _ => {
                let mut v = self.clients();
                if !acc.is_empty() {
                    v.retain(|c| c.account().name == acc);
                }
                v
            }
        };
        let closed: Vec<ClosedClient> = match opts.state {
            ConnState::Open => Vec::new(),
            _ => {
                let mut v = self.closed_clients();
                if !acc.is_empty() {
                    v.retain(|c| c.client.account().name == acc);
                }
                v
            }
        };
        let total = open.len() + closed.len();
        let mut conns: Vec<ConnInfo> = Vec::new();
        // Nothing carries a user name yet, so any `user` filter excludes every connection.
        let user_ok = opts.user.is_empty();
        if user_ok {
            if opts.cid > 0 {
                if let Some(cc) = closed.iter().rev().find(|cc| cc.client.cid == opts.cid) {
                    conns.push(self.monitor_closed_conn(cc, opts));
                } else if let Some(c) = open.iter().find(|c| c.cid == opts.cid) {
                    conns.push(self.monitor_open_conn(c, now, opts));
                }
            } else {
                conns.extend(open.iter().map(|c| self.monitor_open_conn(c, now, opts)));
                conns.extend(closed.iter().map(|cc| self.monitor_closed_conn(cc, opts)));
            }
        }
        sort_conns(&mut conns, opts.sort);
        let len = conns.len();
        let lo = (opts.offset.max(0) as usize).min(len);
        let hi = (opts.offset.max(0).saturating_add(opts.limit) as usize).min(len);
        let page: Vec<ConnInfo> = conns.drain(lo..hi).collect();
        Connz {
            server_id: self.server_id.clone(),
            now: rfc3339(now),
            num_connections: page.len(),
            total,
            offset: opts.offset,
            limit: opts.limit,
            connections: Some(page),
        }
    }
}

/// Totals over the open connections (prometheus-nats-exporter's `-connz` sums), read straight
/// from the live clients without building their `ConnInfo`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ConnzTotals {
    /// Open connections (`/connz` `total` with the default `state=open`).
    pub connections: usize,
    /// Sum of `pending_bytes`.
    pub pending_bytes: u64,
    /// Sum of `subscriptions`.
    pub subscriptions: u64,
    /// Sum of `in_msgs`.
    pub in_msgs: u64,
    /// Sum of `out_msgs`.
    pub out_msgs: u64,
    /// Sum of `in_bytes`.
    pub in_bytes: u64,
    /// Sum of `out_bytes`.
    pub out_bytes: u64,
}

impl Server {
    /// Sums the per-connection numbers `/connz` reports over every open connection.
    pub fn connz_totals(&self) -> ConnzTotals {
        let mut t = ConnzTotals::default();
        for c in self.clients() {
            t.connections += 1;
            t.pending_bytes += c.pending_bytes() as u64;
            t.subscriptions += c.subs.lock().len() as u64;
            t.in_msgs += c.stats.in_msgs.load(Ordering::Relaxed);
            t.out_msgs += c.stats.out_msgs.load(Ordering::Relaxed);
            t.in_bytes += c.stats.in_bytes.load(Ordering::Relaxed);
            t.out_bytes += c.stats.out_bytes.load(Ordering::Relaxed);
        }
        t
    }
}

/// Sorts as nats-server: `cid`/`start` and `reason` ascending, every other key descending.
fn sort_conns(conns: &mut [ConnInfo], sort: SortOpt) {
    use std::cmp::Reverse;
    use SortOpt::*;
    // A stable sort over cid order keeps ties deterministic.
    conns.sort_by_key(|c| c.cid);
    match sort {
        Cid | Start => {}
        Subs => conns.sort_by_key(|c| Reverse(c.subscriptions)),
        Pending => conns.sort_by_key(|c| Reverse(c.pending_bytes)),
        MsgsTo => conns.sort_by_key(|c| Reverse(c.out_msgs)),
        MsgsFrom => conns.sort_by_key(|c| Reverse(c.in_msgs)),
        BytesTo => conns.sort_by_key(|c| Reverse(c.out_bytes)),
        BytesFrom => conns.sort_by_key(|c| Reverse(c.in_bytes)),
        Last => conns.sort_by_key(|c| Reverse(c.keys.last)),
        Idle => conns.sort_by_key(|c| Reverse(c.keys.idle)),
        Uptime => conns.sort_by_key(|c| Reverse(c.keys.uptime)),
        Stop => conns.sort_by_key(|c| Reverse(c.keys.stop)),
        Reason => conns.sort_by(|a, b| a.reason.cmp(&b.reason)),
        Rtt => conns.sort_by_key(|c| Reverse(c.keys.rtt)),
    }
}

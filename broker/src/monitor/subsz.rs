//! `/subsz` (alias `/subscriptionsz`): sublist statistics and, with `subs=1`, the subscriptions.

use std::time::SystemTime;

use serde::Serialize;

use super::connz::SubDetail;
use super::util::Params;
use crate::clock::go_float;
use crate::log::rfc3339;
use crate::server::Server;
use crate::subject;
use crate::sublist::SublistStats;

/// nats-server's `DefaultSubListSize`.
pub const DEFAULT_SUB_LIST_SIZE: i64 = 1024;

/// The `/subsz` document.
#[derive(Debug, Serialize)]
pub struct Subsz {
    pub server_id: String,
    pub now: String,
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
    pub total: usize,
    pub offset: i64,
    pub limit: i64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subscriptions_list: Vec<SubDetail>,
}

/// Parsed `/subsz` arguments.
#[derive(Debug, Clone, Default)]
pub struct SubszOptions {
    pub subs: bool,
    pub offset: i64,
    pub limit: i64,
    pub account: String,
    pub test: String,
}

impl SubszOptions {
    /// Decodes the query as nats-server's `HandleSubsz`; `Err` is the 400 body.
    pub fn from_params(p: &Params) -> Result<SubszOptions, String> {
        let subs = p.bool("subs")?;
        let offset = p.int("offset")?;
        let limit = p.int("limit")?;
        let test = p.get("test").to_string();
        if !test.is_empty() && !subject::is_valid_literal_subject(&test) {
            return Err(format!(
                "invalid test subject, must be valid publish subject: {test}"
            ));
        }
        Ok(SubszOptions {
            subs,
            offset: offset.max(0),
            limit: if limit <= 0 {
                DEFAULT_SUB_LIST_SIZE
            } else {
                limit
            },
            account: p.get("acc").to_string(),
            test,
        })
    }
}

impl Server {
    /// The `/subsz` document.
    pub fn subsz(&self, opts: &SubszOptions) -> Subsz {
        let mut accounts = self.accounts();
        accounts.sort_by(|a, b| a.name.cmp(&b.name));
        accounts.retain(|a| opts.account.is_empty() || a.name == opts.account);
        let mut stats = SublistStats::default();
        let mut details = Vec::new();
        for acc in &accounts {
            stats.add(&acc.sublist.stats());
            if opts.subs {
                for sub in acc.sublist.all() {
                    if !opts.test.is_empty() && !subject::matches(&opts.test, &sub.subject) {
                        continue;
                    }
                    let mut d = SubDetail::of(&sub);
                    d.account = acc.name.clone();
                    d.account_tag = acc.name.clone();
                    details.push(d);
                }
            }
        }
        // `add` sums hit rates; report their mean over the sublists.
        if accounts.len() > 1 {
            stats.cache_hit_rate /= accounts.len() as f64;
        }
        let total = details.len();
        let lo = (opts.offset.max(0) as usize).min(total);
        let hi = (opts.offset.max(0).saturating_add(opts.limit) as usize).min(total);
        let page: Vec<SubDetail> = details.drain(lo..hi).collect();
        Subsz {
            server_id: self.server_id.clone(),
            now: rfc3339(SystemTime::now()),
            num_subscriptions: stats.num_subs,
            num_cache: stats.num_cache,
            num_inserts: stats.num_inserts,
            num_removes: stats.num_removes,
            num_matches: stats.num_matches,
            cache_hit_rate: stats.cache_hit_rate,
            max_fanout: stats.max_fanout,
            avg_fanout: stats.avg_fanout,
            total,
            offset: opts.offset,
            limit: opts.limit,
            subscriptions_list: page,
        }
    }
}

//! What the core hands to the cluster: published messages to forward to routes with interest (queue
//! groups by weight), subscription changes to announce, import interest and lame duck.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::BytesMut;

use super::route::{self, Route};
use super::Cluster;
use crate::accounts::Account;
use crate::protocol::route_wire::encode_rmsg;
use crate::protocol::Msg;
use crate::server::subscription::Subscription;
use crate::server::Server;
use crate::sublist::MatchResult;

impl crate::server::links::Routes for Cluster {
    /// Forwards a locally published message to the routes with matching interest, once per
    /// route, and decides queue groups cluster-wide. Returns whether anything was forwarded,
    /// and the local match without the queue groups handed to a route (when there are any).
    fn forward(
        &self,
        account: &Account,
        route_by: &str,
        msg: &Msg<'_>,
        local: &MatchResult<Subscription>,
    ) -> (bool, Option<MatchResult<Subscription>>) {
        let subject = route_by;
        let routes = self.routes.read().clone();
        if routes.is_empty() || self.export_denies(subject) {
            return (false, None);
        }
        struct Target<'a> {
            route: &'a Arc<Route>,
            plain: bool,
            queues: Vec<Arc<str>>,
            m: Arc<MatchResult<route::RemoteSub>>,
        }
        let mut targets: Vec<Target<'_>> = Vec::new();
        for r in routes.iter() {
            if let Some(m) = r.matches(&account.name, subject) {
                if !m.is_empty() {
                    targets.push(Target {
                        route: r,
                        plain: !m.psubs.is_empty(),
                        queues: Vec::new(),
                        m,
                    });
                }
            }
        }
        if targets.is_empty() {
            return (false, None);
        }
        // Queue groups: local members and each route compete by weight.
        let mut names: Vec<Arc<str>> = Vec::new();
        for t in &targets {
            for n in &t.m.qnames {
                if !names.contains(n) {
                    names.push(n.clone());
                }
            }
        }
        let mut removed: Vec<usize> = Vec::new();
        for name in &names {
            let li = local.qnames.iter().position(|n| n == name);
            let lw = li.map_or(0, |i| local.qsubs[i].len() as u64);
            let weights: Vec<u64> = targets
                .iter()
                .map(|t| {
                    t.m.qnames.iter().position(|n| n == name).map_or(0, |i| {
                        t.m.qsubs[i]
                            .iter()
                            .map(|s| s.weight.load(Ordering::Relaxed).max(1) as u64)
                            .sum()
                    })
                })
                .collect();
            let total = lw + weights.iter().sum::<u64>();
            if total == 0 {
                continue;
            }
            let mut pick = fastrand::u64(..total);
            if pick < lw {
                continue;
            }
            pick -= lw;
            for (t, w) in targets.iter_mut().zip(&weights) {
                if pick < *w {
                    t.queues.push(name.clone());
                    break;
                }
                pick -= w;
            }
            if let Some(i) = li {
                removed.push(i);
            }
        }
        // A delivery shown under another subject than it is routed by: nats-server sends the
        // shown subject with `<reply>@<route by>` as the reply; without a reply it goes as
        // routed.
        let joined;
        let delivery;
        let msg = match msg.reply {
            _ if route_by == msg.subject => msg,
            Some(r) => {
                joined = [r, b"@", route_by.as_bytes()].concat();
                delivery = Msg {
                    reply: Some(&joined),
                    ..*msg
                };
                &delivery
            }
            None => {
                delivery = Msg {
                    subject: route_by,
                    ..*msg
                };
                &delivery
            }
        };
        let mut sent = false;
        let mut buf = BytesMut::new();
        for t in &targets {
            if !t.plain && t.queues.is_empty() {
                continue;
            }
            buf.clear();
            let qs: Vec<&[u8]> = t.queues.iter().map(|q| q.as_bytes()).collect();
            encode_rmsg(&mut buf, account.name.as_bytes(), msg, &qs);
            t.route.send_msg(&buf, msg.size());
            // Counted on one subscription per route (and per queue group), as nats-server
            // delivers once per route.
            if t.plain {
                if let Some(s) = t.m.psubs.first() {
                    s.msgs.fetch_add(1, Ordering::Relaxed);
                }
            }
            for q in &t.queues {
                if let Some(i) = t.m.qnames.iter().position(|n| n == q) {
                    if let Some(s) = t.m.qsubs[i].first() {
                        s.msgs.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            sent = true;
        }
        if removed.is_empty() {
            return (sent, None);
        }
        let mut filtered = MatchResult {
            psubs: local.psubs.clone(),
            ..MatchResult::default()
        };
        for (i, (g, n)) in local.qsubs.iter().zip(&local.qnames).enumerate() {
            if !removed.contains(&i) {
                filtered.qsubs.push(g.clone());
                filtered.qnames.push(n.clone());
            }
        }
        (sent, Some(filtered))
    }

    /// A local subscription was added: tell the routes on first interest (and queue weights).
    fn sub_added(&self, sub: &Subscription) {
        self.interest_added(&sub.account.name, &sub.subject, sub.queue.clone());
    }

    /// A local subscription went away: tell the routes on last interest (and queue weights).
    fn sub_removed(&self, sub: &Subscription) {
        self.interest_removed(&sub.account.name, &sub.subject, sub.queue.clone());
    }

    /// The interest this server's imports need from the routes, replacing the previous set:
    /// `(exporting account, subject)` for stream imports (the messages are imported here) and
    /// the exporter's reply prefix for service imports (responses come back here).
    fn set_import_interest(&self, mut keys: Vec<(String, String)>) {
        keys.sort();
        keys.dedup();
        let mut held = self.import_interest.lock();
        for k in held.iter().filter(|k| !keys.contains(k)) {
            self.interest_removed(&k.0, &k.1, None);
        }
        for k in keys.iter().filter(|k| !held.contains(k)) {
            self.interest_added(&k.0, &k.1, None);
        }
        *held = keys;
    }

    /// Recomputes the client `connect_urls` and tells clients that take asynchronous INFOs.
    /// Tells every route this server entered lame duck mode (an INFO with `ldm`), so the
    /// other servers stop advertising its client URLs.
    fn announce_lame_duck(&self, server: &Server) {
        for r in self.routes.read().iter() {
            let mut info = self.route_info(server, r.local_addr);
            info.lame_duck_mode = true;
            info.connect_urls.clear();
            r.send(&route::info_line(&info));
        }
    }

    fn as_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync> {
        self
    }
}

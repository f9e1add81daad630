//! Accounts: isolated subject spaces, each with its own subscription index and counters, and
//! the imports and exports that let messages cross between them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::options::ResponseType;
use crate::server::subscription::{Counters, Subscription};
use crate::sublist::Sublist;

/// How long a service response route lives when no response (or no final one) comes, as
/// nats-server's default response threshold.
const RESPONSE_TTL: Duration = Duration::from_secs(120);

/// One account; `$G` is the global account every client lands in when no auth is configured.
#[derive(Debug)]
pub struct Account {
    pub name: String,
    pub sublist: Sublist<Subscription>,
    pub stats: Counters,
    pub num_connections: AtomicU64,
    pub num_subs: AtomicU64,
    /// Stream imports of other accounts that take messages published here.
    pub stream_forwards: Sublist<StreamForward>,
    has_forwards: AtomicBool,
    /// This account's service imports, by the local subject requests are sent on.
    pub service_imports: Sublist<ServiceImport>,
    has_services: AtomicBool,
    /// Reply subjects (`_R_.…`) handed to this account's responders, routed back to importers.
    responses: Mutex<HashMap<String, ResponseRoute>>,
    has_responses: AtomicBool,
}

/// A stream import: messages on `subject` here are delivered into `target` under a new name.
#[derive(Debug)]
pub struct StreamForward {
    pub target: Arc<Account>,
    /// The imported subject pattern in the exporting account.
    pub subject: String,
    /// `to`: the subject (pattern) in the importing account.
    pub to: Option<String>,
    /// `prefix`: prepended to the subject in the importing account.
    pub prefix: Option<String>,
}

impl StreamForward {
    /// The subject the importing account sees for `subject`.
    pub fn map(&self, subject: &str) -> String {
        match (&self.prefix, &self.to) {
            (Some(p), _) => format!("{p}.{subject}"),
            // A subject mapping: `>` takes what `>` matched, `*`/`$N` the wildcards.
            (None, Some(to)) => crate::transform::apply(&self.subject, to, subject)
                .unwrap_or_else(|| map_tokens(subject, &self.subject, to)),
            (None, None) => subject.to_string(),
        }
    }
}

/// A service import: requests on `local` in the importing account go to `remote` in `exporter`.
#[derive(Debug)]
pub struct ServiceImport {
    pub exporter: Arc<Account>,
    /// The importing account, where responses are routed back to (weak: it owns this import).
    pub importer: Weak<Account>,
    pub local: String,
    pub remote: String,
    pub response_type: ResponseType,
}

impl ServiceImport {
    /// The subject the exporting account sees for a request on `subject`.
    pub fn map(&self, subject: &str) -> String {
        // Wildcards map in order, so `$JS.A.API.>` → `$JS.API.>` works although the token
        // counts differ.
        crate::transform::apply(&self.local, &self.remote, subject)
            .unwrap_or_else(|| map_tokens(subject, &self.local, &self.remote))
    }
}

/// Where a response to a service request goes back to.
#[derive(Debug, Clone)]
pub struct ResponseRoute {
    pub target: Arc<Account>,
    pub reply: Vec<u8>,
    pub response_type: ResponseType,
    pub expires: Instant,
}

/// This server's prefix for service reply subjects (`_R_.<server token>.`): routes carry a
/// response back only to the server that handed the reply out.
pub fn response_prefix() -> &'static str {
    static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PREFIX.get_or_init(|| {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let t: String = (0..6)
            .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
            .collect();
        format!("_R_.{t}.")
    })
}

/// Maps `subject` (matching `from`) onto `to`: tokens where `to` has a wildcard keep the
/// subject's token at that position; literal tokens of `to` replace it.
pub fn map_tokens(subject: &str, from: &str, to: &str) -> String {
    if from == to {
        return subject.to_string();
    }
    let subj: Vec<&str> = subject.split('.').collect();
    let mut out = Vec::with_capacity(subj.len());
    for (i, t) in to.split('.').enumerate() {
        match t {
            "*" => out.push(subj.get(i).copied().unwrap_or("*")),
            ">" => {
                out.extend(subj.iter().skip(i).copied());
                break;
            }
            lit => out.push(lit),
        }
    }
    out.join(".")
}

impl Account {
    /// An empty account.
    pub fn new(name: &str) -> Account {
        Account {
            name: name.to_string(),
            sublist: Sublist::new(),
            stats: Counters::default(),
            num_connections: AtomicU64::new(0),
            num_subs: AtomicU64::new(0),
            stream_forwards: Sublist::new(),
            has_forwards: AtomicBool::new(false),
            service_imports: Sublist::new(),
            has_services: AtomicBool::new(false),
            responses: Mutex::new(HashMap::new()),
            has_responses: AtomicBool::new(false),
        }
    }

    /// Registers a stream import of this account's `forward.subject` into `forward.target`.
    pub fn add_stream_forward(&self, forward: StreamForward) {
        let subject = forward.subject.clone();
        if self
            .stream_forwards
            .insert(&subject, None, Arc::new(forward))
            .is_ok()
        {
            self.has_forwards.store(true, Ordering::Release);
        }
    }

    /// Registers a service import in this (the importing) account.
    pub fn add_service_import(&self, import: ServiceImport) {
        let local = import.local.clone();
        if self
            .service_imports
            .insert(&local, None, Arc::new(import))
            .is_ok()
        {
            self.has_services.store(true, Ordering::Release);
        }
    }

    /// Drops every stream forward and service import (before wiring them again).
    pub fn clear_imports(&self) {
        for f in self.stream_forwards.all() {
            self.stream_forwards.remove(&f.subject, None, &f);
        }
        for si in self.service_imports.all() {
            self.service_imports.remove(&si.local, None, &si);
        }
        self.has_forwards.store(false, Ordering::Release);
        self.has_services.store(false, Ordering::Release);
    }

    /// Whether a message on `subject` published in this account reaches a subscriber here
    /// or, through stream imports, in another account (push consumers deliver only then).
    pub fn has_interest(&self, subject: &str) -> bool {
        self.has_interest_depth(subject, 0)
    }

    fn has_interest_depth(&self, subject: &str, depth: usize) -> bool {
        if self.sublist.has_interest(subject) {
            return true;
        }
        // Import chains are short; the bound stops a cycle.
        if depth >= 4 || !self.has_stream_forwards() {
            return false;
        }
        let forwards = self.stream_forwards.match_subject(subject);
        forwards
            .psubs
            .iter()
            .any(|f| f.target.has_interest_depth(&f.map(subject), depth + 1))
    }

    /// Whether any stream import takes messages from this account.
    #[inline]
    pub fn has_stream_forwards(&self) -> bool {
        self.has_forwards.load(Ordering::Acquire)
    }

    /// Whether this account imports services.
    #[inline]
    pub fn has_service_imports(&self) -> bool {
        self.has_services.load(Ordering::Acquire)
    }

    /// Whether responses to imported requests may be pending here.
    #[inline]
    pub fn has_response_routes(&self) -> bool {
        self.has_responses.load(Ordering::Acquire)
    }

    /// Makes a reply subject for a request crossing into this (the exporting) account.
    pub fn add_response_route(&self, route: ResponseRoute) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let token: String = (0..22)
            .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
            .collect();
        let reply = format!("{}{token}", response_prefix());
        let mut map = self.responses.lock();
        if map.len() >= 4096 {
            let now = Instant::now();
            map.retain(|_, r| r.expires > now);
        }
        map.insert(reply.clone(), route);
        self.has_responses.store(true, Ordering::Release);
        reply
    }

    /// The route for a response published on `subject`, consuming it for single responses.
    pub fn take_response_route(&self, subject: &str) -> Option<ResponseRoute> {
        if !subject.starts_with("_R_.") {
            return None;
        }
        let mut map = self.responses.lock();
        let route = map.get(subject)?.clone();
        if route.expires <= Instant::now() || route.response_type == ResponseType::Singleton {
            map.remove(subject);
        }
        if map.is_empty() {
            self.has_responses.store(false, Ordering::Release);
        }
        (route.expires > Instant::now()).then_some(route)
    }

    /// A new response route to `target`'s `reply`.
    pub fn response_route(
        target: Arc<Account>,
        reply: &[u8],
        response_type: ResponseType,
    ) -> ResponseRoute {
        ResponseRoute {
            target,
            reply: reply.to_vec(),
            response_type,
            expires: Instant::now() + RESPONSE_TTL,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_subjects() {
        assert_eq!(map_tokens("a.b", "a.b", "a.b"), "a.b");
        assert_eq!(map_tokens("svc.time", "svc.time", "time"), "time");
        assert_eq!(
            map_tokens("orders.eu.new", "orders.*.new", "in.*.new"),
            "in.eu.new"
        );
        assert_eq!(map_tokens("a.b.c.d", "a.>", "x.>"), "x.b.c.d");
        let f = StreamForward {
            target: Arc::new(Account::new("B")),
            subject: "public.>".into(),
            to: None,
            prefix: Some("from_a".into()),
        };
        assert_eq!(f.map("public.news"), "from_a.public.news");
    }

    #[test]
    fn single_response_routes_are_used_once() {
        let a = Account::new("A");
        let b = Arc::new(Account::new("B"));
        let r = a.add_response_route(Account::response_route(
            b.clone(),
            b"_INBOX.1",
            ResponseType::Singleton,
        ));
        assert!(r.starts_with("_R_."));
        assert!(a.take_response_route(&r).is_some());
        assert!(a.take_response_route(&r).is_none());
        let s = a.add_response_route(Account::response_route(
            b,
            b"_INBOX.2",
            ResponseType::Stream,
        ));
        assert!(a.take_response_route(&s).is_some());
        assert!(a.take_response_route(&s).is_some());
    }
}

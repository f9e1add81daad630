//! JetStream differential scenarios: the same scenario on a fresh reference nats-server and
//! a fresh natrix, its labelled observations compared one by one.
#![allow(dead_code)]

use std::future::Future;

use serde_json::Value;

/// Runs `scenario` on the reference nats-server, then on natrix (each JetStream-enabled on
/// its own fresh store), asserts every labelled observation is the same, and returns the
/// reference's.
pub async fn on_both<F, Fut>(tag: &str, scenario: F) -> Vec<(String, Value)>
where
    F: Fn(async_nats::Client) -> Fut,
    Fut: Future<Output = Vec<(String, Value)>>,
{
    both(tag, super::proc::jetstream, scenario).await
}

/// [`on_both`] with a configuration file: `conf` with `$SD` standing for a fresh store
/// directory (the servers listen on an ephemeral 127.0.0.1 port).
pub async fn on_both_conf<F, Fut>(tag: &str, conf: &str, scenario: F) -> Vec<(String, Value)>
where
    F: Fn(async_nats::Client) -> Fut,
    Fut: Future<Output = Vec<(String, Value)>>,
{
    let start = |reference: bool, dir: &std::path::Path| {
        let file = dir.join("js.conf");
        let sd = dir.join("store");
        std::fs::write(
            &file,
            conf.replace("$SD", &format!("{:?}", sd.display().to_string())),
        )
        .unwrap();
        let f = file.display().to_string();
        let args = ["-c", &f, "-a", "127.0.0.1", "-p", "-1"];
        let p = if reference {
            super::proc::Proc::reference(&args)
        } else {
            super::proc::Proc::natrix(&args)
        };
        let url = format!("nats://{}", p.ready());
        (p, url)
    };
    both(tag, start, scenario).await
}

/// The scenario on the server `start` makes (reference first, then natrix), each in a fresh
/// directory; the observations compared by [`same`].
async fn both<S, F, Fut>(tag: &str, start: S, scenario: F) -> Vec<(String, Value)>
where
    S: Fn(bool, &std::path::Path) -> (super::proc::Proc, String),
    F: Fn(async_nats::Client) -> Fut,
    Fut: Future<Output = Vec<(String, Value)>>,
{
    let mut results = Vec::new();
    for reference in [true, false] {
        let dir = super::tempdir::TempDir::new(tag);
        let (_p, url) = start(reference, dir.path());
        let nc = async_nats::connect(&url).await.unwrap();
        results.push(scenario(nc).await);
    }
    same(results)
}

/// Asserts the reference's observations (first) and natrix's (second) are the same; returns
/// the reference's.
fn same(mut results: Vec<Vec<(String, Value)>>) -> Vec<(String, Value)> {
    let got = results.pop().unwrap();
    let want = results.pop().unwrap();
    assert_eq!(want.len(), got.len());
    let diffs: Vec<String> = want
        .iter()
        .zip(&got)
        .filter(|(w, g)| w != g)
        .map(|((label, w), (_, g))| format!("{label}:\n  reference: {w}\n  natrix:    {g}"))
        .collect();
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    want
}

/// The observation labelled `label`.
pub fn find<'a>(obs: &'a [(String, Value)], label: &str) -> &'a Value {
    &obs.iter()
        .find(|(l, _)| l == label)
        .unwrap_or_else(|| panic!("no {label:?} observed"))
        .1
}

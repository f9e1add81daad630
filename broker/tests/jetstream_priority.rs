//! Pull consumer priority groups (`priority_groups`, `priority_policy`) against the reference
//! nats-server: config checks, request checks, pinned_client (the pin, 423s, the unpin API,
//! advisories), overflow (`min_pending`) and prioritized (`priority`) delivery.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{
    js::api,
    jsdiff::{find, on_both},
};
use futures::StreamExt;
use serde_json::{json, Value};

/// Pin ids are random: each distinct one becomes `pin1`, `pin2`, ... in order of appearance.
#[derive(Default)]
struct Pins(HashMap<String, String>);

impl Pins {
    fn label(&mut self, id: &str) -> String {
        let n = self.0.len() + 1;
        self.0
            .entry(id.to_string())
            .or_insert_with(|| format!("pin{n}"))
            .clone()
    }

    /// The real id behind a label.
    fn id(&self, label: &str) -> String {
        self.0
            .iter()
            .find(|(_, l)| l.as_str() == label)
            .map(|(id, _)| id.clone())
            .unwrap_or_default()
    }
}

/// A pull request on its own inbox, left open while others are made.
struct Pull {
    sub: async_nats::Subscriber,
}

impl Pull {
    async fn start(nc: &async_nats::Client, consumer: &str, body: Value) -> Pull {
        let inbox = nc.new_inbox();
        let sub = nc.subscribe(inbox.clone()).await.unwrap();
        nc.publish_with_reply(
            format!("$JS.API.CONSUMER.MSG.NEXT.S.{consumer}"),
            inbox,
            body.to_string().into(),
        )
        .await
        .unwrap();
        nc.flush().await.unwrap();
        Pull { sub }
    }

    /// What arrived within `quiet` of the last arrival: payloads (with the pin they carry)
    /// and statuses; data is acked.
    async fn take(
        &mut self,
        nc: &async_nats::Client,
        pins: &mut Pins,
        quiet: Duration,
    ) -> Vec<String> {
        let mut got = Vec::new();
        while let Ok(Some(m)) = tokio::time::timeout(quiet, self.sub.next()).await {
            let pin = m
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Pin-Id"))
                .map(|v| pins.label(v.as_str()));
            match (&m.status, &m.reply) {
                (Some(s), _) => got.push(format!(
                    "status {} {}",
                    u16::from(*s),
                    m.description.clone().unwrap_or_default()
                )),
                (None, Some(reply)) => {
                    let data = String::from_utf8_lossy(&m.payload).to_string();
                    got.push(match pin {
                        Some(p) => format!("{data} ({p})"),
                        None => data,
                    });
                    nc.publish(reply.clone(), "+ACK".into()).await.unwrap();
                }
                (None, None) => got.push("unexpected message without reply".into()),
            }
        }
        got
    }
}

async fn scenario(nc: &async_nats::Client) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut pins = Pins::default();
    let quiet = Duration::from_millis(600);
    let v = api(
        nc,
        "$JS.API.STREAM.CREATE.S",
        json!({"name": "S", "subjects": ["s.>"], "storage": "memory"}),
    )
    .await;
    assert!(v.get("error").is_none(), "{v}");
    let mut advisories = nc.subscribe("$JS.EVENT.ADVISORY.CONSUMER.>").await.unwrap();

    // Configurations.
    for (name, extra) in [
        (
            "P",
            json!({"priority_groups": ["g"], "priority_policy": "pinned_client", "filter_subject": "s.p"}),
        ),
        (
            "O",
            json!({"priority_groups": ["g", "h"], "priority_policy": "overflow", "filter_subject": "s.o"}),
        ),
        (
            "R",
            json!({"priority_groups": ["g"], "priority_policy": "prioritized", "filter_subject": "s.r"}),
        ),
        (
            "T",
            json!({"priority_groups": ["g"], "priority_policy": "pinned_client", "priority_timeout": 1_000_000_000, "filter_subject": "s.t"}),
        ),
        ("N", json!({})),
        ("X1", json!({"priority_policy": "overflow"})),
        ("X2", json!({"priority_groups": ["g"]})),
        (
            "X3",
            json!({"priority_groups": ["g"], "priority_policy": "none"}),
        ),
        (
            "X4",
            json!({"priority_groups": ["bad name!"], "priority_policy": "overflow"}),
        ),
        (
            "X5",
            json!({"priority_groups": [""], "priority_policy": "overflow"}),
        ),
        ("X6", json!({"priority_timeout": 1000})),
        (
            "X7",
            json!({"priority_groups": ["g"], "priority_policy": "overflow", "deliver_subject": "d"}),
        ),
        (
            "X8",
            json!({"priority_groups": ["g"], "priority_policy": "bogus"}),
        ),
        (
            "X9",
            json!({"priority_groups": ["abcdefghijklmnopq"], "priority_policy": "overflow"}),
        ),
    ] {
        let mut cfg = json!({"durable_name": name, "ack_policy": "explicit"});
        for (k, v) in extra.as_object().unwrap() {
            cfg[k] = v.clone();
        }
        let v = api(
            nc,
            &format!("$JS.API.CONSUMER.CREATE.S.{name}"),
            json!({"stream_name": "S", "config": cfg}),
        )
        .await;
        let seen = match v.get("error") {
            Some(e) => e.clone(),
            None => json!({
                "priority_groups": v["config"]["priority_groups"],
                "priority_policy": v["config"]["priority_policy"],
                "priority_timeout": v["config"]["priority_timeout"],
                "info": v["priority_groups"],
            }),
        };
        out.push((format!("create {name}"), seen));
    }

    // Request checks.
    for (consumer, body) in [
        ("P", json!({"batch": 1})),
        ("P", json!({"batch": 1, "group": "zz"})),
        ("P", json!({"batch": 1, "group": "g", "min_pending": 1})),
        ("P", json!({"batch": 1, "group": "g", "priority": 12})),
        ("N", json!({"batch": 1, "group": "g", "id": "x"})),
        ("N", json!({"batch": 1, "min_ack_pending": 3})),
        ("N", json!({"batch": 1, "priority": -1})),
    ] {
        let mut p = Pull::start(nc, consumer, body.clone()).await;
        let got = p.take(nc, &mut pins, quiet).await;
        out.push((format!("request {consumer} {body}"), json!(got)));
    }

    // pinned_client: the first request takes the pin, others wait, the holder renews it.
    for i in 0..2 {
        nc.request("s.p", format!("p{i}").into()).await.unwrap();
    }
    let mut a = Pull::start(
        nc,
        "P",
        json!({"batch": 1, "group": "g", "expires": 2_000_000_000}),
    )
    .await;
    out.push((
        "pin taken".into(),
        json!(a.take(nc, &mut pins, quiet).await),
    ));
    let info = api(nc, "$JS.API.CONSUMER.INFO.S.P", json!({})).await;
    let state = &info["priority_groups"][0];
    out.push((
        "info while pinned".into(),
        json!({
            "group": state["group"],
            "pinned": state["pinned_client_id"].as_str().map(|id| pins.label(id)),
            "has_ts": state["pinned_ts"].as_str().is_some_and(|t| !t.starts_with("0001")),
        }),
    ));
    let mut b = Pull::start(
        nc,
        "P",
        json!({"batch": 5, "group": "g", "expires": 5_000_000_000u64}),
    )
    .await;
    let pin1 = pins.id("pin1");
    let mut a2 = Pull::start(
        nc,
        "P",
        json!({"batch": 1, "group": "g", "id": pin1, "expires": 2_000_000_000}),
    )
    .await;
    out.push((
        "holder pulls again".into(),
        json!(a2.take(nc, &mut pins, quiet).await),
    ));
    let mut wrong = Pull::start(
        nc,
        "P",
        json!({"batch": 1, "group": "g", "id": "not-the-pin"}),
    )
    .await;
    out.push((
        "wrong pin".into(),
        json!(wrong.take(nc, &mut pins, quiet).await),
    ));
    out.push((
        "others wait".into(),
        json!(b.take(nc, &mut pins, Duration::from_millis(200)).await),
    ));
    // Unpinned by the API: the waiting request gets the next message with a new pin.
    for (body, label) in [
        (json!({"group": "g"}), "unpin"),
        (json!({"group": "zz"}), "unpin unknown group"),
        (json!({}), "unpin without group"),
        (json!({"group": "bad name!"}), "unpin bad group"),
    ] {
        let v = api(nc, "$JS.API.CONSUMER.UNPIN.S.P", body).await;
        out.push((label.into(), v));
    }
    let v = api(nc, "$JS.API.CONSUMER.UNPIN.S.NOPE", json!({"group": "g"})).await;
    out.push(("unpin missing consumer".into(), v));
    nc.request("s.p", "p2".into()).await.unwrap();
    out.push((
        "new pin after unpin".into(),
        json!(b.take(nc, &mut pins, quiet).await),
    ));
    let mut stale = Pull::start(nc, "P", json!({"batch": 1, "group": "g", "id": pin1})).await;
    out.push((
        "old pin refused".into(),
        json!(stale.take(nc, &mut pins, quiet).await),
    ));

    // A pin lapses after priority_timeout without a pull from its holder.
    for i in 0..2 {
        nc.request("s.t", format!("t{i}").into()).await.unwrap();
    }
    let mut t1 = Pull::start(nc, "T", json!({"batch": 1, "group": "g"})).await;
    out.push((
        "timed pin taken".into(),
        json!(t1.take(nc, &mut pins, quiet).await),
    ));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut t2 = Pull::start(nc, "T", json!({"batch": 1, "group": "g"})).await;
    out.push((
        "pin after the timeout".into(),
        json!(t2.take(nc, &mut pins, quiet).await),
    ));

    // overflow: a request past its min_pending mark only.
    for i in 0..3 {
        nc.request("s.o", format!("o{i}").into()).await.unwrap();
    }
    let mut high = Pull::start(
        nc,
        "O",
        json!({"batch": 1, "group": "g", "min_pending": 10, "expires": 500_000_000}),
    )
    .await;
    out.push((
        "overflow below the mark".into(),
        json!(high.take(nc, &mut pins, quiet).await),
    ));
    let mut two = Pull::start(
        nc,
        "O",
        json!({"batch": 5, "group": "h", "min_pending": 2, "expires": 500_000_000}),
    )
    .await;
    out.push((
        "overflow while past the mark".into(),
        json!(two.take(nc, &mut pins, quiet).await),
    ));
    let mut any = Pull::start(
        nc,
        "O",
        json!({"batch": 5, "group": "g", "expires": 500_000_000}),
    )
    .await;
    out.push((
        "overflow without a mark".into(),
        json!(any.take(nc, &mut pins, quiet).await),
    ));

    // prioritized: the lowest number first, whatever the order of arrival.
    let mut waiting = Vec::new();
    for p in [9, 1, 5] {
        waiting.push((
            p,
            Pull::start(
                nc,
                "R",
                json!({"batch": 1, "group": "g", "priority": p, "expires": 3_000_000_000u64}),
            )
            .await,
        ));
    }
    // nats-server queues pull requests to the consumer asynchronously.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..3 {
        nc.request("s.r", format!("r{i}").into()).await.unwrap();
    }
    for (p, mut pull) in waiting {
        out.push((
            format!("prioritized {p}"),
            json!(pull.take(nc, &mut pins, Duration::from_millis(300)).await),
        ));
    }

    // The pin advisories, in order.
    let mut adv = Vec::new();
    while let Ok(Some(m)) =
        tokio::time::timeout(Duration::from_millis(300), advisories.next()).await
    {
        if !m.subject.contains("PINNED.") {
            continue;
        }
        let v: Value = serde_json::from_slice(&m.payload).unwrap();
        adv.push(json!({
            "subject": m.subject.as_str(),
            "type": v["type"],
            "group": v["group"],
            "pinned": v["pinned_id"].as_str().map(|id| pins.label(id)),
            "reason": v["reason"],
        }));
    }
    out.push(("advisories".into(), json!(adv)));
    out
}

#[tokio::test]
async fn priority_groups_match_reference() {
    let want = on_both("priority", |nc| async move { scenario(&nc).await }).await;
    // The scenario exercised the pin: two pins were handed out, one lapsed.
    let adv = find(&want, "advisories").to_string();
    assert!(adv.contains("pin2") && adv.contains("timeout"), "{adv}");
}

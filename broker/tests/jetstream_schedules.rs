//! Message schedules (`allow_msg_schedules`, `Nats-Schedule`) against the reference
//! nats-server: config checks, publish refusals, what a fired schedule stores (`@at`,
//! `@every`, cron, `Nats-Schedule-Source`, `Nats-Schedule-TTL`), cancelling by purge marker,
//! and that schedules cannot be turned off.

mod common;

use std::time::{Duration, Instant};

use common::{
    js::{self, api, stored},
    jsdiff::{find, on_both},
    proc, tempdir,
};
use serde_json::{json, Value};

/// A publish's answer without its sequence (which depends on how often a repeating schedule
/// already fired).
async fn publish(
    nc: &async_nats::Client,
    subject: &str,
    hdrs: &[(&str, &str)],
    body: &str,
) -> Value {
    let mut v = js::publish(nc, subject, hdrs, body).await;
    if let Some(o) = v.as_object_mut() {
        o.remove("seq");
    }
    v
}

/// Waits (bounded) until `subject` has a message, and returns it with its time-dependent
/// `Nats-Schedule-Next` value reduced to "purge" or "a time".
async fn fired(nc: &async_nats::Client, subject: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = stored(nc, "S", json!({ "last_by_subj": subject })).await;
        if m.get("seq").is_some() || Instant::now() > deadline {
            let hdrs: Vec<String> = m["hdrs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(|h| match h.strip_prefix("Nats-Schedule-Next: ") {
                    Some("purge") => h.to_string(),
                    // The time differs run to run; the wall clock it is written on not.
                    Some(t) if t.len() >= 20 && &t[10..11] == "T" => {
                        format!("Nats-Schedule-Next: <time>{}", &t[19..])
                    }
                    _ => h.to_string(),
                })
                .collect();
            return json!({"data": m["data"], "hdrs": hdrs, "error": m.get("err_code")});
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn scenario(nc: &async_nats::Client) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let v = api(
        nc,
        "$JS.API.STREAM.CREATE.S",
        json!({"name": "S", "subjects": ["sch.>", "out.>", "src.>"], "allow_msg_schedules": true, "allow_msg_ttl": true}),
    )
    .await;
    out.push((
        "create".into(),
        json!([
            v["config"]["allow_msg_schedules"],
            v["config"]["allow_rollup_hdrs"],
            v["config"]["deny_purge"]
        ]),
    ));
    for (label, cfg) in [
        (
            "mirror",
            json!({"name": "M1", "mirror": {"name": "S"}, "allow_msg_schedules": true}),
        ),
        (
            "sources",
            json!({"name": "M2", "sources": [{"name": "S"}], "allow_msg_schedules": true}),
        ),
        (
            "discard new",
            json!({"name": "M3", "subjects": ["m3"], "discard": "new", "allow_msg_schedules": true}),
        ),
        (
            "counter",
            json!({"name": "M4", "subjects": ["m4"], "allow_msg_counter": true, "allow_msg_schedules": true}),
        ),
    ] {
        let name = cfg["name"].as_str().unwrap().to_string();
        let v = api(nc, &format!("$JS.API.STREAM.CREATE.{name}"), cfg).await;
        out.push((format!("create with {label}"), v["error"].clone()));
    }
    let v = api(
        nc,
        "$JS.API.STREAM.CREATE.P",
        json!({"name": "P", "subjects": ["p.>"]}),
    )
    .await;
    assert!(v.get("error").is_none(), "{v}");
    let t = |target: &'static str| ("Nats-Schedule-Target", target);
    for (label, subject, hdrs) in [
        (
            "schedules off",
            "p.a",
            vec![
                ("Nats-Schedule", "@every 1s"),
                ("Nats-Schedule-Target", "p.b"),
            ],
        ),
        (
            "bad pattern",
            "sch.a",
            vec![("Nats-Schedule", "@sometime"), t("out.a")],
        ),
        (
            "every under a second",
            "sch.a",
            vec![("Nats-Schedule", "@every 500ms"), t("out.a")],
        ),
        (
            "five cron fields",
            "sch.a",
            vec![("Nats-Schedule", "* * * * *"), t("out.a")],
        ),
        (
            "zone with every",
            "sch.a",
            vec![
                ("Nats-Schedule", "@every 1s"),
                t("out.a"),
                ("Nats-Schedule-Time-Zone", "UTC"),
            ],
        ),
        (
            "unknown zone",
            "sch.a",
            vec![
                ("Nats-Schedule", "0 0 * * * *"),
                t("out.a"),
                ("Nats-Schedule-Time-Zone", "Mars/Base"),
            ],
        ),
        ("no target", "sch.a", vec![("Nats-Schedule", "@every 1s")]),
        (
            "target is itself",
            "sch.a",
            vec![("Nats-Schedule", "@every 1s"), t("sch.a")],
        ),
        (
            "target outside",
            "sch.a",
            vec![("Nats-Schedule", "@every 1s"), t("zzz")],
        ),
        (
            "target wildcard",
            "sch.a",
            vec![("Nats-Schedule", "@every 1s"), t("out.*")],
        ),
        (
            "bad ttl",
            "sch.a",
            vec![
                ("Nats-Schedule", "@every 1s"),
                t("out.a"),
                ("Nats-Schedule-TTL", "abc"),
            ],
        ),
        (
            "rollup all",
            "sch.a",
            vec![
                ("Nats-Schedule", "@every 1s"),
                t("out.a"),
                ("Nats-Rollup", "all"),
            ],
        ),
        (
            "scheduler not purge",
            "out.z",
            vec![("Nats-Schedule-Next", "later"), ("Nats-Scheduler", "sch.e")],
        ),
        (
            "scheduler alone",
            "out.z",
            vec![("Nats-Scheduler", "sch.e")],
        ),
        (
            "cron in UTC",
            "sch.u",
            vec![
                ("Nats-Schedule", "0 0 0 1 1 *"),
                t("out.u"),
                ("Nats-Schedule-Time-Zone", "UTC"),
            ],
        ),
        (
            "cron in a zone",
            "sch.z",
            vec![
                ("Nats-Schedule", "0 0 0 1 1 *"),
                t("out.z"),
                ("Nats-Schedule-Time-Zone", "Europe/Amsterdam"),
            ],
        ),
        (
            "hourly",
            "sch.h",
            vec![("Nats-Schedule", "@hourly"), t("out.h")],
        ),
    ] {
        out.push((
            format!("publish: {label}"),
            publish(nc, subject, &hdrs, label).await,
        ));
    }

    // What fires.
    publish(nc, "src.x", &[], "from the source").await;
    for (subject, hdrs) in [
        (
            "sch.at",
            vec![
                ("Nats-Schedule", "@at 2020-01-01T00:00:00Z"),
                t("out.at"),
                ("Foo", "bar"),
            ],
        ),
        (
            "sch.e",
            vec![
                ("Nats-Schedule", "@every 1s"),
                t("out.e"),
                ("Nats-Msg-Id", "x1"),
                ("Nats-Schedule-TTL", "1h"),
                ("Keep", "me"),
            ],
        ),
        ("sch.c", vec![("Nats-Schedule", "* * * * * *"), t("out.c")]),
        (
            "sch.cz",
            vec![
                ("Nats-Schedule", "* * * * * *"),
                t("out.cz"),
                ("Nats-Schedule-Time-Zone", "America/New_York"),
            ],
        ),
        (
            "sch.s",
            vec![
                ("Nats-Schedule", "@every 1s"),
                t("out.s"),
                ("Nats-Schedule-Source", "src.x"),
            ],
        ),
    ] {
        let v = publish(nc, subject, &hdrs, &format!("body of {subject}")).await;
        out.push((format!("schedule {subject}"), v));
    }
    for target in ["out.at", "out.e", "out.c", "out.cz", "out.s"] {
        out.push((format!("fired {target}"), fired(nc, target).await));
    }
    // Storing the fired message of an `@at` purged the schedule.
    let gone = stored(nc, "S", json!({"last_by_subj": "sch.at"})).await;
    out.push(("one-shot schedule gone".into(), gone["err_code"].clone()));
    out.push(("repeating schedule kept".into(), fired(nc, "sch.e").await));
    let v = publish(
        nc,
        "out.cancel",
        &[("Nats-Schedule-Next", "purge"), ("Nats-Scheduler", "sch.e")],
        "",
    )
    .await;
    out.push(("cancel".into(), v));
    let gone = stored(nc, "S", json!({"last_by_subj": "sch.e"})).await;
    out.push(("cancelled schedule gone".into(), gone["err_code"].clone()));
    let mut cfg = api(nc, "$JS.API.STREAM.INFO.S", json!({})).await["config"].clone();
    cfg["allow_msg_schedules"] = json!(false);
    let v = api(nc, "$JS.API.STREAM.UPDATE.S", cfg).await;
    out.push(("turn off".into(), v["error"].clone()));
    out
}

#[tokio::test]
async fn schedules_match_reference() {
    let want = on_both("schedules", |nc| async move { scenario(&nc).await }).await;
    let every = find(&want, "fired out.e").to_string();
    assert!(every.contains("Nats-Scheduler: sch.e"), "{every}");
}

/// A repeating schedule keeps firing after the broker restarts on the same store.
#[tokio::test]
async fn schedules_survive_a_restart() {
    let dir = tempdir::TempDir::new("sched-restart");
    let count = |v: Value| v["state"]["subjects"]["out.r"].as_u64().unwrap_or(0);
    {
        let (_p, url) = proc::jetstream(false, dir.path());
        let nc = async_nats::connect(&url).await.unwrap();
        let v = api(
            &nc,
            "$JS.API.STREAM.CREATE.S",
            json!({"name": "S", "subjects": ["sch.>", "out.>"], "allow_msg_schedules": true}),
        )
        .await;
        assert!(v.get("error").is_none(), "{v}");
        let ack = publish(
            &nc,
            "sch.r",
            &[
                ("Nats-Schedule", "@every 1s"),
                ("Nats-Schedule-Target", "out.r"),
            ],
            "tick",
        )
        .await;
        assert_eq!(ack["stream"], json!("S"), "{ack}");
    }
    let (_p, url) = proc::jetstream(false, dir.path());
    let nc = async_nats::connect(&url).await.unwrap();
    let info = || {
        api(
            &nc,
            "$JS.API.STREAM.INFO.S",
            json!({"subjects_filter": "out.>"}),
        )
    };
    let before = count(info().await);
    let deadline = Instant::now() + Duration::from_secs(10);
    while count(info().await) < before + 2 {
        assert!(Instant::now() < deadline, "no firing after the restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

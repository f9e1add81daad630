//! Server-wide options nats-server users set, against the reference: `no_sys_acc` (no system
//! account: not in `/varz`, `/accountz`, and no `$SYS` services for anyone), `server_metadata`
//! (in `/varz` `metadata`) and an account's `nkey` in a config-defined account.

mod common;

use std::time::Duration;

use common::{
    http::http_get,
    proc::{addr_after, Proc},
    tempdir::TempDir,
};
use serde_json::{json, Value};

const CONF: &str = r#"
no_sys_acc: true
server_metadata: { zone: "eu-1", rack: r7 }
accounts {
  A: { nkey: AA3MYTX5KA7G5IWEPYJIIGLXWBE47W2W326FCYAORYIB37G66HRV3G6M, users: [{user: a, password: a}] }
}
"#;

/// What a user sees of the server: the monitoring fields these options change, and whether
/// the system services answer a request.
async fn observe(reference: bool, dir: &TempDir) -> Value {
    let file = dir.path().join("opts.conf");
    std::fs::write(&file, CONF).unwrap();
    let f = file.display().to_string();
    let args = ["-c", &f, "-a", "127.0.0.1", "-p", "-1", "-m", "-1"];
    let p = if reference {
        Proc::reference(&args)
    } else {
        Proc::natrix(&args)
    };
    let client = p.ready();
    let http = addr_after(
        &p.wait_line("Starting http monitor on "),
        "Starting http monitor on ",
    );
    let json = |path: &str| -> Value { serde_json::from_str(&http_get(http, path).1).unwrap() };
    let varz = json("/varz");
    let mut accounts: Vec<String> = json("/accountz")["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    accounts.sort();
    let nc = async_nats::ConnectOptions::with_user_and_password("a".into(), "a".into())
        .connect(format!("nats://{client}"))
        .await
        .unwrap();
    let ping = tokio::time::timeout(
        Duration::from_secs(2),
        nc.request("$SYS.REQ.SERVER.PING", "".into()),
    )
    .await;
    let ping = match ping {
        Ok(Ok(_)) => "answered".to_string(),
        Ok(Err(e)) => format!("{:?}", e.kind()),
        Err(_) => "timeout".to_string(),
    };
    json!({
        "metadata": varz["metadata"],
        "system_account": varz.get("system_account"),
        "accounts": accounts,
        "server ping": ping,
    })
}

#[tokio::test]
async fn no_sys_acc_server_metadata_and_account_nkey_match_reference() {
    let dir = TempDir::new("server-options");
    let want = observe(true, &dir).await;
    let got = observe(false, &dir).await;
    assert_eq!(got, want, "natrix (left) vs nats-server (right)");
    assert_eq!(want["metadata"], json!({"rack": "r7", "zone": "eu-1"}));
    assert_eq!(want["system_account"], Value::Null);
}

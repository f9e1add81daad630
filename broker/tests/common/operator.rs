//! Operator-mode identities for tests: an operator whose system account is signed by it, user
//! credentials issued by an account, and a client that connects with them.
#![allow(dead_code)]

use std::time::Duration;

use natrix_jwt::{encode, format_user_creds, AccountClaims, OperatorClaims, UserClaims};
use nkeys::KeyPair;

/// An operator and its system account, with both JWTs.
pub struct Keys {
    pub op: KeyPair,
    pub sys: KeyPair,
    pub op_jwt: String,
    pub sys_jwt: String,
}

/// A fresh operator whose JWT names a fresh system account.
pub fn keys() -> Keys {
    let op = KeyPair::new_operator();
    let sys = KeyPair::new_account();
    let mut oc = OperatorClaims::new(op.public_key());
    oc.nats.system_account = sys.public_key();
    let op_jwt = encode(&oc, &op).unwrap();
    let sys_jwt = encode(&AccountClaims::new(sys.public_key()), &op).unwrap();
    Keys {
        op,
        sys,
        op_jwt,
        sys_jwt,
    }
}

/// A `.creds` file's text for `user`, issued by `account`.
pub fn creds(account: &KeyPair, user: &KeyPair) -> String {
    let jwt = encode(&UserClaims::new(user.public_key()), account).unwrap();
    format_user_creds(&jwt, &user.seed().unwrap()).unwrap()
}

/// Connects with `creds`, without reconnecting; the error (or "timeout") as text.
pub async fn connect(url: &str, creds: &str) -> Result<async_nats::Client, String> {
    let opts = async_nats::ConnectOptions::with_credentials(creds)
        .map_err(|e| e.to_string())?
        .max_reconnects(Some(0));
    match tokio::time::timeout(Duration::from_secs(5), opts.connect(url)).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err("timeout".into()),
    }
}

//! The Account reconciler: an account key (Secret `<account>-account`, created once) and an
//! account JWT signed by the NatsCluster's operator signing key with the spec's limits,
//! exports and imports; a creds Secret per user (and one for the operator itself); the JWT
//! pushed to every broker's nats-resolver with `$SYS.REQ.CLAIMS.UPDATE` as the system user, on
//! every change and every resync; `$SYS.REQ.CLAIMS.DELETE` behind a finalizer.

pub mod push;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use nkeys::KeyPair;

use crate::auth::{self, OperatorKeys};
use crate::client_auth::{self, Login};
use crate::conditions::{self, Cond};
use crate::context::Context;
use crate::crd::{
    Account, AccountStatus, NatsCluster, PushResult, CONDITION_DEGRADED, CONDITION_READY,
};
use crate::error::{Error, Result};
use crate::reconcile::Reconciled;
use crate::render;

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "account";
/// Finalizer that deletes the account from the resolvers before the resource goes.
pub const FINALIZER: &str = "natrix.io/account";
/// Label on the Secrets of an Account: the Account's name.
pub const LABEL_ACCOUNT: &str = "natrix.io/account";
/// Label on a creds Secret: the user's name.
pub const LABEL_USER: &str = "natrix.io/user";
/// Annotation on a creds Secret: hash of the user spec its JWT was issued for.
pub const USER_HASH_ANNOTATION: &str = "natrix.io/user-hash";
/// Account Secret key: revoked user keys (JSON `{pubkey: unix seconds}`).
pub const REVOCATIONS_KEY: &str = "revocations.json";
/// Account Secret key: the last signed account JWT, pushed again while the claims are unchanged.
pub const JWT_KEY: &str = "account.jwt";
/// Account Secret key: claims hash and signing key of `account.jwt`.
pub const JWT_FOR_KEY: &str = "account.jwt.for";
/// How long to wait for something another reconciler or resource provides.
const WAIT: Duration = Duration::from_secs(5);

/// Name of the Secret holding an Account's seed.
pub fn account_secret_name(account: &str) -> String {
    format!("{account}-account")
}

/// Name of the creds Secret of a user of an Account.
pub fn creds_secret_name(account: &str, user: &str) -> String {
    format!("{account}-{user}-creds")
}

/// Write `new` as the status if it differs; push results no longer present are removed.
async fn write_status(a: &Account, ctx: &Context, new: &AccountStatus) -> Result<()> {
    let old = a.status.clone().unwrap_or_default();
    if &old == new {
        return Ok(());
    }
    let ns = a.namespace().ok_or(Error::MissingMetadata("namespace"))?;
    let mut v = serde_json::to_value(new)?;
    // A merge patch merges maps: name the servers that are gone.
    let gone: serde_json::Map<String, serde_json::Value> = old
        .push_results
        .keys()
        .filter(|k| !new.push_results.contains_key(*k))
        .map(|k| (k.clone(), serde_json::Value::Null))
        .collect();
    if !gone.is_empty() {
        let pr = v
            .as_object_mut()
            .map(|o| o.entry("pushResults").or_insert(serde_json::json!({})));
        if let Some(serde_json::Value::Object(m)) = pr {
            m.extend(gone);
        }
    }
    let api: Api<Account> = Api::namespaced(ctx.client.clone(), &ns);
    api.patch_status(
        &a.name_any(),
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({ "status": v })),
    )
    .await?;
    Ok(())
}

/// The Account cannot be pushed yet: Ready false with `reason` and `message`, Degraded false.
async fn blocked(a: &Account, ctx: &Context, reason: &str, message: String) -> Result<()> {
    let mut st = a.status.clone().unwrap_or_default();
    let gen = a.metadata.generation;
    let now = Timestamp::now();
    let was = conditions::get(&st.common.conditions, CONDITION_READY).map(|c| c.reason.clone());
    conditions::set(
        &mut st.common.conditions,
        &Cond::new(CONDITION_READY, false, reason, message.clone()),
        gen,
        now,
    );
    conditions::set(
        &mut st.common.conditions,
        &Cond::new(CONDITION_DEGRADED, false, reason, "nothing pushed yet"),
        gen,
        now,
    );
    st.common.observed_generation = gen;
    write_status(a, ctx, &st).await?;
    if was.as_deref() != Some(reason) {
        ctx.event(a, true, reason, "Reconcile", message).await;
    }
    Ok(())
}

fn decoded(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    s.data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect()
}

fn auth_err(e: auth::AuthError) -> Error {
    Error::Auth(e.to_string())
}

fn secret_meta(a: &Account, name: &str, user: Option<&str>) -> Result<ObjectMeta> {
    let mut labels = BTreeMap::from([
        (LABEL_ACCOUNT.to_string(), a.name_any()),
        (
            "app.kubernetes.io/managed-by".to_string(),
            "natrix-controller".to_string(),
        ),
    ]);
    if let Some(u) = user {
        labels.insert(LABEL_USER.into(), u.into());
    }
    Ok(ObjectMeta {
        name: Some(name.into()),
        namespace: a.namespace(),
        labels: Some(labels),
        owner_references: Some(vec![a
            .controller_owner_ref(&())
            .ok_or(Error::MissingMetadata("uid"))?]),
        ..Default::default()
    })
}

/// The account key pair (its Secret created on first use), the revoked user keys, and the last
/// signed JWT with what it was signed for.
async fn account_key(
    a: &Account,
    secrets: &Api<Secret>,
) -> Result<(KeyPair, BTreeMap<String, i64>, Option<(String, String)>)> {
    let name = account_secret_name(&a.name_any());
    let s = match secrets.get_opt(&name).await? {
        Some(s) => s,
        None => {
            let (seed, _) = auth::new_account_key().map_err(auth_err)?;
            let s = Secret {
                metadata: secret_meta(a, &name, None)?,
                string_data: Some(BTreeMap::from([(auth::ACCOUNT_SEED_KEY.into(), seed)])),
                type_: Some("Opaque".into()),
                ..Default::default()
            };
            match secrets.create(&PostParams::default(), &s).await {
                Ok(s) => s,
                Err(kube::Error::Api(e)) if e.code == 409 => secrets.get(&name).await?,
                Err(e) => return Err(e.into()),
            }
        }
    };
    let data = decoded(&s);
    let kp = auth::secret_seed(&name, &data, auth::ACCOUNT_SEED_KEY).map_err(auth_err)?;
    let revoked = data
        .get(REVOCATIONS_KEY)
        .and_then(|v| serde_json::from_slice(v).ok())
        .unwrap_or_default();
    let last = auth::secret_str(&name, &data, JWT_FOR_KEY)
        .ok()
        .zip(auth::secret_str(&name, &data, JWT_KEY).ok())
        .map(|(f, j)| (f.to_string(), j.to_string()));
    Ok((kp, revoked, last))
}

/// Creds Secrets for every spec user and the operator's own user; users removed from the spec
/// (and users whose spec changed) are revoked. Returns the revocations to put in the JWT.
async fn sync_users(
    a: &Account,
    ctx: &Context,
    secrets: &Api<Secret>,
    account: &KeyPair,
    mut revoked: BTreeMap<String, i64>,
) -> Result<BTreeMap<String, i64>> {
    let name = a.name_any();
    let before = revoked.clone();
    let now = natrix_jwt::now();
    let mut wanted: Vec<(String, String, natrix_jwt::UserClaims)> = Vec::new();
    for u in &a.spec.users {
        let c = auth::user_claims(u, now).map_err(auth_err)?;
        wanted.push((u.name.clone(), auth::user_hash(u), c));
    }
    let mut own = natrix_jwt::UserClaims::new("");
    own.name = "natrix-controller".into();
    wanted.push((auth::OPERATOR_USER.into(), "operator".into(), own));
    let names: BTreeSet<&str> = wanted.iter().map(|(n, _, _)| n.as_str()).collect();

    for (user, hash, claims) in &wanted {
        let sname = creds_secret_name(&name, user);
        let existing = secrets.get_opt(&sname).await?;
        if let Some(s) = &existing {
            let ours = s.labels().get(LABEL_ACCOUNT) == Some(&name);
            if !ours {
                return Err(Error::Auth(format!(
                    "Secret {sname} exists but was not made for this Account; rename the user \
                     or delete that Secret"
                )));
            }
            if s.annotations().get(USER_HASH_ANNOTATION) == Some(hash)
                && !renewal_due(&decoded(s), now)
            {
                continue;
            }
        }
        // New user, a changed spec or an expiring JWT: a new key, and the old one revoked.
        let data = auth::user_creds_data(account, claims.clone(), None).map_err(auth_err)?;
        let mut meta = secret_meta(a, &sname, Some(user))?;
        meta.annotations = Some(BTreeMap::from([(
            USER_HASH_ANNOTATION.to_string(),
            hash.clone(),
        )]));
        let secret = Secret {
            metadata: meta,
            string_data: Some(data),
            type_: Some("Opaque".into()),
            ..Default::default()
        };
        match existing {
            None => {
                secrets.create(&PostParams::default(), &secret).await?;
                if user != auth::OPERATOR_USER {
                    ctx.event(
                        a,
                        false,
                        "UserCreated",
                        "Create",
                        format!("user {user}: creds in Secret {sname}"),
                    )
                    .await;
                }
            }
            Some(old) => {
                if let Ok(pk) = auth::secret_str(&sname, &decoded(&old), auth::USER_PUBLIC_KEY) {
                    revoked.insert(pk.to_string(), now);
                }
                secrets
                    .patch(
                        &sname,
                        &PatchParams::default(),
                        &Patch::Merge(serde_json::json!({
                            "metadata": {"annotations": {USER_HASH_ANNOTATION: hash}},
                            "stringData": secret.string_data,
                        })),
                    )
                    .await?;
                ctx.event(
                    a,
                    false,
                    "UserUpdated",
                    "Update",
                    format!(
                        "user {user} changed: new creds in Secret {sname}; the previous ones are revoked"
                    ),
                )
                .await;
            }
        }
    }

    let lp = ListParams::default().labels(&format!("{LABEL_ACCOUNT}={name},{LABEL_USER}"));
    for s in secrets.list(&lp).await? {
        let user = s.labels().get(LABEL_USER).cloned().unwrap_or_default();
        if names.contains(user.as_str()) {
            continue;
        }
        let sname = s.name_any();
        if let Ok(pk) = auth::secret_str(&sname, &decoded(&s), auth::USER_PUBLIC_KEY) {
            revoked.insert(pk.to_string(), now);
        }
        secrets.delete(&sname, &DeleteParams::default()).await?;
        ctx.event(
            a,
            false,
            "UserRemoved",
            "Delete",
            format!("user {user} is no longer in the spec: revoked, Secret {sname} deleted"),
        )
        .await;
    }

    if revoked != before {
        let asecret = account_secret_name(&name);
        secrets
            .patch(
                &asecret,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({
                    "stringData": {REVOCATIONS_KEY: serde_json::to_string(&revoked)?},
                })),
            )
            .await?;
    }
    Ok(revoked)
}

/// Whether the user JWT in a creds Secret expires within a third of its lifetime (it is then
/// issued again, with a new key, and the old one revoked). JWTs without expiry never are.
fn renewal_due(data: &BTreeMap<String, Vec<u8>>, now: i64) -> bool {
    let Some(creds) = data
        .get(auth::CREDS_KEY)
        .and_then(|v| std::str::from_utf8(v).ok())
    else {
        return true;
    };
    let jwt = natrix_jwt::parse_decorated_jwt(creds);
    match natrix_jwt::decode_as::<natrix_jwt::User>(&jwt) {
        Ok(c) if c.exp == 0 => false,
        Ok(c) => (c.exp - now) * 3 < (c.exp - c.iat),
        Err(_) => true,
    }
}

/// The NatsCluster of an Account, when it exists, is not being deleted and is in operator
/// mode; otherwise why not.
async fn cluster(a: &Account, ctx: &Context) -> Result<std::result::Result<NatsCluster, String>> {
    let ns = a.namespace().ok_or(Error::MissingMetadata("namespace"))?;
    let cname = &a.spec.cluster_ref.name;
    let api: Api<NatsCluster> = Api::namespaced(ctx.client.clone(), &ns);
    Ok(match api.get_opt(cname).await? {
        None => Err(format!(
            "NatsCluster {ns}/{cname} not found; create it or fix spec.clusterRef.name"
        )),
        Some(nc) if nc.metadata.deletion_timestamp.is_some() => {
            Err(format!("NatsCluster {ns}/{cname} is being deleted"))
        }
        Some(nc) if !nc.spec.auth.operator_mode => Err(format!(
            "NatsCluster {ns}/{cname} is not in operator mode: set spec.auth.operatorMode and \
             spec.resolver.enabled to true there (accounts are JWTs pushed to the full resolver)"
        )),
        Some(nc) => Ok(nc),
    })
}

/// The operator keys of a NatsCluster, or why they cannot be read.
async fn operator_keys(
    nc: &NatsCluster,
    secrets: &Api<Secret>,
) -> Result<std::result::Result<OperatorKeys, (&'static str, String)>> {
    let n = render::names(nc)?;
    Ok(match secrets.get_opt(&n.operator_secret).await? {
        None => Err((
            "WaitingForOperatorKeys",
            format!(
                "Secret {} (operator keys) does not exist yet; the NatsCluster reconciler creates it",
                n.operator_secret
            ),
        )),
        Some(s) => OperatorKeys::from_secret(&n.operator_secret, &decoded(&s)).map_err(|e| {
            (
                "InvalidOperatorSecret",
                format!(
                    "{e}; restore Secret {} from a backup (deleting it makes the operator create \
                     new keys, and every Account must then be pushed again)",
                    n.operator_secret
                ),
            )
        }),
    })
}

impl Reconciled for Account {
    const CONTROLLER: &'static str = CONTROLLER;
    const FINALIZER: Option<&'static str> = Some(FINALIZER);

    async fn apply(a: &Account, ctx: &Context) -> Result<Action> {
        let ns = a.namespace().ok_or(Error::MissingMetadata("namespace"))?;
        let name = a.name_any();
        let resync = Action::requeue(ctx.settings.account_resync);
        let wait = Action::requeue(WAIT);
        if a.spec.users.iter().any(|u| u.name == auth::OPERATOR_USER) {
            let msg = format!(
            "spec.users: the name {:?} is reserved for the operator's own user; rename the user",
            auth::OPERATOR_USER
        );
            blocked(a, ctx, "InvalidSpec", msg).await?;
            return Ok(Action::await_change());
        }
        let nc = match cluster(a, ctx).await? {
            Ok(nc) => nc,
            Err(msg) => {
                blocked(a, ctx, "ClusterNotReady", msg).await?;
                return Ok(resync);
            }
        };
        let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
        let keys = match operator_keys(&nc, &secrets).await? {
            Ok(k) => k,
            Err((reason, msg)) => {
                blocked(a, ctx, reason, msg).await?;
                return Ok(wait);
            }
        };
        let (account, revoked, last) = account_key(a, &secrets).await?;
        let accounts: Api<Account> = Api::namespaced(ctx.client.clone(), &ns);
        let mut exporters = BTreeMap::new();
        for imp in &a.spec.imports {
            let key = accounts
                .get_opt(&imp.account)
                .await?
                .and_then(|x| x.status)
                .and_then(|s| s.account_public_key);
            match key {
                Some(k) => {
                    exporters.insert(imp.account.clone(), k);
                }
                None => {
                    let msg = format!(
                    "import of {:?} from Account {ns}/{}: that Account does not exist or has no \
                     key yet; create it (same namespace) or fix spec.imports",
                    imp.subject, imp.account
                );
                    blocked(a, ctx, "ImportNotResolved", msg).await?;
                    return Ok(wait);
                }
            }
        }
        let revoked = sync_users(a, ctx, &secrets, &account, revoked).await?;
        let mut claims =
            match auth::account_claims(&name, &account.public_key(), &a.spec, &exporters) {
                Ok(c) => c,
                Err(e) => {
                    blocked(a, ctx, "InvalidSpec", format!("{e}; fix the Account spec")).await?;
                    return Ok(Action::await_change());
                }
            };
        claims.nats.revocations = revoked;
        let hash = auth::claims_hash(&claims);
        // The same JWT while nothing changed: brokers see one issue time per change.
        let signed_for = format!("{hash}/{}", keys.signing.public_key());
        let jwt = match last {
            Some((f, jwt)) if f == signed_for => jwt,
            _ => {
                let jwt = natrix_jwt::encode(&claims, &keys.signing)
                    .map_err(|e| Error::Auth(e.to_string()))?;
                secrets
                    .patch(
                        &account_secret_name(&name),
                        &PatchParams::default(),
                        &Patch::Merge(serde_json::json!({
                            "stringData": {JWT_KEY: jwt, JWT_FOR_KEY: signed_for},
                        })),
                    )
                    .await?;
                jwt
            }
        };

        let servers = push::servers(&nc, &ctx.settings)?;
        let sys = match client_auth::for_cluster(&ctx.client, &nc).await? {
            Ok(mut auth) => {
                auth.login = Login::Creds(keys.system_user_creds.clone());
                auth
            }
            Err(msg) => {
                blocked(a, ctx, "ClientAuthInvalid", msg).await?;
                return Ok(Action::requeue(ctx.settings.account_resync));
            }
        };
        let results: Vec<PushResult> = futures::future::join_all(servers.iter().map(|s| {
            push::request(
                &ctx.nats,
                s,
                &sys,
                push::UPDATE_SUBJECT,
                jwt.clone(),
                ctx.settings.nats_timeout,
            )
        }))
        .await;
        let push_results: BTreeMap<String, PushResult> = servers
            .iter()
            .map(|s| s.name.clone())
            .zip(results)
            .collect();

        let old = a.status.clone().unwrap_or_default();
        let mut st = old.clone();
        let gen = a.metadata.generation;
        let now = Timestamp::now();
        let total = push_results.len();
        let failed: Vec<String> = push_results
            .iter()
            .filter(|(_, r)| !r.ok)
            .map(|(n, r)| format!("{n}: {}", r.message.clone().unwrap_or_default()))
            .collect();
        let short = &hash[..12];
        let all_ok = failed.is_empty() && total > 0;
        if all_ok {
            conditions::set(
                &mut st.common.conditions,
                &Cond::new(
                    CONDITION_READY,
                    true,
                    "Pushed",
                    format!("account JWT (claims {short}) accepted by all {total} servers"),
                ),
                gen,
                now,
            );
            conditions::set(
                &mut st.common.conditions,
                &Cond::new(
                    CONDITION_DEGRADED,
                    false,
                    "AllServersAccepted",
                    "every server has the current account JWT",
                ),
                gen,
                now,
            );
        } else {
            let msg = if total == 0 {
                "the NatsCluster has no servers to push to".to_string()
            } else {
                format!(
                    "{} of {total} servers did not accept the account JWT (claims {short}): {}; \
                 retrying every {:?}",
                    failed.len(),
                    failed.join("; "),
                    WAIT * 2
                )
            };
            conditions::set(
                &mut st.common.conditions,
                &Cond::new(
                    CONDITION_READY,
                    false,
                    "PushFailed",
                    format!("{msg}; see status.pushResults"),
                ),
                gen,
                now,
            );
            conditions::set(
                &mut st.common.conditions,
                &Cond::new(CONDITION_DEGRADED, true, "PushFailed", msg),
                gen,
                now,
            );
        }
        st.account_public_key = Some(account.public_key());
        st.claims_hash = Some(hash.clone());
        st.push_results = push_results;
        st.common.observed_generation = gen;
        write_status(a, ctx, &st).await?;

        let was_ready = conditions::is_true(&old.common.conditions, CONDITION_READY);
        let changed = old.claims_hash.as_deref() != Some(hash.as_str());
        if all_ok && (changed || !was_ready) {
            ctx.event(
                a,
                false,
                "Pushed",
                "Push",
                format!("pushed account JWT (claims {short}) to {total} servers"),
            )
            .await;
        } else if !all_ok && (changed || was_ready || old.push_results != st.push_results) {
            let msg = conditions::get(&st.common.conditions, CONDITION_DEGRADED)
                .map(|c| c.message.clone())
                .unwrap_or_default();
            ctx.event(a, true, "PushFailed", "Push", msg).await;
        }
        Ok(if all_ok {
            resync
        } else {
            Action::requeue(WAIT * 2)
        })
    }

    async fn cleanup(a: &Account, ctx: &Context) -> Result<Action> {
        let ns = a.namespace().ok_or(Error::MissingMetadata("namespace"))?;
        let done = Action::await_change();
        let nc = match cluster(a, ctx).await? {
            Ok(nc) => nc,
            Err(msg) => {
                ctx.event(
                    a,
                    false,
                    "DeleteSkipped",
                    "Delete",
                    format!("{msg}; nothing to delete"),
                )
                .await;
                return Ok(done);
            }
        };
        let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
        let keys = match operator_keys(&nc, &secrets).await? {
            Ok(k) => k,
            Err((_, msg)) => {
                ctx.event(a, true, "DeleteSkipped", "Delete", msg).await;
                return Ok(done);
            }
        };
        let pubkey = match a.status.as_ref().and_then(|s| s.account_public_key.clone()) {
            Some(k) => k,
            None => match account_key(a, &secrets).await {
                Ok((kp, _, _)) => kp.public_key(),
                Err(_) => return Ok(done),
            },
        };
        let req = auth::delete_request(&keys.operator, std::slice::from_ref(&pubkey))
            .map_err(auth_err)?;
        let servers = push::servers(&nc, &ctx.settings)?;
        let sys = match client_auth::for_cluster(&ctx.client, &nc).await? {
            Ok(mut auth) => {
                auth.login = Login::Creds(keys.system_user_creds.clone());
                auth
            }
            Err(msg) => {
                ctx.event(a, true, "DeleteSkipped", "Delete", msg).await;
                return Ok(done);
            }
        };
        let results = futures::future::join_all(servers.iter().map(|s| {
            push::request(
                &ctx.nats,
                s,
                &sys,
                push::DELETE_SUBJECT,
                req.clone(),
                ctx.settings.nats_timeout,
            )
        }))
        .await;
        let refused: Vec<String> = servers
            .iter()
            .zip(&results)
            .filter(|(_, r)| !r.ok)
            .map(|(s, r)| format!("{}: {}", s.name, r.message.clone().unwrap_or_default()))
            .collect();
        if refused.is_empty() {
            ctx.event(
                a,
                false,
                "Deleted",
                "Delete",
                format!(
                    "account {pubkey} deleted from the resolver of {} servers",
                    servers.len()
                ),
            )
            .await;
        } else {
            ctx.event(
                a,
                true,
                "DeleteRefused",
                "Delete",
                format!(
                "account {pubkey} could not be deleted from {} of {} servers ({}); its JWT stays \
                 in their resolver directory (is allow_delete off?) and its users can still log \
                 in there until it is removed by hand",
                refused.len(),
                servers.len(),
                refused.join("; ")
            ),
            )
            .await;
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds_at(exp_in: Option<i64>, now: i64) -> BTreeMap<String, Vec<u8>> {
        let acc = KeyPair::new_account();
        let mut c = natrix_jwt::UserClaims::new("");
        if let Some(e) = exp_in {
            c.exp = now + e;
        }
        auth::user_creds_data(&acc, c, None)
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .collect()
    }

    #[test]
    fn expiring_user_jwts_are_renewed_in_their_last_third() {
        let now = natrix_jwt::now();
        assert!(!renewal_due(&creds_at(None, now), now));
        let d = creds_at(Some(3000), now);
        assert!(!renewal_due(&d, now));
        assert!(!renewal_due(&d, now + 1900));
        assert!(renewal_due(&d, now + 2100));
        assert!(renewal_due(&BTreeMap::new(), now));
    }

    #[test]
    fn secret_names() {
        assert_eq!(account_secret_name("team-a"), "team-a-account");
        assert_eq!(creds_secret_name("team-a", "app"), "team-a-app-creds");
        assert_eq!(
            creds_secret_name("team-a", auth::OPERATOR_USER),
            "team-a-operator-creds"
        );
    }
}

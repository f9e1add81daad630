//! Cross-check with the nats-io-jwt crate: tokens it mints decode and verify with natrix-jwt,
//! and natrix-jwt payloads parse with its (schema-generated, deny_unknown_fields) types.

use natrix_jwt::{
    decode, encode, verify_account, verify_user, AccountClaims, Claims, OperatorClaims, SigningKey,
    UserClaims,
};
use nats_io_jwt::{Account, Operator, Permission, SigningKeys, Token, User};
use nkeys::KeyPair;

fn payload(token: &str) -> serde_json::Value {
    let p = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&data_encoding::BASE64URL_NOPAD.decode(p.as_bytes()).unwrap()).unwrap()
}

#[test]
fn tokens_minted_by_nats_io_jwt_verify() {
    let okp = KeyPair::new_operator();
    let akp = KeyPair::new_account();
    let ask = KeyPair::new_account();
    let ukp = KeyPair::new_user();

    let op: Operator = Operator::builder().try_into().unwrap();
    let ot = Token::new(okp.public_key())
        .name("OP")
        .claims(op)
        .sign(&okp);
    let Claims::Operator(oc) = decode(&ot).unwrap() else {
        panic!("operator")
    };
    assert_eq!(oc.name, "OP");
    assert_eq!(oc.sub, okp.public_key());

    let account: Account = Account::builder()
        .signing_keys(SigningKeys::from(&ask))
        .try_into()
        .unwrap();
    let at = Token::new(akp.public_key())
        .name("ACC")
        .claims(account)
        .sign(&okp);
    let ac = verify_account(&at, &oc).unwrap();
    assert_eq!(ac.name, "ACC");
    assert_eq!(
        ac.nats.signing_keys,
        vec![SigningKey::Plain(ask.public_key())]
    );

    let user: User = User::builder()
        .pub_(Permission::from("svc.>"))
        .sub(Permission::from(vec!["_INBOX.>", "svc.replies"]))
        .subs(10)
        .payload(1024)
        .bearer_token(false)
        .try_into()
        .unwrap();
    let ut = Token::new(ukp.public_key())
        .name("U")
        .claims(user.clone())
        .sign(&akp);
    let v = verify_user(&ut, &ac, &akp.public_key()).unwrap();
    assert_eq!(v.permissions.publish.allow, vec!["svc.>"]);
    assert_eq!(
        v.permissions.subscribe.allow,
        vec!["_INBOX.>", "svc.replies"]
    );
    assert_eq!(
        (
            v.permissions.subs,
            v.permissions.payload,
            v.permissions.data
        ),
        (10, 1024, -1)
    );

    // signed by the account signing key, naming the account
    let user_sk: User = User::builder()
        .issuer_account(Some(akp.public_key()))
        .try_into()
        .unwrap();
    let ut = Token::new(ukp.public_key()).claims(user_sk).sign(&ask);
    let v = verify_user(&ut, &ac, &akp.public_key()).unwrap();
    assert_eq!(v.signing_key, Some(ask.public_key()));

    // expired token minted by nats-io-jwt is refused
    let ut = Token::new(ukp.public_key())
        .claims(user)
        .expires(natrix_jwt::now() - 5)
        .sign(&akp);
    assert!(matches!(
        verify_user(&ut, &ac, &akp.public_key()),
        Err(natrix_jwt::Error::Expired)
    ));
}

#[test]
fn natrix_payloads_parse_with_nats_io_jwt_types() {
    let okp = KeyPair::new_operator();
    let akp = KeyPair::new_account();
    let ukp = KeyPair::new_user();
    let mut oc = OperatorClaims::new(okp.public_key());
    oc.nats.system_account = akp.public_key();
    let mut ac = AccountClaims::new(akp.public_key());
    ac.nats
        .signing_keys
        .push(SigningKey::Plain(KeyPair::new_account().public_key()));
    ac.nats.revocations.insert(ukp.public_key(), 5);
    let mut uc = UserClaims::new(ukp.public_key());
    uc.nats.limits.publish.allow = vec!["a".into()];
    for (token, kind) in [
        (encode(&oc, &okp).unwrap(), "operator"),
        (encode(&ac, &okp).unwrap(), "account"),
        (encode(&uc, &akp).unwrap(), "user"),
    ] {
        let jwt: nats_io_jwt::Jwt = serde_json::from_value(payload(&token))
            .unwrap_or_else(|e| panic!("{kind}: nats-io-jwt cannot parse our payload: {e}"));
        let ok = matches!(
            (&jwt.nats, kind),
            (nats_io_jwt::Claims::Operator(_), "operator")
                | (nats_io_jwt::Claims::Account(_), "account")
                | (nats_io_jwt::Claims::User(_), "user")
        );
        assert!(ok, "{kind}: parsed as {:?}", jwt.nats);
    }
}

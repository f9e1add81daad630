//! nats.conf syntax: every feature of the format, and error positions.

use std::path::Path;

use natrix_broker::config::{parse_file, parser, ConfigError, Kind, Map, Value};

fn env(name: &str) -> Option<String> {
    match name {
        "TEST_PORT" => Some("4333".into()),
        "TEST_STR" => Some("hello".into()),
        "TEST_BAD" => Some("[1, 2".into()),
        "TEST_SELF" => Some("$TEST_SELF".into()),
        _ => None,
    }
}

fn parse(s: &str) -> Result<Map, ConfigError> {
    parser::parse_str(s, "nats.conf", Path::new(""), &env)
}

fn ok(s: &str) -> Map {
    parse(s).unwrap_or_else(|e| panic!("{s:?} failed: {e}"))
}

fn err(s: &str) -> String {
    match parse(s) {
        Ok(m) => panic!("{s:?} parsed: {m:?}"),
        Err(e) => e.to_string(),
    }
}

fn get<'a>(m: &'a Map, k: &str) -> &'a Kind {
    &m.get(k)
        .unwrap_or_else(|| panic!("no key {k} in {m:?}"))
        .kind
}

fn s(v: &str) -> Kind {
    Kind::String(v.into())
}

#[test]
fn separators() {
    let m = ok("a: 1\nb = 2\nc 3\nd:4\ne=5; f: 6, g: 7");
    for (k, v) in [
        ("a", 1),
        ("b", 2),
        ("c", 3),
        ("d", 4),
        ("e", 5),
        ("f", 6),
        ("g", 7),
    ] {
        assert_eq!(get(&m, k), &Kind::Int(v), "{k}");
    }
}

#[test]
fn blocks() {
    let m = ok("auth {\n  user: a\n  nested { x: 1 }\n}\nb: {c = true, d = \"x\"}");
    let Kind::Map(auth) = get(&m, "auth") else {
        panic!()
    };
    assert_eq!(get(auth, "user"), &s("a"));
    let Kind::Map(nested) = get(auth, "nested") else {
        panic!()
    };
    assert_eq!(get(nested, "x"), &Kind::Int(1));
    let Kind::Map(b) = get(&m, "b") else { panic!() };
    assert_eq!(get(b, "c"), &Kind::Bool(true));
    // `e{` without a space: nats-server lexes the key as "e{" and then fails.
    assert!(parse("e{\nf: 1\n}").is_err());
    // A whole file wrapped in braces, JSON style.
    let m = ok("{\n  port: 4222\n  debug: true\n}\n");
    assert_eq!(get(&m, "port"), &Kind::Int(4222));
    // Map values may be on the next line inside blocks.
    let m = ok("a {\n b:\n  2\n}");
    let Kind::Map(a) = get(&m, "a") else { panic!() };
    assert_eq!(get(a, "b"), &Kind::Int(2));
}

#[test]
fn arrays() {
    let m = ok("a: [1, 2, 3, ]\nb: [\n  x\n  \"y\" # c\n  'z'\n]\nc: []\nd: [[1, 2, ], {k: v}]");
    let Kind::Array(a) = get(&m, "a") else {
        panic!()
    };
    assert_eq!(
        a.iter().map(|v| v.kind.clone()).collect::<Vec<_>>(),
        vec![Kind::Int(1), Kind::Int(2), Kind::Int(3)]
    );
    let Kind::Array(b) = get(&m, "b") else {
        panic!()
    };
    assert_eq!(
        b.iter().map(|v| v.kind.clone()).collect::<Vec<_>>(),
        vec![s("x"), s("y"), s("z")]
    );
    assert_eq!(get(&m, "c"), &Kind::Array(vec![]));
    let Kind::Array(d) = get(&m, "d") else {
        panic!()
    };
    assert!(matches!(d[0].kind, Kind::Array(_)));
    assert!(matches!(d[1].kind, Kind::Map(_)));
    // nats-server quirk: an integer directly followed by `]` swallows it.
    assert!(parse("a: [1, 2]").is_err());
    assert!(err("a: [,]").contains("Unexpected array value terminator"));
}

#[test]
fn comments() {
    let m =
        ok("# top\n// slash\na: 1 # trailing\nb: 2 // trailing\nc {\n # in map\n d: 1 // x\n}\n");
    assert_eq!(get(&m, "a"), &Kind::Int(1));
    assert_eq!(get(&m, "b"), &Kind::Int(2));
    // `#` inside an unquoted value is part of it.
    assert_eq!(get(&ok("a: b#c"), "a"), &s("b#c"));
}

#[test]
fn strings() {
    let m = ok(concat!(
        "a: \"x\\ty\\n\\\"q\\\"\\\\\\x41\"\n",
        "b: 'raw \\n \"'\n",
        "c: unquoted-value.with/stuff\n",
        "d: \"\"\n",
        "e: \"multi\nline\"\n",
        "f: \"\\xc3\\xa9\"\n",
    ));
    assert_eq!(get(&m, "a"), &s("x\ty\n\"q\"\\A"));
    assert_eq!(get(&m, "b"), &s("raw \\n \""));
    assert_eq!(get(&m, "c"), &s("unquoted-value.with/stuff"));
    assert_eq!(get(&m, "d"), &s(""));
    assert_eq!(get(&m, "e"), &s("multi\nline"));
    assert_eq!(get(&m, "f"), &s("é"));
    assert!(err("a: \"\\q\"").contains("Invalid escape character 'q'"));
    assert!(err("a: \"\\xZZ\"").contains("two hexadecimal digits"));
    assert!(err("a: \"open").contains("Unexpected EOF"));
}

#[test]
fn quoted_keys() {
    let m = ok("\"my key\": 1\n'other key' = 2\nmap { \"in\": 3 }");
    assert_eq!(get(&m, "my key"), &Kind::Int(1));
    assert_eq!(get(&m, "other key"), &Kind::Int(2));
}

#[test]
fn block_strings() {
    let m = ok("a: (\nline one\nline (two)\n)\nb: 1\n");
    assert_eq!(get(&m, "a"), &s("\nline one\nline (two)\n"));
    assert_eq!(get(&m, "b"), &Kind::Int(1));
}

#[test]
fn booleans() {
    for (t, v) in [
        ("true", true),
        ("TRUE", true),
        ("yes", true),
        ("On", true),
        ("false", false),
        ("No", false),
        ("off", false),
    ] {
        assert_eq!(get(&ok(&format!("a: {t}")), "a"), &Kind::Bool(v), "{t}");
    }
    // Quoted booleans are strings.
    assert_eq!(get(&ok("a: \"true\""), "a"), &s("true"));
}

#[test]
fn numbers_and_suffixes() {
    let cases: &[(&str, i64)] = &[
        ("0", 0),
        ("-1", -1),
        ("1k", 1000),
        ("1K", 1000),
        ("1kb", 1024),
        ("1KB", 1024),
        ("1KiB", 1024),
        ("1ki", 1024),
        ("2m", 2_000_000),
        ("2MB", 2 * 1024 * 1024),
        ("3g", 3_000_000_000),
        ("3GB", 3 << 30),
        ("1t", 1_000_000_000_000),
        ("1TB", 1 << 40),
        ("1p", 1_000_000_000_000_000),
        ("1pb", 1 << 50),
        ("-2k", -2000),
        ("9223372036854775807", i64::MAX),
    ];
    for (t, v) in cases {
        assert_eq!(get(&ok(&format!("a: {t}")), "a"), &Kind::Int(*v), "{t}");
    }
    assert_eq!(get(&ok("a: 1.5"), "a"), &Kind::Float(1.5));
    assert_eq!(get(&ok("a: -0.25"), "a"), &Kind::Float(-0.25));
    assert!(err("a: 99999999999999999999").contains("outside of the integer range"));
    assert!(err("a: 1kbb").contains("invalid size suffix"));
    assert!(err("a: 1.5x").contains("Expected a top-level value to end"));
    assert!(err("a: .5").contains("Floats must start with a digit"));
    assert!(err("a: 12-3").contains("ISO8601"));
}

#[test]
fn durations_hosts_and_dates_stay_strings() {
    for t in ["2s", "500ms", "1h", "1h30m", "1e5", "1k5"] {
        assert_eq!(get(&ok(&format!("a: {t}")), "a"), &s(t), "{t}");
    }
    let m = ok("listen: 0.0.0.0:4222\nb 127.0.0.1:4222\nc: localhost:4222\nd: :4222\ne: 1.2.3.4");
    assert_eq!(get(&m, "listen"), &s("0.0.0.0:4222"));
    assert_eq!(get(&m, "b"), &s("127.0.0.1:4222"));
    assert_eq!(get(&m, "c"), &s("localhost:4222"));
    assert_eq!(get(&m, "d"), &s(":4222"));
    assert_eq!(get(&m, "e"), &s("1.2.3.4"));
    // `listen :4222`: the colon is the key separator, as in nats-server.
    assert_eq!(get(&ok("listen :4222"), "listen"), &Kind::Int(4222));
    assert_eq!(
        get(&ok("a: 2024-01-02T03:04:05Z"), "a"),
        &s("2024-01-02T03:04:05Z")
    );
    // `1m` is an integer (one million), as in nats-server.
    assert_eq!(get(&ok("a: 1m"), "a"), &Kind::Int(1_000_000));
}

#[test]
fn variables() {
    let m = ok("p: 4222\nport: $p\nm { inner: $p, s: x, t: $s }\ne: $TEST_PORT\nf: $TEST_STR");
    // A key used as a variable is dropped from the tree, like nats-server does.
    assert!(m.get("p").is_none());
    assert_eq!(get(&m, "port"), &Kind::Int(4222));
    let Kind::Map(mm) = get(&m, "m") else {
        panic!()
    };
    assert_eq!(get(mm, "inner"), &Kind::Int(4222));
    assert_eq!(get(mm, "t"), &s("x"));
    assert!(mm.get("s").is_none());
    assert_eq!(get(&m, "e"), &Kind::Int(4333));
    assert_eq!(get(&m, "f"), &s("hello"));
    // Block scoping: an inner definition shadows the outer one.
    let m = ok("v: 1\nm { v: 2, a: $v }\nb: $v");
    let Kind::Map(mm) = get(&m, "m") else {
        panic!()
    };
    assert_eq!(get(mm, "a"), &Kind::Int(2));
    assert_eq!(get(&m, "b"), &Kind::Int(1));
    // The reference's position is used for the copy.
    let v = m.get("b").unwrap();
    assert_eq!((v.pos.line, v.pos.col), (3, 4));
    // bcrypt hashes are not variables.
    assert_eq!(get(&ok("a: $2a$11$abc"), "a"), &s("$2a$11$abc"));
    let e = err("a: 1\nb: $NOPE_NOT_SET");
    assert_eq!(
        e,
        "nats.conf:2:4: variable reference for 'NOPE_NOT_SET' can not be found"
    );
    assert!(err("a: $TEST_BAD").contains("could not be parsed"));
    assert!(err("a: $TEST_SELF").contains("cycle"));
}

#[test]
fn error_positions() {
    assert_eq!(
        err("a: 1\nb: 2\n   c: [1,,2]"),
        "nats.conf:3:10: Unexpected array value terminator ','."
    );
    assert_eq!(
        err("port: 4222\nfoo: bar baz\n"),
        "nats.conf:2:10: Expected a top-level value to end with a new line, comment or EOF, but got 'b' instead."
    );
    assert_eq!(
        err("a: 1\nb:\n"),
        "nats.conf:2:3: Expected value but found new line"
    );
    assert_eq!(
        err("a {\n  b: 1\n  c\n}"),
        "nats.conf:3:3: key 'c' has no value"
    );
    assert_eq!(
        err("a: 1\nlonely"),
        "nats.conf:2:1: key 'lonely' has no value"
    );
    assert!(err("= 1").starts_with("nats.conf:1:1: Unexpected key separator"));
    assert!(err("a { b: 1").contains("EOF"));
}

#[test]
fn values_carry_positions() {
    let m = ok("\n  port: 4222\n  m {\n    k: [1, x]\n  }");
    let e = &m.entries[0];
    assert_eq!((e.key_pos.line, e.key_pos.col), (2, 3));
    assert_eq!((e.value.pos.line, e.value.pos.col), (2, 9));
    let Kind::Map(mm) = &m.entries[1].value.kind else {
        panic!()
    };
    let Kind::Array(a) = &mm.entries[0].value.kind else {
        panic!()
    };
    let Value { pos, .. } = &a[1];
    assert_eq!((pos.line, pos.col), (4, 12));
    assert_eq!(&*pos.file, "nats.conf");
}

#[test]
fn duplicate_keys_last_wins() {
    let m = ok("a: 1\nb: 2\na: 3");
    assert_eq!(get(&m, "a"), &Kind::Int(3));
    assert_eq!(m.entries.len(), 2);
}

#[test]
fn includes() {
    let dir = std::env::temp_dir().join(format!("natrix-cfg-inc-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("sub/inner.conf"), "port: 4333\nv: 7\n").unwrap();
    std::fs::write(dir.join("sub/nested.conf"), "include inner.conf\n").unwrap();
    std::fs::write(dir.join("sub/bad.conf"), "x: [1,,]\n").unwrap();
    std::fs::write(
        dir.join("main.conf"),
        "include ./sub/inner.conf\nm {\n  include 'sub/nested.conf'\n}\nw: $v\ninclude \"/sub/inner.conf\"; z: 1\n",
    )
    .unwrap();
    let m = parse_file(dir.join("main.conf")).unwrap();
    assert_eq!(get(&m, "port"), &Kind::Int(4333));
    assert_eq!(get(&m, "w"), &Kind::Int(7));
    assert_eq!(get(&m, "z"), &Kind::Int(1));
    let Kind::Map(mm) = get(&m, "m") else {
        panic!()
    };
    assert_eq!(get(mm, "port"), &Kind::Int(4333));
    // Positions inside included files name the included file.
    let e = m.entries.iter().find(|e| e.key == "port").unwrap();
    assert!(e.key_pos.file.ends_with("inner.conf"), "{:?}", e.key_pos);

    std::fs::write(dir.join("b.conf"), "a: 1\ninclude sub/bad.conf\n").unwrap();
    let e = parse_file(dir.join("b.conf")).unwrap_err().to_string();
    assert!(
        e.contains("b.conf:2:9: error parsing include file 'sub/bad.conf'"),
        "{e}"
    );
    assert!(
        e.contains("bad.conf:1:7: Unexpected array value terminator"),
        "{e}"
    );

    std::fs::write(dir.join("missing.conf"), "include nope.conf\n").unwrap();
    assert!(parse_file(dir.join("missing.conf")).is_err());

    std::fs::write(dir.join("loop.conf"), "include loop.conf\n").unwrap();
    assert!(parse_file(dir.join("loop.conf")).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

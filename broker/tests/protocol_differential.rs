//! The same raw protocol exchanges against the reference nats-server and Natrix: the bytes a
//! client receives (after INFO) and whether the connection is closed must be the same.

mod common;

use std::time::Duration;

use common::{compare_exchanges, RefServer, TestServer};

/// (name, chunks sent in order)
fn scenarios() -> Vec<(&'static str, Vec<&'static [u8]>)> {
    vec![
        ("ping", vec![b"PING\r\n"]),
        ("verbose", vec![b"CONNECT {\"verbose\":true}\r\nSUB foo 1\r\nPUB foo 2\r\nhi\r\nUNSUB 1\r\nPING\r\n"]),
        ("pub_sub", vec![b"CONNECT {}\r\nSUB foo 1\r\nPUB foo 5\r\nhello\r\nPUB foo r.1 0\r\n\r\nPING\r\n"]),
        ("queue", vec![b"CONNECT {}\r\nSUB foo q 7\r\nPUB foo 1\r\nx\r\nPING\r\n"]),
        ("wildcards", vec![b"CONNECT {}\r\nSUB a.* 1\r\nSUB a.> 2\r\nSUB > 3\r\nPUB a.b 1\r\nx\r\nPUB a.b.c 1\r\ny\r\nPING\r\n"]),
        ("headers", vec![b"CONNECT {\"headers\":true}\r\nSUB foo 1\r\nHPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\nPING\r\n"]),
        ("headers_to_plain_client", vec![b"CONNECT {}\r\nSUB foo 1\r\nPING\r\n"]),
        ("no_responders", vec![b"CONNECT {\"headers\":true,\"no_responders\":true}\r\nSUB _INBOX.x 1\r\nPUB foo _INBOX.x 2\r\nhi\r\nPING\r\n"]),
        ("unsub_max", vec![b"CONNECT {}\r\nSUB foo 1\r\nUNSUB 1 2\r\nPUB foo 1\r\na\r\nPUB foo 1\r\nb\r\nPUB foo 1\r\nc\r\nPING\r\n"]),
        ("unsub_unknown", vec![b"CONNECT {}\r\nUNSUB 99\r\nPING\r\n"]),
        ("echo_off", vec![b"CONNECT {\"echo\":false}\r\nSUB foo 1\r\nPUB foo 1\r\nx\r\nPING\r\n"]),
        ("lowercase_ops", vec![b"connect {}\r\nsub foo 1\r\npub foo 1\r\nx\r\nping\r\n"]),
        ("tabs_and_spaces", vec![b"CONNECT {}\r\nSUB\tfoo   1\r\nPUB  foo\t 1\r\nx\r\nPING\r\n"]),
        ("split_byte_by_byte", b"CONNECT {}\r\nSUB foo 1\r\nPUB foo 5\r\nhello\r\nPING\r\n".chunks(1).collect()),
        ("unknown_op", vec![b"CONNECT {}\r\nFOO\r\n"]),
        ("pub_no_args", vec![b"CONNECT {}\r\nPUB\r\n"]),
        ("pub_one_arg", vec![b"CONNECT {}\r\nPUB foo\r\n"]),
        ("pub_bad_size", vec![b"CONNECT {}\r\nPUB foo bar\r\n"]),
        ("pub_negative_size", vec![b"CONNECT {}\r\nPUB foo -1\r\n"]),
        ("payload_too_long", vec![b"CONNECT {}\r\nPUB foo 2\r\nhello\r\n"]),
        ("sub_no_args", vec![b"CONNECT {}\r\nSUB\r\n"]),
        ("pedantic_pub_wildcard", vec![b"CONNECT {\"pedantic\":true}\r\nPUB foo.* 1\r\nx\r\nPING\r\n"]),
        ("pedantic_pub_empty_token", vec![b"CONNECT {\"pedantic\":true}\r\nPUB foo..bar 1\r\nx\r\nPING\r\n"]),
        ("invalid_sub_subject", vec![b"CONNECT {}\r\nSUB foo..bar 1\r\nPING\r\n"]),
        ("invalid_connect_json", vec![b"CONNECT {bad\r\n"]),
        ("hpub_header_too_big", vec![b"CONNECT {\"headers\":true}\r\nHPUB foo 20 10\r\n"]),
        ("sub_one_arg", vec![b"CONNECT {}\r\nSUB foo\r\n"]),
        ("unsub_no_args", vec![b"CONNECT {}\r\nUNSUB\r\n"]),
        ("unsub_bad_max", vec![b"CONNECT {}\r\nUNSUB 1 x\r\n"]),
        ("before_connect", vec![b"SUB foo 1\r\nPUB foo 1\r\nx\r\nPING\r\n"]),
        ("connect_no_args", vec![b"CONNECT\r\n"]),
        ("max_payload", vec![b"CONNECT {\"verbose\":false}\r\nPUB foo 2000\r\n"]),
        ("control_line_too_long", vec![b"CONNECT {\"verbose\":false}\r\nSUB aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa 1\r\n"]),
        ("control_line_no_newline", vec![&[b'P'; 1], &[b'U'; 1], &[b'B'; 1], &[b' '; 1], &[b'a'; 600]]),
        ("bare_lf", vec![b"CONNECT {\"verbose\":false}\nSUB foo 1\nPUB foo 1\nx\nPING\n"]),
        ("non_verbose_pedantic_off_wildcard_pub", vec![b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\nSUB foo.* 1\r\nPUB foo.* 1\r\nx\r\nPING\r\n"]),
        ("client_sends_msg", vec![b"CONNECT {}\r\nMSG foo 1 1\r\nx\r\n"]),
    ]
}

/// Options both servers run with in these scenarios.
const CONF: &str = "max_payload: 1024\nmax_control_line: 512\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_exchanges_match_reference() {
    let reference = &RefServer::start(Some(CONF), &[]);
    let natrix = &TestServer::start_with(|o| {
        o.max_payload = 1024;
        o.max_control_line = 512;
    })
    .await;
    let wait = Duration::from_millis(300);
    compare_exchanges(reference.addr, natrix.addr, &scenarios(), wait).await;
}

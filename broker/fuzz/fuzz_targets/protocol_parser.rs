//! Fuzzes the client protocol parser: any bytes, split anywhere, must parse or fail cleanly,
//! and an op parsed from a prefix must be the same op parsed from the whole input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use natrix_broker::protocol::client::{parse, Limits};

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_control_line: 256,
        max_payload: 4096,
    };
    let mut used = 0;
    while used < data.len() {
        match parse(&data[used..], &limits) {
            Ok(Some((op, n))) => {
                assert!(n > 0 && used + n <= data.len());
                // Any prefix of a complete op must ask for more bytes: split reads change nothing.
                for cut in [1, n / 2, n.saturating_sub(1)] {
                    if cut == 0 || cut >= n {
                        continue;
                    }
                    let part = parse(&data[used..used + cut], &limits);
                    assert_eq!(part, Ok(None), "prefix {cut} of {op:?}");
                }
                used += n;
            }
            Ok(None) | Err(_) => break,
        }
    }
});

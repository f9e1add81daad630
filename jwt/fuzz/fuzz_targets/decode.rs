//! Fuzzes the JWT decoder and the creds parser: any input must decode or fail cleanly.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = natrix_jwt::decode_header(s);
        let _ = natrix_jwt::decode(s);
        let _ = natrix_jwt::parse_creds(s);
    }
});

//! Differential test over nats-server's own configuration files (`tests/data/nats-conf-corpus`,
//! taken from its source tree; leaf node and gateway files left out until those land):
//! `natrix-broker -t -c FILE` must accept and refuse exactly the files `nats-server -t -c FILE`
//! does, run from the corpus folder as the files' relative paths expect.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/nats-conf-corpus")
}

/// Whether `bin -t -c file` (run in the corpus folder) accepts the file, and what it said.
fn check(bin: &Path, file: &str) -> (bool, String) {
    let out = Command::new(bin)
        .args(["-t", "-c", file])
        .current_dir(corpus())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", bin.display()));
    let said = String::from_utf8_lossy(&out.stderr)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    (out.status.success(), said)
}

#[test]
fn every_corpus_file_is_judged_as_nats_server_judges_it() {
    let list = std::fs::read_to_string(corpus().join("EXPECTED.tsv")).unwrap();
    let reference = common::nats_server_bin();
    let natrix = Path::new(env!("CARGO_BIN_EXE_natrix-broker"));
    let mut checked = 0;
    let mut refused = 0;
    let mut mismatches = Vec::new();
    for line in list.lines().skip(1) {
        let file = line.split('\t').next().unwrap();
        let (theirs, their_msg) = check(&reference, file);
        let (ours, our_msg) = check(natrix, file);
        checked += 1;
        refused += usize::from(!theirs);
        if theirs != ours {
            mismatches.push(format!(
                "{file}: nats-server valid={theirs} ({their_msg}); natrix valid={ours} ({our_msg})"
            ));
        }
    }
    println!(
        "figure: config-corpus files={checked} refused_by_reference={refused} mismatches={}",
        mismatches.len()
    );
    assert!(checked > 100, "corpus too small: {checked}");
    assert!(
        mismatches.is_empty(),
        "{} of {checked} files judged differently:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

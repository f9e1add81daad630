//! The committed `crds/` must equal what the Rust types generate (run `cargo run --bin crdgen`).

use std::path::PathBuf;

#[test]
fn committed_crds_match_the_rust_types() {
    let tmp = std::env::temp_dir().join(format!("natrix-crdgen-{}", std::process::id()));
    let written = natrix_controller::crd::write_crds(&tmp).unwrap();
    let committed = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crds");
    assert_eq!(written.len(), 3);
    for path in written {
        let file = path.file_name().unwrap();
        let want = std::fs::read_to_string(&path).unwrap();
        let have = std::fs::read_to_string(committed.join(file)).unwrap_or_default();
        assert!(
            want == have,
            "crds/{} is out of date: run `cargo run -p natrix-controller --bin crdgen`",
            file.to_string_lossy()
        );
    }
    let extra: Vec<_> = std::fs::read_dir(&committed)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|f| !tmp.join(f).exists())
        .collect();
    assert!(extra.is_empty(), "stale files in crds/: {extra:?}");
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn crds_have_status_printer_columns_and_short_names() {
    for (_, crd) in natrix_controller::crd::all_crds() {
        let v = &crd.spec.versions[0];
        assert_eq!(crd.spec.group, "natrix.io");
        assert_eq!(v.name, "v1alpha1");
        assert!(v.subresources.as_ref().unwrap().status.is_some());
        let cols = v.additional_printer_columns.as_ref().unwrap();
        assert!(cols.iter().any(|c| c.name == "Age"));
        assert!(!crd.spec.names.short_names.as_ref().unwrap().is_empty());
    }
}

#[test]
fn stream_storage_defaults_to_file_and_durations_are_validated() {
    let crd = natrix_controller::crd::all_crds()
        .into_iter()
        .find(|(f, _)| f.starts_with("streams"))
        .unwrap()
        .1;
    let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
    let spec = &schema["openAPIV3Schema"]["properties"]["spec"]["properties"];
    assert_eq!(spec["storage"]["default"], "file");
    assert_eq!(
        spec["storage"]["enum"],
        serde_json::json!(["file", "memory"])
    );
    let re = spec["maxAge"]["pattern"].as_str().unwrap();
    assert_eq!(re, natrix_controller::crd::DURATION_PATTERN);
    let ok = ["24h", "1h30m", "500ms", "1.5s"];
    let bad = ["1d", "", "10", "5 m"];
    for d in ok {
        assert!(natrix_controller::units::parse_duration(d).is_some(), "{d}");
    }
    for d in bad {
        assert!(natrix_controller::units::parse_duration(d).is_none(), "{d}");
    }
}

//! Writes the CRDs generated from the Rust types to `crds/` (or the directory given as argument).

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crds"));
    for path in natrix_controller::crd::write_crds(&dir)? {
        println!("wrote {}", path.display());
    }
    Ok(())
}

//! Compiles `proto/` with protox (a protobuf compiler in Rust), so no `protoc` is needed.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read when the script runs, not when it was compiled: one compiled script serves every
    // checkout sharing a target dir.
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = [
        "sidero/link/provision.proto",
        "sidero/link/wireguard.proto",
        "drover/v1/inventory.proto",
        "drover/v1/clusters.proto",
        "drover/v1/tenancy.proto",
        "drover/v1/access.proto",
        // Talos machine API and event sink (packages `common`, `machine`, `storage`, `events`,
        // plus the `google.rpc.Status` they reference).
        "google/rpc/status.proto",
        "talos/common/common.proto",
        "talos/machine/machine.proto",
        "talos/machine/lifecycle.proto",
        "talos/storage/storage.proto",
        "talos/events/events.proto",
    ];
    let descriptors = protox::compile(files, [&root])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    for f in files {
        println!("cargo:rerun-if-changed={}", root.join(f).display());
    }
    Ok(())
}

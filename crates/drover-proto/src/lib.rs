//! Generated protobuf types and gRPC stubs.
//!
//! - [`sidero::link`]: the SideroLink services a stock Talos node calls (package names and field
//!   numbers follow the Talos wire format exactly).
//! - [`drover::v1`]: Drover's own management API.
//! - [`talos`]: the Talos machine API (`machine`, `storage`, `common`), the event sink
//!   (`events`) and the `google.rpc.Status` they carry (wire-compatible with Talos).

#[allow(clippy::all, missing_docs)]
pub mod sidero {
    pub mod link {
        tonic::include_proto!("sidero.link");
    }
}

#[allow(clippy::all, missing_docs)]
pub mod drover {
    pub mod v1 {
        tonic::include_proto!("drover.v1");
    }
}

/// The Talos protocols Drover speaks inside the tunnel. Each module is one proto package;
/// the generated code refers to its siblings through `super::`, so they live side by side.
#[allow(clippy::all, missing_docs)]
pub mod talos {
    /// Package `common`: `Metadata`, `Data`, `Error`, ...
    pub mod common {
        tonic::include_proto!("common");
    }

    /// Package `machine`: `MachineService`, `LifecycleService` and the `*Event` messages.
    pub mod machine {
        tonic::include_proto!("machine");
    }

    /// Package `storage`: `StorageService`.
    pub mod storage {
        tonic::include_proto!("storage");
    }

    /// Package `events`: `EventSinkService`.
    pub mod events {
        tonic::include_proto!("events");
    }

    /// Package `google.rpc`: `Status`, as referenced by `common.Metadata`.
    pub mod google {
        pub mod rpc {
            tonic::include_proto!("google.rpc");
        }
    }
}

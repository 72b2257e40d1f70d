//! Generated protobuf types and gRPC stubs.
//!
//! - [`sidero::link`]: the SideroLink services a stock Talos node calls (package names and field
//!   numbers follow the Talos wire format exactly).
//! - [`drover::v1`]: Drover's own management API.

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

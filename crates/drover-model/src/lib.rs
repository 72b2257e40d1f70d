//! Typed ids and the resource types Drover's APIs exchange.
//!
//! The same structs are returned by the service layer, serialized by REST, mapped to gRPC
//! messages and deserialized by the CLI, so every shell shows the same fields.

mod ids;
mod resources;

pub use ids::{ApiTokenId, InvalidId, JoinTokenId, MachineId, TenantId};
pub use resources::{
    CreateJoinToken, CreatedJoinToken, Disk, JoinInstructions, JoinToken, JoinTokenState, LogLine,
    LogPage, Machine, MachineFacts, Page, UnmetCondition,
};

mod role;
pub use role::{Role, UnknownRole};

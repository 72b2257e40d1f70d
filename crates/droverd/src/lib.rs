//! droverd as a library, so tests start the whole server in-process.

pub mod backup;
pub mod datadir;
pub mod https;
pub mod keys;
pub mod metrics;
pub mod reference;
pub mod server;
pub mod settings;
mod shared_keys;
pub mod tenant;

pub use drover_dataplane::DataPlaneConfig;
pub use server::Server;
pub use settings::{Args, Command, Database, KeysCommand, LogFormat, Settings, TenantCommand};

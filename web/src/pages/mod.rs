//! One module per page.

pub mod classes;
pub mod cluster;
pub mod clusters;
pub mod dashboard;
pub mod join_tokens;
pub mod login;
pub mod machine;
pub mod machines;
pub mod settings;

//! TEMPORARY STUB: being replaced by the real D-Bus implementation.
use std::time::Duration;

pub enum Bus {
    User,
    System,
}

pub struct ScopeRequest<'a> {
    pub unit: &'a str,
    pub pid: u32,
    pub description: &'a str,
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    #[error("no bus at {address}")]
    NoBus { address: String },
}

pub fn start_scope(_bus: Bus, _req: &ScopeRequest) -> Result<(), SystemdError> {
    Err(SystemdError::NoBus {
        address: "stub".into(),
    })
}

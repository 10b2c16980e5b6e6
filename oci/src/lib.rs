//! kennel-oci's front end: runc's command line, logging and the
//! subcommands that need no container engine.

pub mod argv;
pub mod cli;
pub mod features;
pub mod log;
pub mod spec_cmd;
pub mod values;

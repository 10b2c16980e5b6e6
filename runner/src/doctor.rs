//! `kennel doctor`: placeholder until the checks land.
use anyhow::Result;

pub fn doctor() -> Result<i32> {
    anyhow::bail!("doctor is not implemented yet")
}

//! The annotation `run.kennel.net`, which says what network a container
//! gets, and the bridge its `bridge[=NAME]` form names: read by both the
//! pasta plan (`publish`) and the bridge plan (`bridge`).

use anyhow::{anyhow, Result};

pub const NET_ANNOTATION: &str = "run.kennel.net";

/// The bridge `--net bridge` means when it names none.
pub const DEFAULT_BRIDGE: &str = "kennel0";

/// The bridge a `run.kennel.net` value names, if it asks for one:
/// `bridge` or `bridge=NAME`.
pub fn bridge_of(value: &str) -> Option<Result<String>> {
    let name = match value.strip_prefix("bridge") {
        Some("") => DEFAULT_BRIDGE,
        Some(rest) => rest.strip_prefix('=')?,
        None => return None,
    };
    let valid = !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    Some(if valid {
        Ok(name.to_string())
    } else {
        Err(anyhow!(
            "{NET_ANNOTATION}={value:?}: {name:?} is not an interface name (1 to 15 letters, digits, '-', '_' or '.')"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bridge_form_names_an_interface() {
        assert_eq!(bridge_of("bridge").unwrap().unwrap(), "kennel0");
        assert_eq!(bridge_of("bridge=lab0").unwrap().unwrap(), "lab0");
        assert!(bridge_of("bridge=").unwrap().is_err());
        assert!(bridge_of("bridge=../x").unwrap().is_err());
        assert!(bridge_of("bridge=waytoolonginterface").unwrap().is_err());
        assert!(bridge_of("bridges").is_none());
        assert!(bridge_of("pasta").is_none());
    }
}

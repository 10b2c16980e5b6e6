//! Finding the bus's address and our uid on the host.

use super::*;

#[test]
fn user_bus_address_comes_from_the_session_variable_then_the_runtime_dir() {
    let env = |vars: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    };
    let both = env(&[
        ("DBUS_SESSION_BUS_ADDRESS", "unix:path=/tmp/session"),
        ("XDG_RUNTIME_DIR", "/run/user/1000"),
    ]);
    assert_eq!(
        address_from_env(Bus::User, both).unwrap(),
        "unix:path=/tmp/session"
    );
    let dir = env(&[
        ("DBUS_SESSION_BUS_ADDRESS", ""),
        ("XDG_RUNTIME_DIR", "/run/user/1000/"),
    ]);
    assert_eq!(
        address_from_env(Bus::User, dir).unwrap(),
        "unix:path=/run/user/1000/bus"
    );
    let odd = env(&[("XDG_RUNTIME_DIR", "/run/user/a b,c")]);
    assert_eq!(
        address_from_env(Bus::User, odd).unwrap(),
        "unix:path=/run/user/a%20b%2cc/bus"
    );
    for vars in [
        &[][..],
        &[("XDG_RUNTIME_DIR", "")][..],
        &[("XDG_RUNTIME_DIR", "run/user/1")][..],
    ] {
        let e = address_from_env(Bus::User, env(vars)).unwrap_err();
        assert!(matches!(e, SystemdError::NoUserBus), "{e:?}");
        let text = e.to_string();
        assert!(text.contains("loginctl enable-linger"), "{text}");
        assert!(text.ends_with("--cgroup-manager=disabled"), "{text}");
    }
}

#[test]
fn system_bus_address_comes_from_its_variable_or_the_well_known_socket() {
    let set = |name: &str| (name == "DBUS_SYSTEM_BUS_ADDRESS").then(|| "unix:path=/x".to_string());
    assert_eq!(address_from_env(Bus::System, set).unwrap(), "unix:path=/x");
    // The session bus must not leak into the system manager's address.
    let session =
        |name: &str| (name == "DBUS_SESSION_BUS_ADDRESS").then(|| "unix:path=/s".to_string());
    assert_eq!(
        address_from_env(Bus::System, session).unwrap(),
        "unix:path=/run/dbus/system_bus_socket"
    );
}

#[test]
fn the_uid_claimed_on_the_bus_is_the_one_we_map_to() {
    use super::host_uid_in;
    assert_eq!(host_uid_in("         0          0 4294967295\n", 0), None);
    let podman = "         0       1000          1\n         1     100000      65536\n";
    assert_eq!(host_uid_in(podman, 0), Some(1000));
    assert_eq!(host_uid_in(podman, 5), Some(100004));
    assert_eq!(host_uid_in(podman, 70000), None);
}

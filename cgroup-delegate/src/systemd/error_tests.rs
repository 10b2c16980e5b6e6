//! The next step each common D-Bus error names.

use super::*;

#[test]
fn common_dbus_errors_end_with_their_fix() {
    let refused = |name: &str, message: &str| {
        SystemdError::CallFailed {
            unit: "kennel-a b.scope".into(),
            address: "unix:path=/run/user/1000/bus".into(),
            method: "StartTransientUnit",
            name: name.into(),
            message: message.into(),
        }
        .to_string()
    };
    let text = refused(
        "org.freedesktop.DBus.Error.InvalidArgs",
        "Unit name kennel-a b.scope is not valid.",
    );
    assert!(text.ends_with("pick another --name"), "{text}");
    let text = refused(
        "org.freedesktop.DBus.Error.PropertyReadOnly",
        "Cannot set property CollectMode, or unknown property.",
    );
    assert!(text.contains("systemd 236"), "{text}");
    let text = refused("org.freedesktop.DBus.Error.ServiceUnknown", "no such name");
    assert!(text.contains("loginctl enable-linger"), "{text}");
    let e = SystemdError::CallFailed {
        unit: "u".into(),
        address: "a".into(),
        method: "StartTransientUnit",
        name: "org.freedesktop.DBus.Error.NameHasNoOwner".into(),
        message: "".into(),
    };
    assert!(e.is_unreachable());
    let text = refused("org.freedesktop.DBus.Error.Failed", "something");
    assert!(
        text.ends_with("org.freedesktop.DBus.Error.Failed: something"),
        "{text}"
    );
}

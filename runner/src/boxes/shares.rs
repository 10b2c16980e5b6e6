//! `--share ITEM`: each a host socket or device found from the user's
//! environment, bound at the same path in the box, with the variable that
//! names it. An item asked for whose host source is missing is an error
//! naming it: never silently left out.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::cli::ShareItem;

/// What the shares add to the box's `kennel run`.
#[derive(Debug, Default)]
pub struct Plan {
    /// (host path, path inside).
    pub binds: Vec<(PathBuf, String)>,
    /// KEY=VALUE for the box's processes.
    pub env: Vec<String>,
}

fn var(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

fn runtime_dir(item: &str) -> Result<String> {
    match var("XDG_RUNTIME_DIR") {
        Some(d) => Ok(d),
        None => bail!("box: --share {item} looks for its socket in $XDG_RUNTIME_DIR, which is not set; log in through a session that sets it"),
    }
}

fn existing(item: &str, path: &Path, from: &str) -> Result<PathBuf> {
    if std::fs::symlink_metadata(path).is_err() {
        bail!(
            "box: --share {item}: {} ({from}) does not exist on the host; start the service, or drop --share {item}",
            path.display()
        );
    }
    Ok(path.to_path_buf())
}

/// The binds and variables of `items` (and /run/host with `host_root`),
/// from this process's environment.
pub fn resolve(items: &[ShareItem], host_root: bool) -> Result<Plan> {
    let mut plan = Plan::default();
    for item in items {
        let (binds, env) = share(*item)?;
        for p in binds {
            let dst = p.to_string_lossy().into_owned();
            plan.binds.push((p, dst));
        }
        plan.env.extend(env);
    }
    if host_root {
        plan.binds.push((PathBuf::from("/"), "/run/host:ro".into()));
    }
    for (src, _) in &plan.binds {
        if src.to_string_lossy().contains([':', ',']) {
            bail!(
                "box: the shared path {} contains ':' or ',', which a volume cannot name",
                src.display()
            );
        }
    }
    Ok(plan)
}

/// What sharing `item` binds (each at its own path) and sets.
fn share(item: ShareItem) -> Result<(Vec<PathBuf>, Vec<String>)> {
    Ok(match item {
        ShareItem::Wayland => wayland()?,
        ShareItem::X11 => x11()?,
        ShareItem::Pipewire => {
            let sock = Path::new(&runtime_dir("pipewire")?).join("pipewire-0");
            let sock = existing("pipewire", &sock, "PipeWire's socket")?;
            let env = format!("PIPEWIRE_REMOTE={}", sock.display());
            (vec![sock], vec![env])
        }
        ShareItem::Pulseaudio => pulseaudio()?,
        ShareItem::Dbus => dbus()?,
        ShareItem::SshAgent => {
            let Some(sock) = var("SSH_AUTH_SOCK") else {
                bail!("box: --share ssh-agent: SSH_AUTH_SOCK is not set here (no agent); start one (eval $(ssh-agent)) or drop --share ssh-agent");
            };
            let bound = existing("ssh-agent", Path::new(&sock), "$SSH_AUTH_SOCK")?;
            (vec![bound], vec![format!("SSH_AUTH_SOCK={sock}")])
        }
        ShareItem::Gpu => (
            vec![existing("gpu", Path::new("/dev/dri"), "the GPU's devices")?],
            vec![],
        ),
    })
}

fn wayland() -> Result<(Vec<PathBuf>, Vec<String>)> {
    let dir = runtime_dir("wayland")?;
    let Some(display) = var("WAYLAND_DISPLAY") else {
        bail!("box: --share wayland: WAYLAND_DISPLAY is not set here (no Wayland session); drop --share wayland");
    };
    let sock = match display.starts_with('/') {
        true => PathBuf::from(&display),
        false => Path::new(&dir).join(&display),
    };
    let sock = existing("wayland", &sock, "$WAYLAND_DISPLAY")?;
    let env = format!("WAYLAND_DISPLAY={}", sock.display());
    Ok((vec![sock], vec![env]))
}

fn x11() -> Result<(Vec<PathBuf>, Vec<String>)> {
    let Some(display) = var("DISPLAY") else {
        bail!("box: --share x11: DISPLAY is not set here (no X session); drop --share x11");
    };
    let mut binds = vec![existing(
        "x11",
        Path::new("/tmp/.X11-unix"),
        "the X server's sockets",
    )?];
    let mut env = vec![format!("DISPLAY={display}")];
    if let Some(auth) = var("XAUTHORITY") {
        binds.push(existing("x11", Path::new(&auth), "$XAUTHORITY")?);
        env.push(format!("XAUTHORITY={auth}"));
    }
    Ok((binds, env))
}

fn pulseaudio() -> Result<(Vec<PathBuf>, Vec<String>)> {
    let sock = match var("PULSE_SERVER") {
        Some(s) => match s.strip_prefix("unix:") {
            Some(p) => PathBuf::from(p),
            None => bail!("box: --share pulseaudio: PULSE_SERVER={s:?} is not a unix: socket, which is all a box can share"),
        },
        None => Path::new(&runtime_dir("pulseaudio")?).join("pulse/native"),
    };
    let sock = existing("pulseaudio", &sock, "PulseAudio's socket")?;
    let env = format!("PULSE_SERVER=unix:{}", sock.display());
    Ok((vec![sock], vec![env]))
}

fn dbus() -> Result<(Vec<PathBuf>, Vec<String>)> {
    let Some(addr) = var("DBUS_SESSION_BUS_ADDRESS") else {
        bail!("box: --share dbus: DBUS_SESSION_BUS_ADDRESS is not set here (no session bus); drop --share dbus");
    };
    let path = addr.split(';').find_map(|a| {
        a.strip_prefix("unix:")?
            .split(',')
            .find_map(|kv| kv.strip_prefix("path="))
    });
    let Some(path) = path else {
        bail!("box: --share dbus: DBUS_SESSION_BUS_ADDRESS={addr:?} names no unix:path= socket (an abstract socket cannot be bound into a box)");
    };
    let bound = existing("dbus", Path::new(path), "$DBUS_SESSION_BUS_ADDRESS")?;
    Ok((
        vec![bound],
        vec![format!("DBUS_SESSION_BUS_ADDRESS=unix:path={path}")],
    ))
}

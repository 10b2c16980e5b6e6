//! `kennel box create`: the image read and checked, the home chosen, the
//! box's directory made and filled (the unpacked image, the user inside,
//! box.json, the unit), and nothing left behind on a failure.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::{
    as_mapped_root, box_dir, boxes_dir, layout, remove_tree, run_argv, shares, unit, BoxConfig,
};
use crate::cli::BoxCreateArgs;

/// The host user's login shell and primary group name, from /etc/passwd
/// and /etc/group.
fn host_shell_and_group(uid: u32, gid: u32) -> (String, String) {
    let field = |file: &str, id: u32, n: usize| {
        std::fs::read_to_string(file).ok().and_then(|t| {
            t.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > n && f[2].parse() == Ok(id)).then(|| f[n].to_string())
            })
        })
    };
    let shell = field("/etc/passwd", uid, 6).unwrap_or_else(|| "/bin/sh".into());
    let group = field("/etc/group", gid, 0).unwrap_or_else(|| format!("g{gid}"));
    (shell, group)
}

/// The image `given` (a tarball, a directory, or an OCI layout with an
/// optional `:REF`), resolved, and a layout's layers, read and checked
/// before anything is made.
fn read_image(given_image: &Path) -> Result<(PathBuf, Option<String>, Option<Vec<layout::Layer>>)> {
    let (given, tag) = match layout::split_tag(given_image) {
        Some((dir, tag)) => (dir, Some(tag)),
        None => (given_image.to_path_buf(), None),
    };
    let image = std::fs::canonicalize(&given).with_context(|| {
        format!(
            "box create: cannot read the image {}",
            given_image.display()
        )
    })?;
    // Read and checked before anything is made.
    let layers = match layout::is_layout(&image) {
        true => Some(
            layout::layers(&image, tag.as_deref())
                .map_err(|e| anyhow::anyhow!("box create: {e:#}"))?,
        ),
        false => None,
    };
    if !image.is_file() && !image.is_dir() {
        bail!(
            "box create: the image {} is neither a tarball nor a directory",
            image.display()
        );
    }
    if image.to_string_lossy().contains([':', ',']) {
        bail!("box create: {} contains ':' or ',', which a volume cannot name; move or link it to a plain path", image.display());
    }
    Ok((image, tag, layers))
}

/// The box's home: the caller's own (shared), or `--home DIR`, made by
/// the box (and removed with it) when it does not exist yet. Says
/// (home, made by the box, the caller's own).
fn choose_home(given: Option<&Path>, user_home: &Path) -> Result<(PathBuf, bool, bool)> {
    let (home, home_owned, home_shared) = match given {
        None => (user_home.to_path_buf(), false, true),
        Some(h) => {
            let abs = std::path::absolute(h)?;
            (abs.clone(), !abs.exists(), false)
        }
    };
    if home.to_string_lossy().contains([':', ',']) {
        bail!(
            "box create: the home {} contains ':' or ',', which a volume cannot name",
            home.display()
        );
    }
    if !home_owned && !home.is_dir() {
        bail!("box create: the home {} is not a directory", home.display());
    }
    Ok((home, home_owned, home_shared))
}

/// The box's directory, refused if a box of that name exists.
fn make_box_dir(dir: &Path, name: &str) -> Result<()> {
    std::fs::create_dir_all(boxes_dir()?).with_context(|| {
        format!(
            "box create: cannot create {}",
            boxes_dir().unwrap_or_default().display()
        )
    })?;
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => bail!(
            "box create: a box named {name:?} exists already ({}); pick another name, or remove it with `kennel box rm {name}`",
            dir.display()
        ),
        Err(e) => bail!("box create: cannot create {}: {e}", dir.display()),
    }
    Ok(())
}

/// Everything in the box's directory: its home if the box owns one, the
/// unpacked image, the user inside, box.json, and the unit if asked for.
fn fill_box(
    dir: &Path,
    config: &BoxConfig,
    image: &Path,
    layers: Option<&[layout::Layer]>,
    name_of_user: &str,
    group: &str,
    verbose: bool,
) -> Result<()> {
    if config.home_owned {
        std::fs::create_dir_all(&config.home).with_context(|| {
            format!(
                "box create: cannot create the home {}",
                config.home.display()
            )
        })?;
    }
    match layers {
        Some(layers) => unpack_layers(image, layers, &dir.join("root"), verbose)?,
        None => unpack(image, &dir.join("root"), verbose)?,
    }
    set_up_user(&dir.join("root"), config, name_of_user, group, verbose)?;
    let text = serde_json::to_string_pretty(config)?;
    std::fs::write(dir.join("box.json"), text + "\n")
        .with_context(|| format!("box create: cannot write {}/box.json", dir.display()))?;
    if let Some(path) = &config.unit {
        let kennel = std::env::current_exe()
            .context("box create --unit: cannot find kennel's own binary")?;
        let data = dir.parent().and_then(Path::parent).and_then(Path::parent);
        let data = data.expect("a box directory is DATA/kennel/boxes/NAME");
        unit::write(path, &unit::text(&config.name, &kennel, data))?;
    }
    Ok(())
}

pub(super) fn create(args: &BoxCreateArgs, verbose: bool) -> Result<i32> {
    let name = &args.name;
    let dir = box_dir(name)?;
    let (image, tag, layers) = read_image(&args.image)?;
    let host = crate::spec_build::Host::current()?;
    let (uid, gid) = (host.caller.uid, host.caller.gid);
    if uid == 0 {
        bail!("box create: a box is for an ordinary user (root's box would be the host's root); run it as yourself");
    }
    let name_of_user = host.caller.name.clone();
    // Checked before anything is made: nothing is left behind on a refusal.
    shares::resolve(&args.share, args.host_root)?;
    let unit_path = match args.unit {
        true => Some(unit::check_free(name)?),
        false => None,
    };
    let (home, home_owned, home_shared) = choose_home(args.home.as_deref(), &host.home)?;
    make_box_dir(&dir, name)?;
    let (shell, group) = host_shell_and_group(uid, gid);
    let config = BoxConfig {
        name: name.clone(),
        image: match &tag {
            Some(t) => PathBuf::from(format!("{}:{t}", image.display())),
            None => image.clone(),
        },
        home: home.clone(),
        user_home: host.home.clone(),
        home_owned,
        home_shared,
        shell,
        shares: args.share.clone(),
        host_root: args.host_root,
        uid,
        gid,
        unit: unit_path.clone(),
    };
    let made = fill_box(
        &dir,
        &config,
        &image,
        layers.as_deref(),
        &name_of_user,
        &group,
        verbose,
    );
    if let Err(e) = made {
        // A failed create leaves nothing behind.
        if let Some(path) = &unit_path {
            let _ = unit::remove(path);
        }
        let _ = remove_tree(&dir, verbose);
        if home_owned {
            let _ = std::fs::remove_dir_all(&home);
        }
        return Err(e);
    }
    println!(
        "box {name}: created from {} (enter it with `kennel box enter {name}`)",
        image.display()
    );
    if let Some(path) = &unit_path {
        println!(
            "box {name}: wrote {}; start it with `systemctl --user daemon-reload && systemctl --user start {}` (`enable` for every login)",
            path.display(),
            unit::unit_name(name)
        );
    }
    Ok(0)
}

/// Applies an OCI layout's `layers` to `root` through the keep-id map,
/// by kennel's own `box unpack-layers` in the container (no host tool
/// knows whiteouts, nor keeps a layer's paths inside the root).
fn unpack_layers(image: &Path, layers: &[layout::Layer], root: &Path, verbose: bool) -> Result<()> {
    std::fs::create_dir(root)
        .with_context(|| format!("box create: cannot create {}", root.display()))?;
    let exe = std::env::current_exe().context("box create: cannot find kennel's own binary")?;
    let (Some(bin), Some(exe_name)) = (exe.parent(), exe.file_name()) else {
        bail!(
            "box create: kennel's binary {} has no directory",
            exe.display()
        );
    };
    if bin.to_string_lossy().contains([':', ',']) {
        bail!("box create: kennel's directory {} contains ':' or ',', which a volume cannot name; install kennel in a plain path", bin.display());
    }
    let inside_exe = format!("/import/bin/{}", exe_name.to_string_lossy());
    let mut command = vec![
        inside_exe,
        "box".into(),
        "unpack-layers".into(),
        "/import/root".into(),
    ];
    command.extend(
        layers
            .iter()
            .map(|l| format!("{}:/import/blobs/{}", l.compression.name(), l.hex)),
    );
    let command: Vec<&str> = command.iter().map(String::as_str).collect();
    let args = as_mapped_root(
        &[
            format!("{}:/import/blobs:ro", image.join("blobs/sha256").display()),
            format!("{}:/import/root", root.display()),
            format!("{}:/import/bin:ro", bin.display()),
        ],
        &command,
    )?;
    let code = crate::run(&args, verbose)?;
    if code != 0 {
        bail!(
            "box create: unpacking the layers of {} failed (exit {code}; its messages are above)",
            image.display()
        );
    }
    Ok(())
}

/// Unpacks (a tarball) or copies (a directory) the image into `root`,
/// through the keep-id map: the image's root is the user's mapped root,
/// the user's own uid stays itself.
fn unpack(image: &Path, root: &Path, verbose: bool) -> Result<()> {
    let code = if image.is_file() {
        let args = crate::rootfs_import::run_args_with(image, root, "keep-id", Some("0:0"))?;
        crate::run(&args, verbose)?
    } else {
        std::fs::create_dir(root)?;
        let args = as_mapped_root(
            &[
                format!("{}:/import/image:ro", image.display()),
                format!("{}:/import/root", root.display()),
            ],
            &[
                "sh",
                "-c",
                "tar -C /import/image -cf - . | tar -C /import/root -xf - --numeric-owner",
            ],
        )?;
        crate::run(&args, verbose)?
    };
    if code != 0 {
        bail!(
            "box create: unpacking {} failed (exit {code}; its messages are above)",
            image.display()
        );
    }
    Ok(())
}

/// The user's entries in the box's /etc/passwd, group and shadow (same
/// uid, gid, name, shell when the image has it, else /bin/sh), the home's
/// mount point, and passwordless sudo when the image has sudo.
const SET_UP_USER: &str = r#"set -e
u=$1 uid=$2 gid=$3 home=$4 shell=$5 group=$6 host=$7
[ -x "$shell" ] || shell=/bin/sh
sed -i -e "/^$u:/d" -e "/^[^:]*:[^:]*:$uid:/d" /etc/passwd
echo "$u:x:$uid:$gid::$home:$shell" >> /etc/passwd
sed -i -e "/^$group:/d" -e "/^[^:]*:[^:]*:$gid:/d" /etc/group
echo "$group:x:$gid:" >> /etc/group
if [ -f /etc/shadow ]; then sed -i "/^$u:/d" /etc/shadow; echo "$u:*:19000:0:99999:7:::" >> /etc/shadow; fi
mkdir -p "$home"
chown "$uid:$gid" "$home"
if [ -e /usr/bin/sudo ]; then
  mkdir -p /etc/sudoers.d
  echo "$u ALL=(ALL) NOPASSWD: ALL" > /etc/sudoers.d/kennel-box
  chmod 0440 /etc/sudoers.d/kennel-box
fi
grep -q "[[:space:]]$host\$" /etc/hosts 2>/dev/null || echo "127.0.1.1 $host" >> /etc/hosts
"#;

fn set_up_user(root: &Path, c: &BoxConfig, user: &str, group: &str, verbose: bool) -> Result<()> {
    let sh = root.join("bin/sh");
    if std::fs::symlink_metadata(&sh).is_err() {
        bail!("box create: the image has no /bin/sh, which kennel needs to add you to its /etc/passwd; use an image of a distribution");
    }
    let code = run_argv(
        &[
            "--rootfs",
            &root.to_string_lossy(),
            "--userns=keep-id",
            "-u",
            "0:0",
            "--net=private",
            "--",
            "/bin/sh",
            "-c",
            SET_UP_USER,
            "sh",
            user,
            &c.uid.to_string(),
            &c.gid.to_string(),
            &c.user_home.to_string_lossy(),
            &c.shell,
            group,
            &c.name,
        ]
        .map(String::from),
        verbose,
    )?;
    if code != 0 {
        bail!("box create: adding {user} to the box's /etc/passwd failed (exit {code}; its messages are above)");
    }
    Ok(())
}

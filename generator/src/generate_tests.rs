use super::*;

fn tempdir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("kennel-generator-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn good_files_get_units_and_a_bad_one_a_message_only() {
    let src = tempdir("src");
    let out = tempdir("out");
    fs::write(
        src.join("web.container"),
        "[Container]\nExec=httpd\n[Install]\nWantedBy=default.target\n",
    )
    .unwrap();
    fs::write(
        src.join("bad.container"),
        "[Container]\nExec=true\nMemory=lots\n",
    )
    .unwrap();
    fs::write(src.join("notes.txt"), "not a container file").unwrap();
    fs::create_dir(src.join("dir.container")).unwrap();
    let mut logged = Vec::new();
    let scope = Scope::User {
        home: "/home/ann".into(),
    };
    let n = generate(&src, &out, &scope, "/usr/bin/kennel", &mut |line| {
        logged.push(line)
    });
    assert_eq!(n, 1);
    let unit = fs::read_to_string(out.join("web.service")).unwrap();
    assert!(
        unit.contains("\nExecStart=/usr/bin/kennel run --name web --init -- httpd\n"),
        "{unit}"
    );
    assert_eq!(
        fs::read_link(out.join("default.target.wants/web.service")).unwrap(),
        Path::new("../web.service")
    );
    assert!(!out.join("bad.service").exists());
    assert_eq!(
        logged,
        [
            format!(
                "{}:3: Memory: \"lots\" is not a size such as 512k, 64M or 1G; no unit written for bad.service",
                src.join("bad.container").display()
            ),
            format!("{}: not a regular file; no unit written for dir.service", src.join("dir.container").display()),
        ]
    );
    let _ = fs::remove_dir_all(&src);
    let _ = fs::remove_dir_all(&out);
}

#[test]
fn templates_and_names_systemd_refuses_get_a_message() {
    let scope = Scope::System;
    for (name, what) in [
        ("web@.container", "template units"),
        ("a b.container", "cannot name a unit"),
    ] {
        let e =
            generate_one(Path::new(name), "[Container]\nExec=true\n", &scope, "/k").unwrap_err();
        assert!(e.message.contains(what), "{name}: {}", e.message);
    }
}

#[test]
fn no_source_directory_is_no_units_and_no_message() {
    let out = tempdir("none");
    let mut logged = Vec::new();
    let n = generate(
        Path::new("/nonexistent/kennel"),
        &out,
        &Scope::System,
        "/k",
        &mut |l| logged.push(l),
    );
    assert_eq!((n, logged.len()), (0, 0));
    let _ = fs::remove_dir_all(&out);
}

#[test]
fn an_unwritable_output_is_reported_per_file() {
    let src = tempdir("src-bad-out");
    fs::write(src.join("web.container"), "[Container]\nExec=true\n").unwrap();
    // A file where the output directory should be: no one can write in it.
    let out = src.join("notes.txt");
    fs::write(&out, "").unwrap();
    let mut logged = Vec::new();
    let n = generate(&src, &out, &Scope::System, "/k", &mut |l| logged.push(l));
    assert_eq!(n, 0);
    assert!(
        logged[0].contains("cannot write")
            && logged[0].ends_with("no unit written for web.service"),
        "{logged:?}"
    );
    let _ = fs::remove_dir_all(&src);
}

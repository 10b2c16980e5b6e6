use super::*;
use crate::ini::parse;

fn user() -> Scope {
    Scope::User {
        home: "/home/ann".into(),
    }
}

fn args(body: &str) -> Result<Vec<String>, Error> {
    let entries = parse(&format!("[Container]\n{body}"))?;
    Ok(build("web", &entries, &user())?.run_args)
}

fn err(body: &str) -> Error {
    args(body).expect_err(body)
}

#[test]
fn every_key_becomes_its_flag() {
    let got = args(
        "Rootfs=/srv/alpine\nName=front\nUserNS=keep-id\nUser=1000:1000\nWorkingDir=/app\nHostname=h\n\
         Network=pasta\nPublishPort=8080:80\nPublishPort=127.0.0.1:53:53/udp\nReadOnly=yes\nInit=true\nNoHome=no\n\
         Volume=~/data:/data\nVolume=/etc/ssl:/etc/ssl:ro\nTmpfs=/cache\nEnvironment=A=1 \"B=two words\"\n\
         EnvironmentFile=~/web.env\nUlimit=nofile=1024:4096\nAddCapability=NET_BIND_SERVICE CHOWN\n\
         DropCapability=ALL\nSecurityOpt=seccomp=unconfined\nLandlock=no\nMemory=64M\nMemorySwap=-1\n\
         Pids=50\nCPUs=0.5\nCPUWeight=200\nIOWeight=300\nNotify=yes\nKennelArgs=--verbose-flag x\n\
         Exec=httpd -f\n",
    )
    .unwrap();
    let want: Vec<String> = [
        "--name",
        "front",
        "--rootfs",
        "/srv/alpine",
        "--userns",
        "keep-id",
        "--user",
        "1000:1000",
        "--workdir",
        "/app",
        "--hostname",
        "h",
        "--net",
        "pasta",
        "--publish",
        "8080:80",
        "--publish",
        "127.0.0.1:53:53/udp",
        "--read-only",
        "--init",
        "--volume",
        "/home/ann/data:/data",
        "--volume",
        "/etc/ssl:/etc/ssl:ro",
        "--tmpfs",
        "/cache",
        "--env",
        "A=1",
        "--env",
        "B=two words",
        "--env-file",
        "/home/ann/web.env",
        "--ulimit",
        "nofile=1024:4096",
        "--cap-add",
        "NET_BIND_SERVICE",
        "--cap-add",
        "CHOWN",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "seccomp=unconfined",
        "--landlock=false",
        "--memory",
        "64M",
        "--memory-swap",
        "-1",
        "--pids-limit",
        "50",
        "--cpus",
        "0.5",
        "--cpu-weight",
        "200",
        "--io-weight",
        "300",
        "--sdnotify",
        "container",
        "--verbose-flag",
        "x",
        "--",
        "httpd",
        "-f",
    ]
    .map(String::from)
    .to_vec();
    assert_eq!(got, want);
}

#[test]
fn defaults_name_from_the_file_init_on_and_readiness_from_kennel() {
    assert_eq!(
        args("Exec=true\n").unwrap(),
        ["--name", "web", "--init", "--", "true"]
    );
    assert_eq!(
        args("Exec=true\nNotify=no\nInit=no\n").unwrap(),
        ["--name", "web", "--", "true"]
    );
    let entries = parse("[Container]\nExec=true\n").unwrap();
    let e = build("-bad", &entries, &user()).unwrap_err();
    assert_eq!(e.line, None);
    assert!(
        e.message.contains("rename the file or set Name="),
        "{}",
        e.message
    );
}

#[test]
fn an_empty_assignment_clears_a_list() {
    assert_eq!(
        args("Volume=/a:/a\nVolume=\nVolume=/b:/b\nExec=true\n").unwrap(),
        ["--name", "web", "--init", "--volume", "/b:/b", "--", "true"]
    );
}

#[test]
fn mistakes_name_their_line_and_key() {
    for (body, line, key, what) in [
        (
            "Exec=true\nMemroy=64M\n",
            Some(2),
            Some("Memroy"),
            "unknown key",
        ),
        (
            "Exec=true\nMemory=64Q\n",
            Some(2),
            Some("Memory"),
            "not a size",
        ),
        (
            "Exec=true\nMemory=0\n",
            Some(2),
            Some("Memory"),
            "not a size",
        ),
        (
            "Exec=true\nMemorySwap=lots\n",
            Some(2),
            Some("MemorySwap"),
            "not a size",
        ),
        (
            "Exec=true\nPids=0\n",
            Some(2),
            Some("Pids"),
            "positive number",
        ),
        (
            "Exec=true\nCPUs=-1\n",
            Some(2),
            Some("CPUs"),
            "positive number",
        ),
        (
            "Exec=true\nCPUWeight=20000\n",
            Some(2),
            Some("CPUWeight"),
            "1 to 10000",
        ),
        (
            "Exec=true\nNetwork=bridge\n",
            Some(2),
            Some("Network"),
            "not yet implemented",
        ),
        (
            "Exec=true\nNetwork=slirp\n",
            Some(2),
            Some("Network"),
            "private, host, pasta",
        ),
        (
            "Exec=true\nUserNS=host\n",
            Some(2),
            Some("UserNS"),
            "not one of",
        ),
        (
            "Exec=true\nNotify=maybe\n",
            Some(2),
            Some("Notify"),
            "not a boolean",
        ),
        (
            "Exec=true\nRootfs=images/alpine\n",
            Some(2),
            Some("Rootfs"),
            "relative",
        ),
        (
            "Exec=true\nVolume=/a\n",
            Some(2),
            Some("Volume"),
            "SOURCE:DEST",
        ),
        (
            "Exec=true\nVolume=/a:b\n",
            Some(2),
            Some("Volume"),
            "not an absolute path",
        ),
        (
            "Exec=true\nVolume=/a:/b:rx\n",
            Some(2),
            Some("Volume"),
            "SOURCE:DEST",
        ),
        (
            "Exec=true\nEnvironment=NOVALUE\n",
            Some(2),
            Some("Environment"),
            "NAME=VALUE",
        ),
        (
            "Exec=true\nName=../x\n",
            Some(2),
            Some("Name"),
            "container name",
        ),
        (
            "Exec=true\nImage=docker.io/alpine\n",
            Some(2),
            Some("Image"),
            "Rootfs=",
        ),
        ("Exec=sh -c 'oops\n", Some(1), Some("Exec"), "not closed"),
        ("Exec=\n", Some(1), Some("Exec"), "is empty"),
        (
            "Exec=a\nExec=b\n",
            Some(2),
            Some("Exec"),
            "given twice (first on line 2)",
        ),
        ("Memory=64M\n", None, Some("Exec"), "missing"),
    ] {
        let e = err(body);
        // The file's first line is [Container]: the body starts on line 2.
        assert_eq!(e.line, line.map(|l| l + 1), "{body:?}: {e:?}");
        assert_eq!(e.key.as_deref(), key, "{body:?}");
        assert!(e.message.contains(what), "{body:?}: {}", e.message);
    }
}

#[test]
fn home_paths_only_for_the_user_manager() {
    let entries = parse("[Container]\nRootfs=~/alpine\nExec=true\n").unwrap();
    let e = build("web", &entries, &Scope::System).unwrap_err();
    assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("Rootfs")));
    assert!(e.message.contains("write the full path"), "{}", e.message);
}

#[test]
fn a_file_without_a_container_section_is_refused() {
    let entries = parse("[Service]\nRestart=always\n").unwrap();
    let e = build("web", &entries, &user()).unwrap_err();
    assert!(
        e.message.contains("no [Container] section"),
        "{}",
        e.message
    );
}

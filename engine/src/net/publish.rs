//! What a container asks of user-mode networking: the annotations
//! `run.kennel.net=pasta` and `run.kennel.publish=SPEC[,SPEC...]`, each
//! SPEC `[IP:]HOSTPORT:CONTAINERPORT[/tcp|/udp]` (an IPv6 address in
//! brackets). Parsed here, before anything exists, so a malformed one is
//! an error naming it.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use anyhow::{anyhow, bail, Result};
use serde::{Deserialize, Serialize};

use crate::net::annotation::{bridge_of, NET_ANNOTATION};

pub const PUBLISH_ANNOTATION: &str = "run.kennel.publish";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// One published port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publish {
    /// None: every address of the host.
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
}

impl fmt::Display for Publish {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host_ip {
            Some(IpAddr::V6(ip)) => write!(f, "[{ip}]:")?,
            Some(IpAddr::V4(ip)) => write!(f, "{ip}:")?,
            None => {}
        }
        write!(
            f,
            "{}:{}/{}",
            self.host_port, self.container_port, self.protocol
        )
    }
}

fn port(text: &str, spec: &str, which: &str) -> Result<u16> {
    match text.parse::<u16>() {
        Ok(0) | Err(_) => bail!(
            "-p {spec:?}: the {which} port {text:?} is not a port number (1 to 65535); the form is [IP:]HOSTPORT:CONTAINERPORT[/tcp|/udp]"
        ),
        Ok(p) => Ok(p),
    }
}

impl std::str::FromStr for Publish {
    type Err = anyhow::Error;

    fn from_str(spec: &str) -> Result<Publish> {
        let (rest, protocol) = match spec.rsplit_once('/') {
            Some((rest, "tcp")) => (rest, Protocol::Tcp),
            Some((rest, "udp")) => (rest, Protocol::Udp),
            Some((_, other)) => {
                bail!("-p {spec:?}: unknown protocol {other:?}; pasta forwards tcp and udp only")
            }
            None => (spec, Protocol::Tcp),
        };
        let (host_ip, ports) = match rest.strip_prefix('[') {
            Some(v6) => {
                let (ip, ports) = v6.split_once("]:").ok_or_else(|| {
                    anyhow!("-p {spec:?}: an IPv6 address is written [ADDR]:HOSTPORT:CONTAINERPORT")
                })?;
                (Some(ip), ports)
            }
            None => match rest.matches(':').count() {
                1 => (None, rest),
                2 => {
                    let (ip, ports) = rest.split_once(':').unwrap_or_default();
                    (Some(ip), ports)
                }
                _ => bail!(
                    "-p {spec:?}: the form is [IP:]HOSTPORT:CONTAINERPORT[/tcp|/udp] (both ports are needed)"
                ),
            },
        };
        let host_ip = host_ip
            .map(|ip| {
                ip.parse::<IpAddr>()
                    .map_err(|_| anyhow!("-p {spec:?}: {ip:?} is not an IP address"))
            })
            .transpose()?;
        let (host, container) = ports.split_once(':').ok_or_else(|| {
            anyhow!("-p {spec:?}: the form is [IP:]HOSTPORT:CONTAINERPORT[/tcp|/udp]")
        })?;
        Ok(Publish {
            host_ip,
            host_port: port(host, spec, "host")?,
            container_port: port(container, spec, "container")?,
            protocol,
        })
    }
}

/// The user-mode network a spec asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PastaPlan {
    pub publish: Vec<Publish>,
}

/// Reads the annotations: None unless `run.kennel.net=pasta`.
pub fn plan(annotations: Option<&HashMap<String, String>>) -> Result<Option<PastaPlan>> {
    let get = |key: &str| annotations.and_then(|a| a.get(key)).map(String::as_str);
    let publish = match get(PUBLISH_ANNOTATION) {
        Some(list) if !list.trim().is_empty() => list
            .split(',')
            .map(|s| s.trim().parse())
            .collect::<Result<Vec<Publish>>>()?,
        _ => Vec::new(),
    };
    match get(NET_ANNOTATION) {
        Some("pasta") => Ok(Some(PastaPlan { publish })),
        None | Some("private") if publish.is_empty() => Ok(None),
        Some(v) if bridge_of(v).is_some() && publish.is_empty() => Ok(None),
        Some(v) if bridge_of(v).is_some() => bail!(
            "{PUBLISH_ANNOTATION} needs {NET_ANNOTATION}=pasta: a bridged container is reached at its own address, so there is nothing to publish"
        ),
        None | Some("private") => bail!(
            "{PUBLISH_ANNOTATION} needs {NET_ANNOTATION}=pasta: a private network has nothing to publish on (use --net pasta)"
        ),
        Some(other) => bail!(
            "{NET_ANNOTATION}={other:?} is not something kennel implements (pasta, bridge[=NAME] or private)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Publish> {
        s.parse()
    }

    #[test]
    fn parses_the_forms() {
        let a = p("18080:80").unwrap();
        assert_eq!(
            (a.host_ip, a.host_port, a.container_port),
            (None, 18080, 80)
        );
        assert_eq!(a.protocol, Protocol::Tcp);
        let b = p("127.0.0.1:5353:53/udp").unwrap();
        assert_eq!(b.host_ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(b.protocol, Protocol::Udp);
        let c = p("[::1]:8443:443/tcp").unwrap();
        assert_eq!(c.host_ip, Some("::1".parse().unwrap()));
        for s in ["18080:80", "127.0.0.1:5353:53/udp", "[::1]:8443:443/tcp"] {
            assert_eq!(
                p(s).unwrap().to_string().parse::<Publish>().unwrap(),
                p(s).unwrap()
            );
        }
    }

    #[test]
    fn refuses_malformed() {
        for (s, why) in [
            ("abc", "both ports"),
            ("70000:80", "not a port number"),
            ("0:80", "not a port number"),
            ("80:80/sctp", "unknown protocol"),
            ("nothere:80:80", "not an IP address"),
            ("[::1:80:80", "IPv6"),
            ("1:2:3:4", "both ports"),
        ] {
            let e = p(s).unwrap_err().to_string();
            assert!(e.contains(why), "{s}: {e}");
        }
    }

    #[test]
    fn annotations() {
        let mut a = HashMap::new();
        assert_eq!(plan(Some(&a)).unwrap(), None);
        a.insert(PUBLISH_ANNOTATION.into(), "8080:80".into());
        assert!(plan(Some(&a)).is_err());
        a.insert(NET_ANNOTATION.into(), "pasta".into());
        assert_eq!(plan(Some(&a)).unwrap().unwrap().publish.len(), 1);
        a.insert(NET_ANNOTATION.into(), "slirp".into());
        assert!(plan(Some(&a)).is_err());
    }
}

//! The rtnetlink requests kennel-net makes, built with
//! netlink-packet-route: one socket per namespace, one request at a time,
//! each acknowledged or answered with the kernel's errno.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, BorrowedFd};

use netlink_packet_core::{
    DefaultNla, ErrorBuffer, ErrorMessage, NetlinkBuffer, NetlinkDeserializable, NetlinkHeader,
    NetlinkMessage, NlasIterator, Parseable, ParseableParametrized, NLMSG_DONE, NLMSG_ERROR,
    NLMSG_NOOP, NLMSG_OVERRUN, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkExtentMask, LinkFlags, LinkInfo, LinkMessage,
    LinkMessageBuffer,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::tc::{TcAttribute, TcHandle, TcHeader, TcMessage, TcOption};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use nix::errno::Errno;

/// cls_bpf's attributes (linux/pkt_cls.h), which netlink-packet-route
/// does not model.
const TCA_BPF_OPS_LEN: u16 = 4;
const TCA_BPF_OPS: u16 = 5;
const TCA_BPF_NAME: u16 = 7;
const TCA_BPF_FLAGS: u16 = 8;
/// The program's return value is tc's verdict (direct action).
const TCA_BPF_FLAG_ACT_DIRECT: u32 = 1;
/// ETH_P_ALL (linux/if_ether.h): a filter that sees every frame.
const ETH_P_ALL: u16 = 0x0003;

pub struct Netlink {
    socket: Socket,
    seq: u32,
}

/// One link as a dump shows it.
pub struct Link {
    pub index: u32,
    pub name: String,
    pub alias: Option<String>,
    pub controller: Option<u32>,
    pub is_bridge: bool,
    pub is_veth: bool,
    pub mtu: Option<u32>,
}

impl Link {
    /// What telling kennel-net's veths from others' needs.
    pub fn facts(&self) -> kennel_net::LinkFacts<'_> {
        kennel_net::LinkFacts {
            index: self.index,
            name: &self.name,
            is_veth: self.is_veth,
            alias: self.alias.as_deref(),
        }
    }
}

fn io_errno(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

impl Netlink {
    /// A socket in our own network namespace.
    pub fn open() -> Result<Netlink, Errno> {
        let socket = Socket::new(NETLINK_ROUTE).map_err(io_errno)?;
        Netlink::from_socket(socket)
    }

    /// Uses `socket`, a NETLINK_ROUTE socket (perhaps made in another
    /// namespace, whose links it then reaches).
    pub fn from_socket(mut socket: Socket) -> Result<Netlink, Errno> {
        socket.bind_auto().map_err(io_errno)?;
        socket.connect(&SocketAddr::new(0, 0)).map_err(io_errno)?;
        Ok(Netlink { socket, seq: 0 })
    }

    /// Sends one request and hands each answer (its message type and
    /// payload) to `take`, until the dump is done, the kernel acknowledges
    /// (or refuses with an errno), or, for a plain request, the first
    /// answer.
    fn exchange(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
        mut take: impl FnMut(u16, &[u8]) -> Result<(), Errno>,
    ) -> Result<(), Errno> {
        self.seq += 1;
        let mut msg = NetlinkMessage::from(message);
        msg.header.flags = NLM_F_REQUEST | flags;
        msg.header.sequence_number = self.seq;
        msg.finalize();
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.serialize(&mut buf);
        self.socket.send(&buf, 0).map_err(io_errno)?;
        let mut rbuf = vec![0u8; 1 << 16];
        loop {
            let n = loop {
                match self.socket.recv(&mut &mut rbuf[..], 0) {
                    Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                    other => break other.map_err(io_errno)?,
                }
            };
            let mut offset = 0;
            while offset < n {
                let reply =
                    NetlinkBuffer::new_checked(&rbuf[offset..n]).map_err(|_| Errno::EBADMSG)?;
                let len = reply.length() as usize;
                if len == 0 {
                    return Err(Errno::EBADMSG);
                }
                offset += (len + 3) & !3;
                if reply.sequence_number() != self.seq {
                    continue;
                }
                match reply.message_type() {
                    NLMSG_ERROR => {
                        let payload = reply.payload();
                        let error = ErrorBuffer::new_checked(&payload)
                            .and_then(|b| ErrorMessage::parse(&b))
                            .map_err(|_| Errno::EBADMSG)?;
                        return match error.code {
                            None => Ok(()),
                            Some(code) => Err(Errno::from_raw(-code.get())),
                        };
                    }
                    NLMSG_DONE => return Ok(()),
                    NLMSG_NOOP | NLMSG_OVERRUN => {}
                    kind => {
                        take(kind, reply.payload())?;
                        if flags & NLM_F_DUMP == 0 && flags & NLM_F_ACK == 0 {
                            return Ok(());
                        }
                    }
                }
            }
        }
    }

    /// Sends one request and collects the answers: the messages of a dump,
    /// or nothing once the kernel acknowledges.
    fn request(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, Errno> {
        let mut answers = Vec::new();
        self.exchange(message, flags, |kind, payload| {
            let mut header = NetlinkHeader::default();
            header.message_type = kind;
            answers.push(
                RouteNetlinkMessage::deserialize(&header, payload).map_err(|_| Errno::EBADMSG)?,
            );
            Ok(())
        })?;
        Ok(answers)
    }

    /// Asks for links (a dump, or one by name) and reads from each only
    /// what a `Link` holds. netlink-packet-route's full parse of a link
    /// formats its whole IFLA_INFO_DATA once per attribute while reading a
    /// bridge's, which cost kennel-net more than the rest of its own work.
    fn request_links(&mut self, message: LinkMessage, flags: u16) -> Result<Vec<Link>, Errno> {
        let mut links = Vec::new();
        self.exchange(
            RouteNetlinkMessage::GetLink(message),
            flags,
            |kind, payload| {
                if kind == libc::RTM_NEWLINK {
                    links.push(link_of(payload)?);
                }
                Ok(())
            },
        )?;
        Ok(links)
    }

    /// Every link of the namespace.
    pub fn links(&mut self) -> Result<Vec<Link>, Errno> {
        // Without statistics, which the kernel would otherwise gather and
        // send for every link, and nothing here reads.
        let mut msg = LinkMessage::default();
        msg.attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
        self.request_links(msg, NLM_F_DUMP)
    }

    /// The link named `name` (ENODEV when there is none), asked for alone
    /// rather than found in a dump of every link.
    pub fn link_named(&mut self, name: &str) -> Result<Link, Errno> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        msg.attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
        self.request_links(msg, 0)?
            .into_iter()
            .next()
            .ok_or(Errno::ENODEV)
    }

    /// Creates a veth pair: `host` here, down and on no bridge (so
    /// nothing the peer sends goes anywhere until `attach_up`); its peer
    /// `peer` made directly in the namespace open on `netns`, with the
    /// hardware address `peer_mac`; both with `mtu` when given.
    pub fn create_veth(
        &mut self,
        host: &str,
        peer: &str,
        peer_mac: [u8; 6],
        netns: BorrowedFd<'_>,
        mtu: Option<u32>,
    ) -> Result<(), Errno> {
        let mut peer_msg = LinkMessage::default();
        peer_msg.attributes.extend(mtu.map(LinkAttribute::Mtu));
        peer_msg
            .attributes
            .push(LinkAttribute::IfName(peer.to_string()));
        peer_msg
            .attributes
            .push(LinkAttribute::Address(peer_mac.to_vec()));
        peer_msg
            .attributes
            .push(LinkAttribute::NetNsFd(netns.as_raw_fd()));
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(host.to_string()));
        msg.attributes.extend(mtu.map(LinkAttribute::Mtu));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
        ]));
        self.request(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK,
        )
        .map(drop)
    }

    /// Creates a bridge named `name`, up.
    pub fn create_bridge(&mut self, name: &str) -> Result<(), Errno> {
        let mut msg = LinkMessage::default();
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        msg.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        self.request(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK,
        )
        .map(drop)
    }

    /// Sets a link's alias (IFLA_IFALIAS).
    pub fn set_alias(&mut self, index: u32, alias: &str) -> Result<(), Errno> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes
            .push(LinkAttribute::IfAlias(alias.to_string()));
        self.request(RouteNetlinkMessage::SetLink(msg), NLM_F_ACK)
            .map(drop)
    }

    /// Puts link `index` on bridge `controller` and brings it up.
    pub fn attach_up(&mut self, index: u32, controller: u32) -> Result<(), Errno> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        msg.attributes.push(LinkAttribute::Controller(controller));
        self.request(RouteNetlinkMessage::SetLink(msg), NLM_F_ACK)
            .map(drop)
    }

    /// Gives link `index` a clsact qdisc and, on its ingress (what the far
    /// end of a veth sends), the classic BPF `program` as the one filter,
    /// its return value the verdict.
    pub fn add_port_filter(
        &mut self,
        index: u32,
        program: &[kennel_net::SockFilter],
    ) -> Result<(), Errno> {
        let ifindex = i32::try_from(index).map_err(|_| Errno::EINVAL)?;
        let mut qdisc = TcMessage::with_index(ifindex);
        qdisc.header.handle = TcHandle {
            major: 0xffff,
            minor: 0,
        };
        qdisc.header.parent = TcHandle::CLSACT;
        qdisc.attributes.push(TcAttribute::Kind("clsact".into()));
        self.request(
            RouteNetlinkMessage::NewQueueDiscipline(qdisc),
            NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK,
        )?;
        let ops: Vec<u8> = program.iter().flat_map(|i| i.to_bytes()).collect();
        let count = u16::try_from(program.len()).map_err(|_| Errno::E2BIG)?;
        let nla = |kind, value: Vec<u8>| TcOption::Other(DefaultNla::new(kind, value));
        let filter = TcMessage::from_parts(
            TcHeader {
                index: ifindex,
                handle: TcHandle { major: 0, minor: 1 },
                parent: TcHandle {
                    major: 0xffff,
                    minor: TcHandle::MIN_INGRESS,
                },
                // Priority 1; the protocol in network byte order.
                info: (1 << 16) | u32::from(ETH_P_ALL.to_be()),
                ..TcHeader::default()
            },
            vec![
                TcAttribute::Kind("bpf".into()),
                TcAttribute::Options(vec![
                    nla(TCA_BPF_OPS_LEN, count.to_ne_bytes().to_vec()),
                    nla(TCA_BPF_OPS, ops),
                    nla(TCA_BPF_NAME, b"kennel-net\0".to_vec()),
                    nla(
                        TCA_BPF_FLAGS,
                        TCA_BPF_FLAG_ACT_DIRECT.to_ne_bytes().to_vec(),
                    ),
                ]),
            ],
        );
        self.request(
            RouteNetlinkMessage::NewTrafficFilter(filter),
            NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK,
        )
        .map(drop)
    }

    /// Brings a link up.
    pub fn set_up(&mut self, index: u32) -> Result<(), Errno> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        self.request(RouteNetlinkMessage::SetLink(msg), NLM_F_ACK)
            .map(drop)
    }

    /// Deletes a link (for a veth, both ends).
    pub fn delete_link(&mut self, index: u32) -> Result<(), Errno> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        self.request(RouteNetlinkMessage::DelLink(msg), NLM_F_ACK)
            .map(drop)
    }

    /// Adds `address/prefix` to link `index`.
    pub fn add_address(&mut self, index: u32, address: Ipv4Addr, prefix: u8) -> Result<(), Errno> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.prefix_len = prefix;
        msg.header.index = index;
        msg.attributes.push(AddressAttribute::Local(address.into()));
        msg.attributes
            .push(AddressAttribute::Address(address.into()));
        self.request(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK,
        )
        .map(drop)
    }

    /// Adds the default route via `gateway` on link `index`.
    pub fn add_default_route(&mut self, index: u32, gateway: Ipv4Addr) -> Result<(), Errno> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.scope = RouteScope::Universe;
        msg.header.kind = RouteType::Unicast;
        msg.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        msg.attributes.push(RouteAttribute::Oif(index));
        self.request(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK,
        )
        .map(drop)
    }
}

/// A `Link` from an RTM_NEWLINK payload: the header's index and the
/// attributes a `Link` holds, each parsed by netlink-packet-route; of
/// IFLA_LINKINFO only its kind.
fn link_of(payload: &[u8]) -> Result<Link, Errno> {
    let message = LinkMessageBuffer::new_checked(payload).map_err(|_| Errno::EBADMSG)?;
    let mut link = Link {
        index: message.link_index(),
        name: String::new(),
        alias: None,
        controller: None,
        is_bridge: false,
        is_veth: false,
        mtu: None,
    };
    for nla in message.attributes() {
        let nla = nla.map_err(|_| Errno::EBADMSG)?;
        if nla.kind() == libc::IFLA_LINKINFO {
            for info in NlasIterator::new(nla.value()) {
                let info = info.map_err(|_| Errno::EBADMSG)?;
                if info.kind() == libc::IFLA_INFO_KIND {
                    let kind = InfoKind::parse(&info).map_err(|_| Errno::EBADMSG)?;
                    link.is_bridge = kind == InfoKind::Bridge;
                    link.is_veth = kind == InfoKind::Veth;
                }
            }
            continue;
        }
        if ![
            libc::IFLA_IFNAME,
            libc::IFLA_IFALIAS,
            libc::IFLA_MASTER,
            libc::IFLA_MTU,
        ]
        .contains(&nla.kind())
        {
            continue;
        }
        match LinkAttribute::parse_with_param(&nla, AddressFamily::Unspec)
            .map_err(|_| Errno::EBADMSG)?
        {
            LinkAttribute::IfName(n) => link.name = n,
            LinkAttribute::IfAlias(a) => link.alias = Some(a),
            LinkAttribute::Controller(c) => link.controller = Some(c),
            LinkAttribute::Mtu(m) => link.mtu = Some(m),
            _ => {}
        }
    }
    Ok(link)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::Emitable;
    use netlink_packet_route::link::InfoBridge;

    fn payload(message: &LinkMessage) -> Vec<u8> {
        let mut bytes = vec![0u8; message.buffer_len()];
        message.emit(&mut bytes);
        bytes
    }

    #[test]
    fn a_link_is_read_from_its_attributes_and_its_kind() {
        let mut bridge = LinkMessage::default();
        bridge.header.index = 7;
        bridge.attributes = vec![
            LinkAttribute::IfName("kennel0".into()),
            LinkAttribute::Mtu(65520),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Bridge),
                LinkInfo::Data(InfoData::Bridge(vec![
                    InfoBridge::StpState(0),
                    InfoBridge::Priority(32768),
                ])),
            ]),
        ];
        let link = link_of(&payload(&bridge)).unwrap();
        assert_eq!((link.index, link.name.as_str()), (7, "kennel0"));
        assert!(link.is_bridge && !link.is_veth);
        assert_eq!(
            (link.mtu, link.controller, link.alias),
            (Some(65520), None, None)
        );

        let mut veth = LinkMessage::default();
        veth.header.index = 9;
        veth.attributes = vec![
            LinkAttribute::IfName("kn1".into()),
            LinkAttribute::Controller(7),
            LinkAttribute::IfAlias("kennel-net uid=1000".into()),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Veth)]),
        ];
        let link = link_of(&payload(&veth)).unwrap();
        assert_eq!((link.index, link.name.as_str()), (9, "kn1"));
        assert!(!link.is_bridge && link.is_veth);
        assert_eq!(link.controller, Some(7));
        assert_eq!(link.alias.as_deref(), Some("kennel-net uid=1000"));
    }

    #[test]
    fn a_truncated_link_is_refused() {
        let mut veth = LinkMessage::default();
        veth.attributes = vec![LinkAttribute::IfName("kn1".into())];
        let bytes = payload(&veth);
        assert_eq!(
            link_of(&bytes[..bytes.len() - 3]).err(),
            Some(Errno::EBADMSG)
        );
        assert!(link_of(&bytes[..4]).is_err());
    }
}

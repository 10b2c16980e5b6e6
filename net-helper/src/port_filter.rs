//! What a container may send on the bridge, as a classic BPF program the
//! helper attaches (cls_bpf, direct action) to the ingress of the host end
//! of its veth, where every frame the container sends arrives before the
//! bridge sees it. The container's root may hold CAP_NET_ADMIN and
//! CAP_NET_RAW in its own namespace (`--cap-add NET_ADMIN`), so it can
//! change its address and MAC and write any frame; the program lets
//! through only frames that speak with the identity kennel-net gave it:
//!
//! * Ethernet source = the container's MAC (`container_mac`), no VLAN tag;
//! * IPv4 with source = its address;
//! * ARP (Ethernet/IPv4) with sender MAC and sender address = its own, so
//!   no gratuitous or forged reply can claim another container's address
//!   or the gateway's;
//! * IPv6 from its EUI-64 link-local address (the one the kernel derives
//!   from that MAC) or from `::` (duplicate address detection); kennel-net
//!   assigns no other IPv6 address;
//! * nothing else (other ethertypes, STP, LLDP, 802.1Q, runt frames).
//!
//! Classic BPF, because it needs no CAP_BPF (the program travels in the
//! netlink request, as a socket filter's does) and cls_bpf is built where
//! flower and gact are not. Every load is preceded by a length check: a
//! classic program whose load runs past the frame returns 0, which for
//! tc is TC_ACT_OK.

use std::net::Ipv4Addr;

/// One classic BPF instruction (`struct sock_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SockFilter {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

impl SockFilter {
    /// The instruction as the kernel reads it (native byte order).
    pub fn to_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0..2].copy_from_slice(&self.code.to_ne_bytes());
        b[2] = self.jt;
        b[3] = self.jf;
        b[4..8].copy_from_slice(&self.k.to_ne_bytes());
        b
    }
}

// linux/filter.h and linux/bpf_common.h.
pub const BPF_LD: u16 = 0x00;
pub const BPF_JMP: u16 = 0x05;
pub const BPF_RET: u16 = 0x06;
pub const BPF_W: u16 = 0x00;
pub const BPF_H: u16 = 0x08;
pub const BPF_ABS: u16 = 0x20;
pub const BPF_LEN: u16 = 0x80;
pub const BPF_JEQ: u16 = 0x10;
pub const BPF_JGE: u16 = 0x30;
pub const BPF_K: u16 = 0x00;
/// SKF_AD_OFF + SKF_AD_VLAN_TAG_PRESENT: whether the frame carries a
/// VLAN tag out of band (veth takes tags that way).
pub const VLAN_TAG_PRESENT: u32 = (-0x1000i32 + 48) as u32;

/// tc's verdicts (linux/pkt_cls.h).
pub const TC_ACT_OK: u32 = 0;
pub const TC_ACT_SHOT: u32 = 2;

const ETH_P_IP: u32 = 0x0800;
const ETH_P_ARP: u32 = 0x0806;
const ETH_P_IPV6: u32 = 0x86dd;

/// Where a jump goes.
#[derive(Clone, Copy)]
enum To {
    Next,
    L(&'static str),
}

enum Op {
    Label(&'static str),
    LdW(u32),
    LdH(u32),
    LdAbs(u32),
    LdLen,
    Jeq(u32, To, To),
    Jge(u32, To, To),
    Ret(u32),
}

use Op::*;
use To::*;

/// The program for a container with hardware address `mac` and IPv4
/// address `ip`.
pub fn port_filter(mac: [u8; 6], ip: Ipv4Addr) -> Vec<SockFilter> {
    let be = u32::from_be_bytes;
    let mac_hi = be([mac[0], mac[1], mac[2], mac[3]]);
    let mac_lo = u32::from(u16::from_be_bytes([mac[4], mac[5]]));
    let ip = u32::from(ip);
    let ll_hi = be([mac[0] ^ 0x02, mac[1], mac[2], 0xff]);
    let ll_lo = be([0xfe, mac[3], mac[4], mac[5]]);
    const DROP: To = L("drop");
    const OK: To = L("ok");
    assemble(&[
        LdAbs(VLAN_TAG_PRESENT),
        Jeq(0, Next, DROP),
        // The Ethernet header: its source is the container's MAC.
        LdLen,
        Jge(14, Next, DROP),
        LdW(6),
        Jeq(mac_hi, Next, DROP),
        LdH(10),
        Jeq(mac_lo, Next, DROP),
        LdH(12),
        Jeq(ETH_P_IP, L("ipv4"), Next),
        Jeq(ETH_P_ARP, L("arp"), Next),
        Jeq(ETH_P_IPV6, L("ipv6"), DROP),
        // IPv4: the source address.
        Label("ipv4"),
        LdLen,
        Jge(14 + 20, Next, DROP),
        LdW(14 + 12),
        Jeq(ip, OK, DROP),
        // ARP for IPv4 over Ethernet; the sender is the container.
        Label("arp"),
        LdLen,
        Jge(14 + 28, Next, DROP),
        LdW(14),
        Jeq(0x0001_0800, Next, DROP),
        LdH(14 + 4),
        Jeq(0x0604, Next, DROP),
        LdW(14 + 8),
        Jeq(mac_hi, Next, DROP),
        LdH(14 + 12),
        Jeq(mac_lo, Next, DROP),
        LdW(14 + 14),
        Jeq(ip, OK, DROP),
        // IPv6: from the link-local address of its MAC, or unspecified.
        Label("ipv6"),
        LdLen,
        Jge(14 + 40, Next, DROP),
        LdW(14 + 8),
        Jeq(0xfe80_0000, L("ll"), Next),
        Jeq(0, L("unspec"), DROP),
        Label("ll"),
        LdW(14 + 12),
        Jeq(0, Next, DROP),
        LdW(14 + 16),
        Jeq(ll_hi, Next, DROP),
        LdW(14 + 20),
        Jeq(ll_lo, OK, DROP),
        Label("unspec"),
        LdW(14 + 12),
        Jeq(0, Next, DROP),
        LdW(14 + 16),
        Jeq(0, Next, DROP),
        LdW(14 + 20),
        Jeq(0, OK, DROP),
        Label("ok"),
        Ret(TC_ACT_OK),
        Label("drop"),
        Ret(TC_ACT_SHOT),
    ])
}

/// Resolves labels into the relative jumps classic BPF takes.
fn assemble(ops: &[Op]) -> Vec<SockFilter> {
    let mut at = std::collections::HashMap::new();
    let mut n = 0usize;
    for op in ops {
        match op {
            Label(l) => {
                at.insert(*l, n);
            }
            _ => n += 1,
        }
    }
    let mut out = Vec::with_capacity(n);
    for op in ops {
        let i = out.len();
        let rel = |to: To| -> u8 {
            let target = match to {
                Next => i + 1,
                L(l) => at[l],
            };
            u8::try_from(target - (i + 1)).expect("a forward jump shorter than 256")
        };
        let ins = |code: u16, jt: u8, jf: u8, k: u32| SockFilter { code, jt, jf, k };
        out.push(match *op {
            Label(_) => continue,
            LdW(k) | LdAbs(k) => ins(BPF_LD | BPF_W | BPF_ABS, 0, 0, k),
            LdH(k) => ins(BPF_LD | BPF_H | BPF_ABS, 0, 0, k),
            LdLen => ins(BPF_LD | BPF_W | BPF_LEN, 0, 0, 0),
            Jeq(k, t, f) => ins(BPF_JMP | BPF_JEQ | BPF_K, rel(t), rel(f), k),
            Jge(k, t, f) => ins(BPF_JMP | BPF_JGE | BPF_K, rel(t), rel(f), k),
            Ret(k) => ins(BPF_RET | BPF_K, 0, 0, k),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Runs `prog` over `frame` as the kernel would; None where a load runs
    /// past the frame, which ends the kernel's run with 0 (TC_ACT_OK: the
    /// frame would pass).
    fn run(prog: &[SockFilter], frame: &[u8], vlan: bool) -> Option<u32> {
        let mut a: u32 = 0;
        let mut pc = 0usize;
        loop {
            let ins = prog[pc];
            pc += 1;
            let load = |k: u32, size: usize| -> Option<u32> {
                let k = k as usize;
                let bytes = frame.get(k..k.checked_add(size)?)?;
                Some(bytes.iter().fold(0u32, |acc, b| acc << 8 | u32::from(*b)))
            };
            match ins.code {
                c if c == BPF_LD | BPF_W | BPF_ABS && ins.k == VLAN_TAG_PRESENT => {
                    a = u32::from(vlan)
                }
                c if c == BPF_LD | BPF_W | BPF_ABS => match load(ins.k, 4) {
                    Some(v) => a = v,
                    None => return None,
                },
                c if c == BPF_LD | BPF_H | BPF_ABS => match load(ins.k, 2) {
                    Some(v) => a = v,
                    None => return None,
                },
                c if c == BPF_LD | BPF_W | BPF_LEN => a = frame.len() as u32,
                c if c == BPF_JMP | BPF_JEQ | BPF_K => {
                    pc += usize::from(if a == ins.k { ins.jt } else { ins.jf })
                }
                c if c == BPF_JMP | BPF_JGE | BPF_K => {
                    pc += usize::from(if a >= ins.k { ins.jt } else { ins.jf })
                }
                c if c == BPF_RET | BPF_K => return Some(ins.k),
                c => panic!("instruction {c:#x} not in the program's subset"),
            }
        }
    }

    const MAC: [u8; 6] = [0x02, 0x6b, 10, 88, 0, 2];
    const OTHER_MAC: [u8; 6] = [0x02, 0x6b, 10, 88, 0, 3];
    const IP: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 2);
    const OTHER_IP: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 3);
    const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 1);

    fn eth(src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&src);
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn ipv4(src: Ipv4Addr) -> Vec<u8> {
        let mut h = vec![0x45, 0, 0, 20, 0, 0, 0, 0, 64, 6, 0, 0];
        h.extend_from_slice(&src.octets());
        h.extend_from_slice(&GATEWAY.octets());
        h
    }

    fn arp(op: u16, sha: [u8; 6], sip: Ipv4Addr, tip: Ipv4Addr) -> Vec<u8> {
        let mut a = vec![0, 1, 8, 0, 6, 4];
        a.extend_from_slice(&op.to_be_bytes());
        a.extend_from_slice(&sha);
        a.extend_from_slice(&sip.octets());
        a.extend_from_slice(&[0; 6]);
        a.extend_from_slice(&tip.octets());
        a
    }

    fn ipv6(src: [u8; 16]) -> Vec<u8> {
        let mut h = vec![0x60, 0, 0, 0, 0, 8, 58, 255];
        h.extend_from_slice(&src);
        h.extend_from_slice(&[0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        h
    }

    fn link_local(mac: [u8; 6]) -> [u8; 16] {
        let mut a = [0u8; 16];
        a[0] = 0xfe;
        a[1] = 0x80;
        a[8..].copy_from_slice(&[
            mac[0] ^ 2,
            mac[1],
            mac[2],
            0xff,
            0xfe,
            mac[3],
            mac[4],
            mac[5],
        ]);
        a
    }

    #[test]
    fn the_containers_own_frames_pass() {
        let p = port_filter(MAC, IP);
        for frame in [
            eth(MAC, 0x0800, &ipv4(IP)),
            eth(MAC, 0x0806, &arp(1, MAC, IP, GATEWAY)),
            eth(MAC, 0x0806, &arp(2, MAC, IP, OTHER_IP)),
            eth(MAC, 0x86dd, &ipv6(link_local(MAC))),
            eth(MAC, 0x86dd, &ipv6([0; 16])),
        ] {
            assert_eq!(run(&p, &frame, false), Some(TC_ACT_OK), "{frame:02x?}");
        }
    }

    #[test]
    fn takeovers_and_strangers_are_dropped() {
        let p = port_filter(MAC, IP);
        let cases = [
            ("another address", eth(MAC, 0x0800, &ipv4(OTHER_IP))),
            ("the gateway's address", eth(MAC, 0x0800, &ipv4(GATEWAY))),
            ("another MAC", eth(OTHER_MAC, 0x0800, &ipv4(IP))),
            (
                "another MAC and address",
                eth(OTHER_MAC, 0x0800, &ipv4(OTHER_IP)),
            ),
            (
                "gratuitous ARP for another",
                eth(MAC, 0x0806, &arp(2, MAC, OTHER_IP, OTHER_IP)),
            ),
            (
                "gratuitous ARP for the gateway",
                eth(MAC, 0x0806, &arp(1, MAC, GATEWAY, GATEWAY)),
            ),
            (
                "ARP with another sender MAC",
                eth(MAC, 0x0806, &arp(2, OTHER_MAC, IP, GATEWAY)),
            ),
            (
                "ARP from another MAC",
                eth(OTHER_MAC, 0x0806, &arp(2, OTHER_MAC, OTHER_IP, GATEWAY)),
            ),
            (
                "IPv6 from another link-local",
                eth(MAC, 0x86dd, &ipv6(link_local(OTHER_MAC))),
            ),
            (
                "IPv6 from a global address",
                eth(
                    MAC,
                    0x86dd,
                    &ipv6([0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
                ),
            ),
            ("LLDP", eth(MAC, 0x88cc, &[0; 40])),
            ("802.1Q in the frame", eth(MAC, 0x8100, &[0; 40])),
            ("a runt", eth(MAC, 0x0800, &[0x45])),
            (
                "a truncated ARP",
                eth(MAC, 0x0806, &arp(2, MAC, IP, GATEWAY)[..20]),
            ),
            ("a bare header", MAC.to_vec()),
        ];
        for (what, frame) in cases {
            assert_eq!(run(&p, &frame, false), Some(TC_ACT_SHOT), "{what}");
        }
        let tagged = eth(MAC, 0x0800, &ipv4(IP));
        assert_eq!(
            run(&p, &tagged, true),
            Some(TC_ACT_SHOT),
            "a VLAN tag out of band"
        );
    }

    #[test]
    fn the_program_is_short_and_ends_in_a_verdict() {
        let p = port_filter(MAC, IP);
        assert!(p.len() < 64, "{}", p.len());
        assert_eq!(p.last().map(|i| i.code), Some(BPF_RET | BPF_K));
        assert_eq!(
            p[0].to_bytes()[..2],
            (BPF_LD | BPF_W | BPF_ABS).to_ne_bytes()
        );
    }

    proptest! {
        /// No frame, of any length, passes unless it comes from the
        /// container's MAC; and never with an out-of-range load (which
        /// would pass it).
        #[test]
        fn any_frame_from_another_mac_is_dropped(
            tail in proptest::collection::vec(any::<u8>(), 0..80),
            src in any::<[u8; 6]>(),
            ethertype in prop_oneof![Just(0x0800u16), Just(0x0806), Just(0x86dd), any::<u16>()],
        ) {
            prop_assume!(src != MAC);
            let p = port_filter(MAC, IP);
            prop_assert_eq!(run(&p, &eth(src, ethertype, &tail), false), Some(TC_ACT_SHOT));
        }

        #[test]
        fn any_frame_from_the_mac_is_judged_not_aborted(
            tail in proptest::collection::vec(any::<u8>(), 0..80),
            ethertype in prop_oneof![Just(0x0800u16), Just(0x0806), Just(0x86dd)],
        ) {
            let p = port_filter(MAC, IP);
            let frame = eth(MAC, ethertype, &tail);
            let verdict = run(&p, &frame, false);
            prop_assert!(verdict == Some(TC_ACT_OK) || verdict == Some(TC_ACT_SHOT), "{:?}", verdict);
            if verdict == Some(TC_ACT_OK) {
                // It passed on its merits: long enough for every check.
                prop_assert!(frame.len() >= 34);
            }
        }
    }
}

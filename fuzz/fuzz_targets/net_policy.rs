//! Fuzzes kennel-net's policy parser (net-helper/src/policy.rs), whose
//! input is /etc/kennel/net.conf: any text parses without a panic, and
//! every grant and bridge it keeps is well formed, so a damaged file can
//! only grant less.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let policy = kennel_net::parse_policy(text);
    for g in &policy.grants {
        assert!(kennel_net::valid_ifname(&g.bridge));
        assert!(g.count <= kennel_net::MAX_COUNT);
    }
    for b in &policy.bridges {
        assert!(kennel_net::valid_ifname(&b.name));
        let s = b.subnet;
        assert!((kennel_net::MIN_PREFIX..=kennel_net::MAX_PREFIX).contains(&s.prefix()));
        assert!(!s.is_container_address(s.gateway()));
        if let Some(a) = s.pick(&[]) {
            assert!(s.is_container_address(a));
        }
        assert_eq!(s.to_string().parse::<kennel_net::Subnet>(), Ok(s));
    }
    let lines = text.lines().count();
    assert!(policy.bad_lines.iter().all(|b| b.number >= 1 && b.number <= lines));
});

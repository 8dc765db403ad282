//! SSRF guard: webhooks never reach loopback, private, link-local (cloud metadata), CGNAT,
//! unique-local, multicast, unspecified, documentation or reserved addresses, in any spelling;
//! IPv6 only inside global unicast (2000::/3).
//!
//! Checked three times, the Svix way: literal IPs when a subscription record is read, literal IPs
//! in the URL before sending, and every DNS answer inside the connector's resolver
//! (`delivery::ssrf`), so the address checked is the address dialled. All are relaxed only by
//! `ALLOW_PRIVATE_TARGETS=true` (local development). This module is the pure address policy; the
//! records and the HTTP client share it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::Url;

/// Whether a webhook may be sent to `ip`. Pure; table-tested.
pub fn is_allowed(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_allowed(v4),
        IpAddr::V6(v6) => v6_allowed(v6),
    }
}

fn v4_allowed(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0                                   // 0.0.0.0/8 "this network", unspecified
        || a == 10                             // 10/8 private
        || a == 127                            // loopback
        || (a == 100 && (64..128).contains(&b)) // 100.64/10 CGNAT
        || (a == 169 && b == 254)              // link-local, cloud metadata
        || (a == 172 && (16..32).contains(&b)) // 172.16/12 private
        || (a == 192 && b == 0 && c == 0)      // 192.0.0/24 IETF protocol assignments
        || (a == 192 && b == 0 && c == 2)      // TEST-NET-1
        || (a == 192 && b == 88 && c == 99)    // 6to4 relay anycast
        || (a == 192 && b == 168)              // 192.168/16 private
        || (a == 198 && (b == 18 || b == 19))  // benchmarking
        || (a == 198 && b == 51 && c == 100)   // TEST-NET-2
        || (a == 203 && b == 0 && c == 113)    // TEST-NET-3
        || a >= 224) // multicast 224/4, reserved 240/4, broadcast
}

/// IPv6: only global unicast, 2000::/3, and within it not the special-purpose ranges of the IANA
/// IPv6 Special-Purpose Address Registry. Everything outside 2000::/3 is refused, the forms that
/// embed an IPv4 address (::ffff:0:0/96 mapped, ::/96 compatible, 64:ff9b::/96 NAT64) included: a
/// webhook to an IPv4 target is sent to its IPv4 address.
fn v6_allowed(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    if s[0] & 0xe000 != 0x2000 {
        return false; // outside 2000::/3: ::/8, 100::/64, 5f00::/16, fc00::/7, fe80::/10, ff00::/8, ...
    }
    if s[0] == 0x2002 {
        // 6to4: 2002:AABB:CCDD::/48 embeds AA.BB.CC.DD.
        let v4 = Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8);
        return v4_allowed(v4);
    }
    let special = match s[0] {
        // 2001::/23 IETF protocol assignments (Teredo included), 2001:db8::/32 documentation
        0x2001 => s[1] < 0x0200 || s[1] == 0x0db8,
        0x3fff => s[1] < 0x1000, // 3fff::/20 documentation (RFC 9637)
        _ => false,
    };
    !special
}

/// Why a target was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{host} resolves only to blocked addresses ({addresses})")]
pub struct Blocked {
    pub host: String,
    pub addresses: String,
}

/// Check a URL whose host is a literal IP (the resolver is not consulted for those).
pub fn check_literal(url: &Url) -> Result<(), Blocked> {
    let ip = match url.host() {
        Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
        _ => return Ok(()),
    };
    if is_allowed(ip) {
        Ok(())
    } else {
        Err(Blocked {
            host: ip.to_string(),
            addresses: ip.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_table() {
        let blocked = [
            "127.0.0.1",
            "127.1.2.3",
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.0.1",
            "100.64.0.1",
            "100.127.255.254",
            "192.0.0.8",
            "192.0.2.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "fd00::1",
            "fc00::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::7f00:1",
            "2002:7f00:1::1",
            "2002:a9fe:a9fe::1",
            "100::1",
            "2001::1",
            // Outside 2000::/3, however they embed a public address.
            "::ffff:8.8.8.8",
            "::808:808",
            "64:ff9b::808:808",
            "::ffff:0:808:808",
            "5f00::1",
            "3fff::1",
            "3fff:fff:ffff::1",
            "1000::1",
            "4000::1",
        ];
        let allowed = [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "169.253.0.1",
            "192.169.0.1",
            "11.0.0.1",
            "2606:4700:4700::1111",
            "3fff:1000::1",
            "2a00:1450:4001:82b::200e",
            "2002:808:808::1",
        ];
        for a in blocked {
            assert!(!is_allowed(a.parse().unwrap()), "{a} should be blocked");
        }
        for a in allowed {
            assert!(is_allowed(a.parse().unwrap()), "{a} should be allowed");
        }
    }

    #[test]
    fn literal_hosts_in_any_spelling() {
        for url in [
            "https://127.0.0.1/x",
            "https://2130706433/x", // decimal
            "https://0x7f.0.0.1/x", // hex
            "https://0177.0.0.1/x", // octal
            "https://127.1/x",      // short form
            "https://[::ffff:127.0.0.1]/x",
            "https://[::1]:8443/x",
            "https://169.254.169.254/latest/meta-data/",
        ] {
            let u = Url::parse(url).unwrap();
            assert!(check_literal(&u).is_err(), "{url} should be blocked");
        }
        assert!(check_literal(&Url::parse("https://hooks.example.com/x").unwrap()).is_ok());
        assert!(check_literal(&Url::parse("https://8.8.8.8/x").unwrap()).is_ok());
    }
}

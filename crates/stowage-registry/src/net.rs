//! Client addresses: CIDR networks (`--trusted-proxies`), IPv4-mapped
//! addresses made canonical, and the client behind trusted proxies from
//! `X-Forwarded-For`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use axum::http::{HeaderMap, HeaderName};

/// An IPv4 or IPv6 network: `10.0.0.0/8`, `2001:db8::/32`, or one address
/// (`192.0.2.7` is `192.0.2.7/32`).
///
/// IPv4-mapped IPv6 networks (`::ffff:10.0.0.0/104`) are kept as the IPv4
/// network they name, and addresses are compared in their canonical form,
/// so `::ffff:10.1.2.3` is inside `10.0.0.0/8`. Bits below the prefix are
/// cleared: `10.1.2.3/8` is `10.0.0.0/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// Why a CIDR did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CidrParseError {
    text: String,
    reason: &'static str,
}

impl fmt::Display for CidrParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad CIDR {:?}: {}", self.text, self.reason)
    }
}

impl std::error::Error for CidrParseError {}

/// The address as a number and its width in bits.
fn bits(ip: IpAddr) -> (u128, u8) {
    match ip {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
        IpAddr::V6(v6) => (u128::from(v6), 128),
    }
}

/// `value` with every bit below the top `prefix` of `width` cleared.
fn mask(value: u128, width: u8, prefix: u8) -> u128 {
    let host_bits = u32::from(width.saturating_sub(prefix));
    if host_bits >= 128 {
        0
    } else {
        (value >> host_bits) << host_bits
    }
}

impl Cidr {
    /// One address (`/32` or `/128`), canonical.
    pub fn single(ip: IpAddr) -> Self {
        let ip = ip.to_canonical();
        let prefix = if ip.is_ipv4() { 32 } else { 128 };
        Self { addr: ip, prefix }
    }

    /// The network address (host bits cleared).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` (in any form: `::ffff:a.b.c.d` counts as `a.b.c.d`) is
    /// inside the network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (net, width) = bits(self.addr);
        let (addr, width2) = bits(ip.to_canonical());
        width == width2 && mask(addr, width, self.prefix) == net
    }
}

impl FromStr for Cidr {
    type Err = CidrParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |reason| CidrParseError {
            text: text.to_string(),
            reason,
        };
        let trimmed = text.trim();
        let (addr, prefix) = match trimmed.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (trimmed, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| bad("not an IPv4 or IPv6 address (a.b.c.d/n or x:y::z/n)"))?;
        let width: u8 = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => width,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= width)
                .ok_or_else(|| bad("the prefix length must be at most 32 (IPv4) or 128 (IPv6)"))?,
            Some(_) => return Err(bad("the prefix length must be a number")),
        };
        // An IPv4-mapped network is the IPv4 network it names.
        let (addr, prefix) = match addr {
            IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), prefix - 96),
                None => (addr, prefix),
            },
            _ => (addr, prefix),
        };
        let (value, width) = bits(addr);
        let masked = mask(value, width, prefix);
        let addr = match addr {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(masked as u32)),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(masked)),
        };
        Ok(Self { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The `X-Forwarded-For` header.
const FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// One `X-Forwarded-For` entry: `a.b.c.d`, an IPv6 address, or either with
/// a port (`a.b.c.d:p`, `[x::y]:p`), as some proxies write them.
fn forwarded_ip(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = entry.strip_prefix('[') {
        let (inside, _) = rest.split_once(']')?;
        return inside.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    let (host, port) = entry.rsplit_once(':')?;
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

/// The client's address, canonical (`::ffff:a.b.c.d` becomes `a.b.c.d`).
///
/// When the TCP peer is inside one of `trusted`, it is a proxy: the client
/// is the right-most address of `X-Forwarded-For` (all such headers, in
/// order) that is not itself trusted, walking from the right. When every
/// listed address is trusted, the left-most is the client; when an entry
/// is not an address, the walk stops and the last address it vouched for
/// is used. When the peer is not trusted, `X-Forwarded-For` is ignored:
/// anyone can write it.
pub(crate) fn client_address(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    trusted: &[Cidr],
) -> Option<IpAddr> {
    let peer = peer.map(|ip| ip.to_canonical())?;
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    if trusted.is_empty() || !is_trusted(peer) {
        return Some(peer);
    }
    let mut client = peer;
    // From the right: the last header line first, its last entry first. A
    // value that is not text stops the walk like any other garbage.
    'walk: for value in headers.get_all(FORWARDED_FOR).iter().rev() {
        let Ok(value) = value.to_str() else {
            break;
        };
        for entry in value.rsplit(',') {
            if entry.trim().is_empty() {
                continue;
            }
            let Some(ip) = forwarded_ip(entry) else {
                break 'walk;
            };
            client = ip.to_canonical();
            if !is_trusted(client) {
                break 'walk;
            }
        }
    }
    Some(client)
}

/// The key a client is counted under when failures are limited: an IPv4
/// address (canonical) as it is, an IPv6 address by its /64, which one
/// client usually holds whole (counting single IPv6 addresses would let it
/// take a fresh address for every attempt).
pub(crate) fn rate_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(mask(u128::from(v6), 128, 64))),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs_parse_and_contain() {
        let net = cidr("10.1.2.3/8");
        assert_eq!(net.to_string(), "10.0.0.0/8");
        assert!(net.contains(ip("10.200.0.1")));
        assert!(net.contains(ip("::ffff:10.200.0.1")));
        assert!(!net.contains(ip("11.0.0.1")));
        assert!(!net.contains(ip("::1")));
        assert_eq!(cidr("192.0.2.7").to_string(), "192.0.2.7/32");
        assert!(cidr("192.0.2.7").contains(ip("192.0.2.7")));
        assert!(!cidr("192.0.2.7").contains(ip("192.0.2.8")));
        let v6 = cidr("2001:db8::/32");
        assert!(v6.contains(ip("2001:db8:1::5")));
        assert!(!v6.contains(ip("2001:db9::5")));
        assert!(!v6.contains(ip("10.0.0.1")));
        assert_eq!(cidr("::1").to_string(), "::1/128");
        assert!(cidr("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(!cidr("0.0.0.0/0").contains(ip("2001:db8::1")));
        assert!(cidr("::/0").contains(ip("2001:db8::1")));
        // IPv4-mapped networks are IPv4 networks.
        assert_eq!(cidr("::ffff:10.0.0.0/104").to_string(), "10.0.0.0/8");
        assert!(cidr("::ffff:10.0.0.0/104").contains(ip("10.9.9.9")));
        assert_eq!(cidr(" 172.16.0.0/12 ").to_string(), "172.16.0.0/12");
        for bad in [
            "",
            "/8",
            "10.0.0.0/",
            "10.0.0.0/33",
            "2001:db8::/129",
            "10.0.0.0/-1",
            "10.0.0.0/+8",
            "10.0.0.0/8/8",
            "10.0.0/8",
            "example.com/8",
            "10.0.0.0/99999999999999999999",
        ] {
            let e = bad.parse::<Cidr>().unwrap_err();
            assert!(e.to_string().contains("bad CIDR"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn rate_keys_group_ipv6_by_64() {
        assert_eq!(rate_key(ip("192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(rate_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(rate_key(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
        assert_eq!(
            rate_key(ip("2001:db8:1:2::1")),
            rate_key(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            rate_key(ip("2001:db8:1:2::1")),
            rate_key(ip("2001:db8:1:3::1"))
        );
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(FORWARDED_FOR, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn forwarded_for_only_from_trusted_peers() {
        let trusted = [cidr("10.0.0.0/8"), cidr("2001:db8::/32")];
        let client = |peer: &str, xff: &[&str]| {
            client_address(Some(ip(peer)), &headers(xff), &trusted).map(|i| i.to_string())
        };
        let some = |s: &str| Some(s.to_string());
        // Untrusted peer: the header is ignored.
        assert_eq!(
            client("203.0.113.5", &["198.51.100.7"]),
            some("203.0.113.5")
        );
        assert_eq!(
            client("::ffff:203.0.113.5", &["198.51.100.7"]),
            some("203.0.113.5")
        );
        // Trusted peer: the right-most untrusted address.
        assert_eq!(
            client("10.1.2.3", &["1.1.1.1, 198.51.100.7, 10.9.9.9"]),
            some("198.51.100.7")
        );
        assert_eq!(
            client("::ffff:10.1.2.3", &["::ffff:198.51.100.9"]),
            some("198.51.100.9")
        );
        assert_eq!(
            client("10.1.2.3", &["1.1.1.1", "198.51.100.7", "10.9.9.9"]),
            some("198.51.100.7")
        );
        assert_eq!(
            client("2001:db8::1", &["[2001:db9::7]:443, 198.51.100.7:8080"]),
            some("198.51.100.7")
        );
        assert_eq!(
            client("2001:db8::1", &["[2001:db9::7]:443"]),
            some("2001:db9::7")
        );
        // All trusted: the left-most.
        assert_eq!(
            client("10.1.2.3", &["10.0.0.1, 10.0.0.2"]),
            some("10.0.0.1")
        );
        // Garbage stops the walk at the last address vouched for.
        assert_eq!(
            client("10.1.2.3", &["1.1.1.1, nonsense, 10.0.0.2"]),
            some("10.0.0.2")
        );
        assert_eq!(client("10.1.2.3", &["nonsense"]), some("10.1.2.3"));
        // No header: the peer.
        assert_eq!(client("10.1.2.3", &[]), some("10.1.2.3"));
        // Nothing trusted: always the peer, canonical.
        assert_eq!(
            client_address(Some(ip("::ffff:10.1.2.3")), &headers(&["1.1.1.1"]), &[])
                .map(|i| i.to_string()),
            some("10.1.2.3")
        );
        assert_eq!(client_address(None, &headers(&["1.1.1.1"]), &trusted), None);
    }
}

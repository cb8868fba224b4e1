//! CloudFront policy statements: canned (resource + expiry) and custom
//! (wildcard resource, not-before, source IP), as the compact JSON that is
//! signed.

use std::fmt::Write;
use std::net::IpAddr;

use super::SignError;

/// A source-IP condition: an address and a prefix length (`203.0.113.0/24`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpCidr {
    /// The network address as given.
    pub addr: IpAddr,
    /// The prefix length.
    pub prefix: u8,
}

impl IpCidr {
    /// One address (`/32` or `/128`).
    pub fn single(addr: IpAddr) -> Self {
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        Self { addr, prefix }
    }

    /// Parses `a.b.c.d`, `a.b.c.d/n`, or an IPv6 address with an optional
    /// prefix.
    ///
    /// # Errors
    /// [`SignError::InvalidPolicy`] naming the text.
    pub fn parse(text: &str) -> Result<Self, SignError> {
        let bad = |why: &str| SignError::InvalidPolicy(format!("source IP {text:?}: {why}"));
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| bad("not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| bad("the prefix length must be a number up to 32 (IPv4) or 128"))?,
        };
        Ok(Self { addr, prefix })
    }

    /// Whether `ip` is inside this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        fn bits(ip: IpAddr) -> (u128, u8) {
            match ip {
                IpAddr::V4(v4) => (u32::from(v4) as u128, 32),
                IpAddr::V6(v6) => (u128::from(v6), 128),
            }
        }
        let ((net, width), (addr, width2)) = (bits(self.addr), bits(ip));
        if width != width2 {
            return false;
        }
        if self.prefix == 0 {
            return true;
        }
        let shift = u32::from(width - self.prefix);
        (net >> shift) == (addr >> shift)
    }
}

impl std::fmt::Display for IpCidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// What a signed URL or cookie allows.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Policy {
    /// The URL (or wildcard pattern) the policy covers.
    pub resource: String,
    /// Epoch seconds after which requests are refused.
    pub date_less_than: i64,
    /// Epoch seconds before which requests are refused (custom only).
    pub date_greater_than: Option<i64>,
    /// The clients allowed (custom only).
    pub source_ip: Option<IpCidr>,
}

impl Policy {
    /// A canned policy: `resource` until `expires`.
    pub fn canned(resource: impl Into<String>, expires: i64) -> Self {
        Self {
            resource: resource.into(),
            date_less_than: expires,
            date_greater_than: None,
            source_ip: None,
        }
    }

    /// Whether this policy can be sent as a canned one (`Expires=`): no
    /// condition but the expiry and no wildcard.
    pub fn is_canned(&self) -> bool {
        self.date_greater_than.is_none() && self.source_ip.is_none() && !self.resource.contains('*')
    }

    /// The compact JSON that is signed. Fields come in the order the
    /// CloudFront documentation gives for canned policies (`Resource`, then
    /// `Condition` with `DateLessThan`), followed by `IpAddress` and
    /// `DateGreaterThan` (the order botocore writes); strings are escaped as
    /// JSON with non-ASCII as `\uXXXX`, so a quote in a URL cannot inject.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(self.resource.len() + 160);
        out.push_str(r#"{"Statement":[{"Resource":"#);
        push_json_string(&mut out, &self.resource);
        let _ = write!(
            out,
            r#","Condition":{{"DateLessThan":{{"AWS:EpochTime":{}}}"#,
            self.date_less_than
        );
        if let Some(ip) = &self.source_ip {
            out.push_str(r#","IpAddress":{"AWS:SourceIp":"#);
            push_json_string(&mut out, &ip.to_string());
            out.push('}');
        }
        if let Some(nb) = self.date_greater_than {
            let _ = write!(out, r#","DateGreaterThan":{{"AWS:EpochTime":{nb}}}"#);
        }
        out.push_str("}}]}");
        out
    }
}

/// Appends `s` as a JSON string literal, escaping like Python's
/// `json.dumps(ensure_ascii=True)`.
fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canned_policy_is_compact_and_ordered() {
        let p = Policy::canned("https://d.example.net/a?b=1&c=2", 1_700_000_000);
        assert_eq!(
            p.to_json(),
            r#"{"Statement":[{"Resource":"https://d.example.net/a?b=1&c=2","Condition":{"DateLessThan":{"AWS:EpochTime":1700000000}}}]}"#
        );
        assert!(p.is_canned());
    }

    #[test]
    fn custom_policy_orders_conditions_like_botocore() {
        let p = Policy {
            resource: "https://d.example.net/blobs/*".into(),
            date_less_than: 20,
            date_greater_than: Some(10),
            source_ip: Some(IpCidr::parse("192.0.2.0/24").unwrap()),
        };
        assert_eq!(
            p.to_json(),
            r#"{"Statement":[{"Resource":"https://d.example.net/blobs/*","Condition":{"DateLessThan":{"AWS:EpochTime":20},"IpAddress":{"AWS:SourceIp":"192.0.2.0/24"},"DateGreaterThan":{"AWS:EpochTime":10}}}]}"#
        );
        assert!(!p.is_canned());
    }

    #[test]
    fn quotes_and_non_ascii_cannot_inject() {
        let p = Policy::canned("https://d/\"},{\"Resource\":\"*\u{e9}\u{1f600}", 1);
        let json = p.to_json();
        assert!(
            json.contains(r#"d/\"},{\"Resource\":\"*\u00e9\ud83d\ude00""#),
            "{json}"
        );
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed["Statement"].as_array().unwrap().len(), 1);
        assert_eq!(parsed["Statement"][0]["Resource"], p.resource.as_str());
    }

    #[test]
    fn cidr_parsing_and_matching() {
        let net = IpCidr::parse("10.1.0.0/16").unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(!net.contains("::1".parse().unwrap()));
        assert_eq!(
            IpCidr::parse("10.1.2.3").unwrap().to_string(),
            "10.1.2.3/32"
        );
        assert!(IpCidr::parse("2001:db8::/32")
            .unwrap()
            .contains("2001:db8::9".parse().unwrap()));
        assert!(IpCidr::parse("10.0.0.0/33").is_err());
        assert!(IpCidr::parse("nope").is_err());
        assert!(IpCidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
    }
}

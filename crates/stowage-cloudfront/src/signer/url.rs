//! The URL text that gets signed: normalised once (percent-encoding what a
//! URL cannot hold, never re-encoding what is already encoded), then never
//! touched again, and CloudFront's URL-safe base64.

use base64::Engine;

use super::SignError;

/// CloudFront's base64: standard base64 with `+`→`-`, `=`→`_`, `/`→`~`.
pub fn cloudfront_base64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD
        .encode(data)
        .chars()
        .map(|c| match c {
            '+' => '-',
            '=' => '_',
            '/' => '~',
            c => c,
        })
        .collect()
}

/// Decodes CloudFront's base64 (the inverse of [`cloudfront_base64`]).
///
/// # Errors
/// When the text is not CloudFront base64.
pub fn decode_cloudfront_base64(text: &str) -> Result<Vec<u8>, SignError> {
    let standard: String = text
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '=',
            '~' => '/',
            c => c,
        })
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(standard)
        .map_err(|e| SignError::InvalidUrl(format!("not CloudFront base64: {e}")))
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn push_encoded(out: &mut String, byte: u8) {
    out.push('%');
    out.push(HEX[(byte >> 4) as usize] as char);
    out.push(HEX[(byte & 15) as usize] as char);
}

/// Percent-encodes one path segment (or key) for a URL path: everything but
/// RFC 3986 unreserved characters and `/` is encoded, so `+ = @ , %` and
/// non-ASCII reach the origin as the same key.
pub fn encode_key_path(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 8);
    for &b in key.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            push_encoded(&mut out, b);
        }
    }
    out
}

/// Percent-encodes a query parameter name or value (form-style reserved
/// characters included, so `&`, `=` and `+` in a filename stay data).
pub fn encode_query_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            push_encoded(&mut out, b);
        }
    }
    out
}

/// Whether `b` may stand as it is in a URL path or query (RFC 3986 `pchar`
/// plus `/` and `?`); `%` is handled separately.
fn allowed_in_url(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
                | b'/'
                | b'?'
        )
}

/// Normalises a URL given by a user: checks it is absolute `http(s)` with a
/// host and no fragment, then percent-encodes what a URL cannot hold
/// (spaces, non-ASCII, quotes, `%` not starting an escape) in the path and
/// query. What is already encoded stays as it is, so normalising twice
/// changes nothing and nothing is encoded twice.
///
/// # Errors
/// [`SignError::InvalidUrl`] naming what is wrong.
pub fn normalize_url(url: &str) -> Result<String, SignError> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| SignError::InvalidUrl(format!("{url:?} is not an absolute URL")))?;
    if !scheme.eq_ignore_ascii_case("https") && !scheme.eq_ignore_ascii_case("http") {
        return Err(SignError::InvalidUrl(format!(
            "{url:?}: the scheme must be https or http"
        )));
    }
    if url.contains('#') {
        return Err(SignError::InvalidUrl(format!(
            "{url:?}: a URL to sign cannot have a #fragment"
        )));
    }
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (host, tail) = rest.split_at(split);
    if host.is_empty() || host.contains(|c: char| c.is_whitespace() || !c.is_ascii()) {
        return Err(SignError::InvalidUrl(format!(
            "{url:?}: the host must be a non-empty ASCII name (use its punycode form)"
        )));
    }
    for reserved in [
        "Expires=",
        "Policy=",
        "Signature=",
        "Key-Pair-Id=",
        "Hash-Algorithm=",
    ] {
        let query = tail.split_once('?').map(|(_, q)| q).unwrap_or("");
        if query.split('&').any(|p| p.starts_with(reserved)) {
            return Err(SignError::InvalidUrl(format!(
                "{url:?} already carries the CloudFront parameter {}",
                reserved.trim_end_matches('=')
            )));
        }
    }
    let mut out = String::with_capacity(url.len() + 16);
    out.push_str(&scheme.to_ascii_lowercase());
    out.push_str("://");
    out.push_str(host);
    if !tail.starts_with('/') {
        out.push('/');
    }
    let bytes = tail.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let escape = bytes.len() > i + 2
                && bytes[i + 1].is_ascii_hexdigit()
                && bytes[i + 2].is_ascii_hexdigit();
            if escape {
                out.push_str(&tail[i..i + 3]);
                i += 3;
                continue;
            }
            push_encoded(&mut out, b);
        } else if allowed_in_url(b) {
            out.push(b as char);
        } else {
            push_encoded(&mut out, b);
        }
        i += 1;
    }
    Ok(out)
}

/// Appends signing parameters to a URL with `?` or `&`.
pub(crate) fn append_params(url: &str, params: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(url.len() + 512);
    out.push_str(url);
    let mut sep = if url.contains('?') { '&' } else { '?' };
    for (name, value) in params {
        out.push(sep);
        out.push_str(name);
        out.push('=');
        out.push_str(value);
        sep = '&';
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_uses_cloudfront_alphabet() {
        // 0xfb 0xff encodes to "+/8=" in standard base64.
        assert_eq!(cloudfront_base64(&[0xfb, 0xff]), "-~8_");
        assert_eq!(decode_cloudfront_base64("-~8_").unwrap(), vec![0xfb, 0xff]);
    }

    #[test]
    fn normalize_encodes_once() {
        let raw = "https://d.example.net/a b/é/100%/x%2Fy?q=1 2&name=a,b@c";
        let once = normalize_url(raw).unwrap();
        assert_eq!(
            once,
            "https://d.example.net/a%20b/%C3%A9/100%25/x%2Fy?q=1%202&name=a,b@c"
        );
        assert_eq!(normalize_url(&once).unwrap(), once, "idempotent");
    }

    #[test]
    fn normalize_rejects_what_cannot_be_signed() {
        for bad in [
            "d.example.net/x",
            "ftp://d.example.net/x",
            "https:///x",
            "https://d.example.net/x#frag",
            "https://d.example.net/x?Expires=1",
        ] {
            assert!(normalize_url(bad).is_err(), "{bad}");
        }
        assert_eq!(
            normalize_url("https://d.example.net").unwrap(),
            "https://d.example.net/"
        );
    }

    #[test]
    fn key_paths_encode_reserved_characters() {
        assert_eq!(
            encode_key_path("root/a+b=c@d,e é~f"),
            "root/a%2Bb%3Dc%40d%2Ce%20%C3%A9~f"
        );
        assert_eq!(
            encode_query_component("attachment; filename=\"a&b.tar\""),
            "attachment%3B%20filename%3D%22a%26b.tar%22"
        );
    }
}

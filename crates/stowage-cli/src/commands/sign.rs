//! `stowage sign`: CloudFront signed URLs and cookies from the command line,
//! with a key given as options or the key of a CloudFront location.

use std::time::{SystemTime, UNIX_EPOCH};

use stowage::cloudfront::signer::{
    check_key_for_mode, mode_of_id, normalize_url, CloudFrontSigner, HashAlgorithm, IpCidr, Policy,
    PrivateKey, SignError,
};
use stowage::DriverConfig;

use crate::cli::{SignArgs, SignHash, SignPolicy};
use crate::context::Context;
use crate::failure::Failure;

fn sign_failure(e: SignError) -> Failure {
    match e {
        SignError::Signing(_) => Failure::failed(e.to_string()),
        _ => Failure::usage(e.to_string()),
    }
}

/// Prints the signed URL, or the cookies one per line. With `-` as the URL,
/// signs every line of standard input (see `run_batch`).
pub(crate) fn run(ctx: &Context, args: &SignArgs) -> Result<(), Failure> {
    if args.url == "-" && args.cookies {
        return Err(Failure::usage(
            "--cookies signs one URL at a time; give the URL instead of -",
        ));
    }
    let signer = signer(ctx, args)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    let expires = match (args.expires, args.expires_in) {
        (Some(at), _) => at,
        (None, Some(secs)) => now + secs as i64,
        (None, None) => now + 3600,
    };
    if args.url == "-" {
        // Options wrong for every line are one usage error, not one per line.
        args.ip
            .as_deref()
            .map(IpCidr::parse)
            .transpose()
            .map_err(sign_failure)?;
        return run_batch(&signer, args, expires);
    }
    for line in sign_one(&signer, args, &args.url, expires)? {
        println!("{line}");
    }
    Ok(())
}

/// `stowage sign ... -`: one URL per line of standard input, one signed URL
/// per line of output, in order, with the key loaded once and the same
/// options and expiry for every URL. Empty lines are skipped. A line that
/// cannot be signed is reported on standard error with its line number and
/// the others are still signed; the exit code is then 2 if any line was a
/// bad URL or policy (as for a single URL), else 1 if signing itself failed.
fn run_batch(signer: &CloudFrontSigner, args: &SignArgs, expires: i64) -> Result<(), Failure> {
    use std::io::{BufRead, Write};

    let stdin = std::io::stdin();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let write_failed = |e: std::io::Error| Failure::failed(format!("cannot write: {e}"));
    let (mut signed, mut failed, mut worst) = (0usize, 0usize, None::<u8>);
    for (index, line) in stdin.lock().split(b'\n').enumerate() {
        let line = line.map_err(|e| Failure::failed(format!("cannot read standard input: {e}")))?;
        let number = index + 1;
        let result = match std::str::from_utf8(&line) {
            Ok(text) if text.trim().is_empty() => continue,
            Ok(text) => sign_one(signer, args, text.trim(), expires),
            Err(_) => Err(Failure::usage("not UTF-8 text")),
        };
        match result {
            Ok(lines) => {
                for l in lines {
                    writeln!(out, "{l}").map_err(write_failed)?;
                }
                signed += 1;
            }
            Err(f) => {
                // Keep what was signed so far in order with the message.
                out.flush().map_err(write_failed)?;
                eprintln!("stowage: line {number}: {}", f.message);
                failed += 1;
                worst = worst.max(Some(f.code));
            }
        }
    }
    out.flush().map_err(write_failed)?;
    match worst {
        None => Ok(()),
        Some(code) => Err(Failure {
            code,
            message: format!(
                "{failed} of {} lines could not be signed (each is named above)",
                signed + failed
            ),
        }),
    }
}

/// The output lines for one URL: the signed URL, or the cookies.
fn sign_one(
    signer: &CloudFrontSigner,
    args: &SignArgs,
    raw_url: &str,
    expires: i64,
) -> Result<Vec<String>, Failure> {
    let url = normalize_url(raw_url).map_err(sign_failure)?;
    let source_ip = args
        .ip
        .as_deref()
        .map(IpCidr::parse)
        .transpose()
        .map_err(sign_failure)?;
    let mut policy = Policy::canned(url.clone(), expires);
    policy.date_greater_than = args.not_before;
    policy.source_ip = source_ip;
    let canned = match args.policy {
        Some(SignPolicy::Canned) if !policy.is_canned() => {
            return Err(Failure::usage(
                "--policy canned takes a URL without * and only an expiry; --not-before, --ip \
                 and wildcards need --policy custom",
            ))
        }
        Some(SignPolicy::Canned) => true,
        Some(SignPolicy::Custom) => false,
        None => policy.is_canned(),
    };
    if args.cookies {
        Ok(signer
            .signed_cookies(&policy, canned)
            .map_err(sign_failure)?
            .into_iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect())
    } else if canned {
        Ok(vec![signer
            .signed_url_canned(&url, expires)
            .map_err(sign_failure)?])
    } else {
        Ok(vec![signer
            .signed_url_custom(&url, &policy)
            .map_err(sign_failure)?])
    }
}

fn signer(ctx: &Context, args: &SignArgs) -> Result<CloudFrontSigner, Failure> {
    let hash = args.hash.map(|h| match h {
        SignHash::Sha1 => HashAlgorithm::Sha1,
        SignHash::Sha256 => HashAlgorithm::Sha256,
    });
    if let (Some(id), Some(file)) = (&args.key_id, &args.private_key) {
        let key = PrivateKey::from_pem_file(file).map_err(sign_failure)?;
        // The id's shape says which kind of signer it is: hold the key to
        // CloudFront's rules for that kind.
        check_key_for_mode(&key, mode_of_id(id), &file.display().to_string())
            .map_err(sign_failure)?;
        return Ok(CloudFrontSigner::new(id, key).with_hash(hash.unwrap_or_default()));
    }
    let location = ctx.selected()?;
    let DriverConfig::CloudFront(c) = &location.driver else {
        return Err(Failure::usage(format!(
            "give --key-id and --private-key, or select a CloudFrontedS3Storage location with \
             --config/--location (location {} is {})",
            location.name,
            location.driver.driver_name()
        )));
    };
    let c = &c.cloudfront;
    let entry = &c.keys[0];
    let key = PrivateKey::from_pem_file(&entry.private_key_file).map_err(sign_failure)?;
    Ok(CloudFrontSigner::new(&entry.key_id, key).with_hash(hash.unwrap_or(c.hash)))
}

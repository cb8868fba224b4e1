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

/// Prints the signed URL, or the cookies one per line.
pub(crate) fn run(ctx: &Context, args: &SignArgs) -> Result<(), Failure> {
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
    let url = normalize_url(&args.url).map_err(sign_failure)?;
    let source_ip = args
        .ip
        .as_deref()
        .map(IpCidr::parse)
        .transpose()
        .map_err(sign_failure)?;
    let policy = Policy {
        resource: url.clone(),
        date_less_than: expires,
        date_greater_than: args.not_before,
        source_ip,
    };
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
        for (name, value) in signer
            .signed_cookies(&policy, canned)
            .map_err(sign_failure)?
        {
            println!("{name}={value}");
        }
    } else if canned {
        println!(
            "{}",
            signer
                .signed_url_canned(&url, expires)
                .map_err(sign_failure)?
        );
    } else {
        println!(
            "{}",
            signer
                .signed_url_custom(&url, &policy)
                .map_err(sign_failure)?
        );
    }
    Ok(())
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
    let entry = &c.keys[0];
    let key = PrivateKey::from_pem_file(&entry.private_key_file).map_err(sign_failure)?;
    Ok(CloudFrontSigner::new(&entry.key_id, key).with_hash(hash.unwrap_or(c.hash)))
}

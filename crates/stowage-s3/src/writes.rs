//! Writes: one PutObject for small objects, else the concurrent,
//! bounded-memory multipart writer of core fed by [`crate::multipart`]; the
//! write settings (SSE, storage class) and part checksums every write uses.

use aws_sdk_s3::primitives::ByteStream as SdkBody;
use aws_sdk_s3::types::{ServerSideEncryption as SdkSse, StorageClass};
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use stowage_core::multipart::{self, MultipartOptions};
use stowage_core::{Error, ObjectMeta, PutOptions, Result, StoragePath, WriteStream};

use crate::error::{from_sdk, DRIVER};
use crate::{S3Storage, ServerSideEncryption};

/// Bodies at least this large have their MD5 computed on a blocking
/// thread, not on the async workers.
const MD5_INLINE_LIMIT: usize = 256 * 1024;

/// The Content-MD5 header value of `data`: the base64 of its MD5 digest.
/// Large bodies are hashed on a blocking thread (md-5 with its assembly on
/// x86 and x86-64, portable code elsewhere: about 500 MB/s on the test
/// machine, 23% less CPU than the portable code).
pub(crate) async fn content_md5(data: Bytes) -> String {
    fn digest(data: &[u8]) -> String {
        use base64::Engine as _;
        use md5::Digest as _;
        base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(data))
    }
    if data.len() < MD5_INLINE_LIMIT {
        return digest(&data);
    }
    let copy = data.clone();
    match tokio::task::spawn_blocking(move || digest(&copy)).await {
        Ok(md5) => md5,
        // The blocking pool is shutting down: hash here instead.
        Err(_) => digest(&data),
    }
}

/// The Content-MD5 a body carries under `s3_part_checksum` (`md5`), or
/// none. Computed once per body and sent with every attempt.
pub(crate) async fn body_md5(config: &crate::S3Config, data: &Bytes) -> Option<String> {
    if config.sends_content_md5() {
        Some(content_md5(data.clone()).await)
    } else {
        None
    }
}

/// The `x-amz-checksum-crc32c` value of `data`: the base64 of its CRC32C,
/// big-endian (computed with SIMD, many GB/s: far cheaper than MD5).
pub(crate) fn crc32c(data: &[u8]) -> String {
    use base64::Engine as _;
    let crc = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, data) as u32;
    base64::engine::general_purpose::STANDARD.encode(crc.to_be_bytes())
}

/// The lowercase hex MD5 of `data`, hashed on a blocking thread for large
/// bodies: what a server that does not encrypt with KMS answers as the
/// ETag of a part (or single PUT) it received whole.
pub(crate) async fn md5_hex(data: Bytes) -> String {
    fn digest(data: &[u8]) -> String {
        use md5::Digest as _;
        md5::Md5::digest(data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
    if data.len() < MD5_INLINE_LIMIT {
        return digest(&data);
    }
    let copy = data.clone();
    match tokio::task::spawn_blocking(move || digest(&copy)).await {
        Ok(md5) => md5,
        Err(_) => digest(&data),
    }
}

/// Sends a request that carries a body (PutObject, UploadPart) of `$size`
/// bytes the way `s3_part_checksum` says: the payload's SHA-256 signed
/// (`sha256`) or the payload unsigned (`md5`, whose header the caller set,
/// and `none`); with the body's attempt timeout
/// ([`crate::S3Config::body_attempt_timeout`]). The server refuses damaged
/// bytes, and the retry policy sends them again from memory.
macro_rules! send_body {
    ($storage:expr, $request:expr, $size:expr) => {{
        let op = $request
            .customize()
            .config_override($crate::builder::body_attempt_override(
                &$storage.config,
                $size,
            ));
        if $storage.config.signs_payload() {
            op.send()
        } else {
            op.disable_payload_signing().send()
        }
    }};
}
pub(crate) use send_body;

macro_rules! write_settings {
    ($self:expr, $req:expr) => {{
        let c = &$self.config;
        let req = match &c.sse {
            ServerSideEncryption::None => $req,
            ServerSideEncryption::Aes256 => $req.server_side_encryption(SdkSse::Aes256),
            ServerSideEncryption::Kms { key_id } => $req
                .server_side_encryption(SdkSse::AwsKms)
                .set_ssekms_key_id(key_id.clone()),
        };
        req.set_storage_class(c.storage_class.as_deref().map(StorageClass::from))
    }};
}

impl S3Storage {
    pub(crate) fn with_write_settings_put(
        &self,
        req: aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder,
    ) -> aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder {
        write_settings!(self, req)
    }

    pub(crate) fn with_write_settings_create(
        &self,
        req: aws_sdk_s3::operation::create_multipart_upload::builders::CreateMultipartUploadFluentBuilder,
    ) -> aws_sdk_s3::operation::create_multipart_upload::builders::CreateMultipartUploadFluentBuilder
    {
        write_settings!(self, req)
    }

    pub(crate) fn with_write_settings_copy(
        &self,
        req: aws_sdk_s3::operation::copy_object::builders::CopyObjectFluentBuilder,
    ) -> aws_sdk_s3::operation::copy_object::builders::CopyObjectFluentBuilder {
        write_settings!(self, req)
    }

    /// One PUT when the stream fits in one part, else a multipart upload.
    pub(crate) async fn write_stream(
        &self,
        path: &StoragePath,
        mut data: WriteStream<'_>,
        options: PutOptions,
    ) -> Result<ObjectMeta> {
        let part_size = multipart::base_part_size(
            self.config.part_size,
            options.size_hint,
            &crate::limits::S3_PART_LIMITS,
        );
        // The first part fills outside the driver's part budget (a writer
        // that stalls holds no shared permit); it takes one when it is
        // complete and about to be sent.
        let mut first = BytesMut::with_capacity(part_size as usize);
        let mut ended = false;
        let mut rest = None;
        while first.len() < part_size as usize {
            match data.try_next().await? {
                Some(mut chunk) => {
                    let room = part_size as usize - first.len();
                    if chunk.len() > room {
                        rest = Some(chunk.split_off(room));
                    }
                    first.extend_from_slice(&chunk);
                }
                None => {
                    ended = true;
                    break;
                }
            }
        }
        let permit = self
            .part_budget
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Error::backend(DRIVER, false, "part budget", e))?;
        if ended {
            let result = self.put_small(path, first.freeze(), options).await;
            drop(permit);
            return result;
        }
        if let Some(rest) = rest {
            data = futures::stream::once(async move { Ok(rest) })
                .chain(data)
                .boxed();
        }
        let key = self.object_key(path);
        let sink = self
            .start_multipart(&key, path, options.content_type.clone())
            .await?;
        let mut options_mp = MultipartOptions::new(
            part_size,
            crate::limits::S3_PART_LIMITS,
            self.config.upload_concurrency,
        );
        options_mp.budget = Some(self.part_budget.clone());
        options_mp.initial_permit = Some(permit);
        let meta = multipart::write_multipart(
            sink,
            first.freeze(),
            data,
            options_mp,
            options.expected_digest,
        )
        .await?;
        Ok(meta.with_content_type(options.content_type))
    }

    pub(crate) async fn put_small(
        &self,
        path: &StoragePath,
        data: Bytes,
        options: PutOptions,
    ) -> Result<ObjectMeta> {
        if let Some(expected) = options.expected_digest {
            let actual = stowage_core::Sha256Digest::of(&data);
            if actual != expected {
                return Err(Error::DigestMismatch {
                    expected: expected.to_string(),
                    actual: actual.to_string(),
                });
            }
        }
        let key = self.object_key(path);
        let size = data.len() as u64;
        // `auto`: a CRC32C, which servers that check flexible checksums
        // verify and echo, and a Content-MD5 until one has been echoed (a
        // single PUT is visible at once: it must be checked on arrival).
        let auto = self.config.checks_part_etags();
        let crc = auto.then(|| crc32c(&data));
        let verified = self
            .crc32c_verified
            .load(std::sync::atomic::Ordering::Relaxed);
        let md5 = if auto && !verified {
            Some(content_md5(data.clone()).await)
        } else {
            body_md5(&self.config, &data).await
        };
        let out = self
            .retrying("PutObject", &key, || {
                let request = self
                    .client
                    .put_object()
                    .bucket(self.bucket())
                    .key(&key)
                    .content_length(size as i64)
                    .set_content_md5(md5.clone())
                    .set_checksum_crc32_c(crc.clone())
                    .body(SdkBody::from(data.clone()))
                    .set_content_type(options.content_type.clone());
                send_body!(self, self.with_write_settings_put(request), size)
            })
            .await;
        if let (Some(sent), Ok(out)) = (&crc, &out) {
            if out.checksum_crc32_c() == Some(sent.as_str()) && !verified {
                self.crc32c_verified
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                tracing::debug!(
                    bucket = %self.config.bucket,
                    "the server verifies CRC32C: single PUTs carry no Content-MD5 from now on"
                );
            }
        }
        let out = match out {
            Ok(out) => out,
            Err(e) => {
                let lost = crate::retry::transient_cause(&e).is_some();
                let err = from_sdk(e, self.op("PutObject", &key), path.as_str());
                // The last attempt's answer may have been lost after the
                // server stored the bytes: the object's ETag (the MD5 of a
                // single PUT's bytes) tells whether they are these bytes.
                if lost {
                    if let Some(meta) = self.stored_after_all(path, &data).await {
                        return Ok(meta.with_content_type(options.content_type));
                    }
                }
                return Err(err);
            }
        };
        Ok(ObjectMeta::new(path.clone(), size)
            .with_etag(out.e_tag().map(str::to_string))
            .with_content_type(options.content_type))
    }

    /// Whether the object at `path` holds exactly `data`, put by an
    /// attempt whose answer was lost: its size and its ETag, the MD5 of
    /// the bytes (what S3 gives a single PUT without SSE-KMS or SSE-C).
    async fn stored_after_all(&self, path: &StoragePath, data: &Bytes) -> Option<ObjectMeta> {
        let meta = self.head_object(path).await.ok()?;
        let etag = meta.etag.as_deref()?.trim_matches('"').to_string();
        if meta.size != data.len() as u64 {
            return None;
        }
        let body = data.clone();
        let md5 = tokio::task::spawn_blocking(move || {
            use md5::Digest as _;
            let digest = md5::Md5::digest(&body);
            digest
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        })
        .await
        .ok()?;
        if md5 != etag {
            return None;
        }
        self.retries
            .counters
            .completions_reconciled
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(
            key = %self.object_key(path),
            size = meta.size,
            "PutObject's answers were lost; the object at the key has these bytes' MD5: an \
             earlier attempt stored them"
        );
        Some(meta)
    }
}

//! Writes: one Put Blob for objects up to one block, else the bounded,
//! concurrent multipart writer of core fed by a [`BlockSink`] (Put Block
//! for each block, then one Put Block List); deletes; and what settles a
//! write whose answer was lost or whose commit was refused.
//!
//! Nothing of a block write is visible before its Put Block List: a write
//! that fails or is dropped leaves uncommitted blocks only, which reads and
//! listings never show and which Azure discards at the blob's next commit
//! (or Put Blob), else after a week. There is no request that removes them
//! without removing the blob itself (possibly an older, committed version),
//! so aborting sends nothing.
//!
//! Block ids are a write's own (a random write id and the block number),
//! so two writes of one blob never commit each other's blocks. When one of
//! them commits first, Azure discards the other's staged blocks and its Put
//! Block List fails with `InvalidBlockList`: that write fails with a
//! retryable error, unless the blob now holds exactly its bytes (checked by
//! digest when the caller gave one: two pushes of one layer).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use reqwest::Method;
use stowage_core::multipart::{self, CompletedPart, MultipartOptions, MultipartSink};
use stowage_core::{
    Error, GetOptions, ObjectMeta, PutOptions, Result, Sha256Digest, StoragePath, WriteStream,
};

use crate::client::{content_length, date_header, header, Call};
use crate::error::{into_error, DRIVER};
use crate::limits::AZURE_BLOCK_LIMITS;
use crate::retry::transient_cause;
use crate::{xml, AzureStorage};

/// Bodies at least this large have their MD5 computed on a blocking
/// thread, not on the async workers.
const MD5_INLINE_LIMIT: usize = 256 * 1024;

/// Marks the error of a write whose staged blocks another write's commit
/// discarded (found in the error's source chain).
#[derive(Debug)]
pub(crate) struct Superseded;

impl std::fmt::Display for Superseded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "another write of the blob committed first and Azure discarded this write's staged \
             blocks (InvalidBlockList)",
        )
    }
}

impl std::error::Error for Superseded {}

/// Whether `error` is a write superseded by another write's commit.
pub(crate) fn is_superseded(error: &Error) -> bool {
    stowage_core::find_in_chain::<Superseded>(error).is_some()
}

/// A fresh write id: 32 hex digits.
pub(crate) fn new_write_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The id of block `number` of write `write`: the base64 of
/// `<write id>-<number, six digits>`, so every id of a blob has the same
/// length (Azure requires it of a blob's uncommitted blocks) and each
/// write's ids are its own.
pub(crate) fn block_id(write: &str, number: u32) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{write}-{number:06}"))
}

/// The body of Put Block List: the blocks in order, each as `Latest` (the
/// uncommitted block of that id, else the committed one, so a retried
/// commit whose first answer was lost commits the same blocks again).
pub(crate) fn block_list_xml(ids: &[String]) -> Bytes {
    let mut out = String::with_capacity(64 + ids.len() * 70);
    out.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
    for id in ids {
        // Base64 needs no XML escaping.
        out.push_str("<Latest>");
        out.push_str(id);
        out.push_str("</Latest>");
    }
    out.push_str("</BlockList>");
    Bytes::from(out)
}

/// The base64 MD5 of `data` (a Content-MD5 value); large bodies are hashed
/// on a blocking thread.
async fn content_md5(data: &Bytes) -> String {
    fn digest(data: &[u8]) -> String {
        use md5::Digest as _;
        base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(data))
    }
    if data.len() < MD5_INLINE_LIMIT {
        return digest(data);
    }
    let copy = data.clone();
    match tokio::task::spawn_blocking(move || digest(&copy)).await {
        Ok(md5) => md5,
        Err(_) => digest(data),
    }
}

impl AzureStorage {
    /// The Content-MD5 a body carries (`azure_content_md5`), or none.
    async fn body_md5(&self, data: &Bytes) -> Option<String> {
        if self.config.uses_content_md5() {
            Some(content_md5(data).await)
        } else {
            None
        }
    }

    /// `put`: one Put Blob up to a block, else blocks.
    pub(crate) async fn put_bytes(
        &self,
        path: &StoragePath,
        data: Bytes,
        options: PutOptions,
    ) -> Result<ObjectMeta> {
        if data.len() as u64 <= self.config.block_size {
            return self.put_blob(path, data, options).await;
        }
        let size = data.len() as u64;
        let stream = futures::stream::once(async move { Ok(data) }).boxed();
        self.write_stream(path, stream, options.with_size_hint(size))
            .await
    }

    /// One Put Blob when the stream fits in one block, else blocks.
    pub(crate) async fn write_stream(
        &self,
        path: &StoragePath,
        mut data: WriteStream<'_>,
        options: PutOptions,
    ) -> Result<ObjectMeta> {
        let block_size = multipart::base_part_size(
            self.config.block_size,
            options.size_hint,
            &AZURE_BLOCK_LIMITS,
        );
        // The first block fills outside the driver's block budget (a writer
        // that stalls holds no shared permit); it takes one when complete.
        let mut first = BytesMut::with_capacity(block_size as usize);
        let mut ended = false;
        let mut rest = None;
        while first.len() < block_size as usize {
            match data.try_next().await? {
                Some(mut chunk) => {
                    let room = block_size as usize - first.len();
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
            .block_budget
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Error::backend(DRIVER, false, "block budget", e))?;
        if ended {
            let result = self.put_blob(path, first.freeze(), options).await;
            drop(permit);
            return result;
        }
        if let Some(rest) = rest {
            data = futures::stream::once(async move { Ok(rest) })
                .chain(data)
                .boxed();
        }
        let sink = Arc::new(BlockSink {
            storage: self.clone(),
            path: path.clone(),
            name: self.blob_name(path),
            write: new_write_id(),
            content_type: options.content_type.clone(),
        });
        let mut blocks = MultipartOptions::new(
            block_size,
            AZURE_BLOCK_LIMITS,
            self.config.upload_concurrency,
        );
        blocks.budget = Some(self.block_budget.clone());
        blocks.initial_permit = Some(permit);
        let expected = options.expected_digest;
        match multipart::write_multipart(sink, first.freeze(), data, blocks, expected).await {
            Ok(meta) => Ok(meta),
            Err(e) => match expected {
                // Another write committed first: success when it stored
                // exactly these bytes (two pushes of one layer).
                Some(digest) if is_superseded(&e) => match self.holds_digest(path, digest).await {
                    Some(meta) => {
                        self.reconciled(path, "the blob holds the expected digest");
                        Ok(meta)
                    }
                    None => Err(e),
                },
                _ => Err(e),
            },
        }
    }

    /// Put Blob of bytes in memory, digest-checked first.
    pub(crate) async fn put_blob(
        &self,
        path: &StoragePath,
        data: Bytes,
        options: PutOptions,
    ) -> Result<ObjectMeta> {
        if let Some(expected) = options.expected_digest {
            let actual = Sha256Digest::of(&data);
            if actual != expected {
                return Err(Error::DigestMismatch {
                    expected: expected.to_string(),
                    actual: actual.to_string(),
                });
            }
        }
        let name = self.blob_name(path);
        let size = data.len() as u64;
        let md5 = self.body_md5(&data).await;
        let call = Call::blob(Method::PUT, &name)
            .header("x-ms-blob-type", "BlockBlob")
            .header_opt("x-ms-blob-content-type", options.content_type.clone())
            .header_opt("content-md5", md5)
            .body(data.clone());
        match self.send("PutBlob", &call).await {
            Ok(response) => {
                let headers = response.headers();
                Ok(ObjectMeta::new(path.clone(), size)
                    .with_etag(header(headers, "etag"))
                    .with_last_modified(date_header(headers, "last-modified"))
                    .with_content_type(options.content_type))
            }
            Err(f) => {
                let lost = transient_cause(&f).is_some();
                let err = into_error(f, self.op("PutBlob", &name), path.as_str());
                // The last attempt's answer may have been lost after the
                // service stored the bytes: the blob's Content-MD5 (which
                // Put Blob records) tells whether they are these bytes.
                if lost {
                    if let Some(meta) = self.stored_after_all(path, &data).await {
                        return Ok(meta);
                    }
                }
                Err(err)
            }
        }
    }

    /// Whether the blob at `path` holds exactly `data`, put by an attempt
    /// whose answer was lost: its size and its Content-MD5.
    async fn stored_after_all(&self, path: &StoragePath, data: &Bytes) -> Option<ObjectMeta> {
        let name = self.blob_name(path);
        let response = self
            .send("GetBlobProperties", &Call::blob(Method::HEAD, &name))
            .await
            .ok()?;
        let headers = response.headers();
        let stored = header(headers, "content-md5")?;
        if content_length(headers)? != data.len() as u64 || stored != content_md5(data).await {
            return None;
        }
        let meta = crate::client::meta_from(path, headers, data.len() as u64);
        self.reconciled(path, "the blob has these bytes' MD5");
        Some(meta)
    }

    /// Counts and logs a write found done after its answer was lost or its
    /// commit refused.
    fn reconciled(&self, path: &StoragePath, why: &str) {
        self.retries
            .counters
            .commits_reconciled
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            blob = %self.blob_name(path),
            why,
            "an Azure write's answer was lost or its commit refused, and the blob holds its \
             bytes: the write succeeded"
        );
    }

    /// Put Block.
    pub(crate) async fn put_block(
        &self,
        path: &StoragePath,
        name: &str,
        id: &str,
        data: Bytes,
    ) -> Result<()> {
        let md5 = self.body_md5(&data).await;
        let call = Call::blob(Method::PUT, name)
            .query("comp", "block")
            .query("blockid", id)
            .header_opt("content-md5", md5)
            .body(data);
        self.send("PutBlock", &call)
            .await
            .map_err(|f| into_error(f, self.op("PutBlock", name), path.as_str()))?;
        Ok(())
    }

    /// Put Block List of `ids` (a blob of `size` bytes). A commit whose
    /// answer was lost and that another attempt finds refused, or one Azure
    /// refuses with `InvalidBlockList`, is checked against the committed
    /// block list: when it is exactly `ids`, the commit happened.
    pub(crate) async fn commit_blocks(
        &self,
        path: &StoragePath,
        name: &str,
        ids: &[String],
        size: u64,
        content_type: Option<String>,
    ) -> Result<ObjectMeta> {
        let call = Call::blob(Method::PUT, name)
            .query("comp", "blocklist")
            .header_opt("x-ms-blob-content-type", content_type.clone())
            .body(block_list_xml(ids));
        let failure = match self.send("PutBlockList", &call).await {
            Ok(response) => {
                let headers = response.headers();
                return Ok(ObjectMeta::new(path.clone(), size)
                    .with_etag(header(headers, "etag"))
                    .with_last_modified(date_header(headers, "last-modified"))
                    .with_content_type(content_type));
            }
            Err(f) => f,
        };
        let invalid = failure.has_code("InvalidBlockList");
        let lost = transient_cause(&failure).is_some();
        let op = self.op("PutBlockList", name);
        let err = into_error(failure, op, path.as_str());
        if (invalid || lost) && self.committed_list_is(name, ids).await {
            self.reconciled(path, "the committed block list is this write's");
            return self.blob_properties(path).await;
        }
        if !invalid {
            return Err(err);
        }
        self.retries
            .counters
            .writes_superseded
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            blob = %name,
            "another write of this blob committed first; this write's staged blocks were \
             discarded and nothing of it is visible"
        );
        Err(Error::Backend {
            driver: DRIVER,
            retryable: true,
            message: format!(
                "{}: another write of this blob committed first and Azure discarded this \
                 write's staged blocks; nothing of this write is visible, and sending it again \
                 stores it",
                op.what()
            ),
            operation: Some(Box::new(op.operation())),
            source: Some(Box::new(Superseded)),
        })
    }

    /// Whether the committed block list of blob `name` is exactly `ids`.
    async fn committed_list_is(&self, name: &str, ids: &[String]) -> bool {
        let call = Call::blob(Method::GET, name)
            .query("comp", "blocklist")
            .query("blocklisttype", "committed");
        let Ok(body) = self.send_and_read("GetBlockList", &call).await else {
            return false;
        };
        let Some(doc) = std::str::from_utf8(&body)
            .ok()
            .and_then(|t| xml::parse(t).ok())
        else {
            return false;
        };
        let committed: Vec<&str> = doc
            .child("CommittedBlocks")
            .map(|c| {
                c.children_named("Block")
                    .filter_map(|b| b.text_of("Name"))
                    .collect()
            })
            .unwrap_or_default();
        committed.len() == ids.len() && committed.iter().zip(ids).all(|(c, id)| *c == id.as_str())
    }

    /// The metadata of `path` when it holds exactly the bytes of `digest`
    /// (read back and hashed as it streams); `None` otherwise or on any
    /// failure.
    pub(crate) async fn holds_digest(
        &self,
        path: &StoragePath,
        digest: Sha256Digest,
    ) -> Option<ObjectMeta> {
        use sha2::Digest as _;
        let read = self.get_blob(path, GetOptions::default()).await.ok()?;
        let mut stream = read.stream;
        let mut hasher = sha2::Sha256::new();
        while let Some(piece) = stream.try_next().await.ok()? {
            hasher.update(&piece);
        }
        let actual = Sha256Digest::from_bytes(hasher.finalize().into());
        (actual == digest).then_some(read.meta)
    }

    /// Delete Blob (with its snapshots); a missing blob is deleted already.
    pub(crate) async fn delete_blob(&self, path: &StoragePath) -> Result<()> {
        let name = self.blob_name(path);
        let call = Call::blob(Method::DELETE, &name).header("x-ms-delete-snapshots", "include");
        match self.send("DeleteBlob", &call).await {
            Ok(_) => Ok(()),
            Err(f) if f.has_status(404) && !f.has_code("ContainerNotFound") => Ok(()),
            Err(f) => Err(into_error(f, self.op("DeleteBlob", &name), path.as_str())),
        }
    }
}

/// The blocks of one streamed write, for core's multipart writer.
pub(crate) struct BlockSink {
    storage: AzureStorage,
    path: StoragePath,
    name: String,
    write: String,
    content_type: Option<String>,
}

#[async_trait]
impl MultipartSink for BlockSink {
    async fn upload_part(&self, number: u32, data: Bytes) -> Result<CompletedPart> {
        let id = block_id(&self.write, number);
        let size = data.len() as u64;
        self.storage
            .put_block(&self.path, &self.name, &id, data)
            .await?;
        Ok(CompletedPart::new(number, id, size))
    }

    async fn complete(&self, parts: Vec<CompletedPart>) -> Result<ObjectMeta> {
        let ids: Vec<String> = parts.iter().map(|p| p.etag.clone()).collect();
        let size = parts.iter().map(|p| p.size).sum();
        self.storage
            .commit_blocks(
                &self.path,
                &self.name,
                &ids,
                size,
                self.content_type.clone(),
            )
            .await
    }

    /// Nothing to send: staged blocks are invisible and Azure discards
    /// them (see the module's documentation).
    async fn abort(&self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_ids_have_one_length_and_are_the_writes_own() {
        let a = new_write_id();
        let b = new_write_id();
        assert_ne!(block_id(&a, 1), block_id(&b, 1));
        assert_eq!(block_id(&a, 1).len(), block_id(&a, 50_000).len());
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(block_id("0123456789abcdef0123456789abcdef", 7))
            .unwrap();
        assert_eq!(decoded, b"0123456789abcdef0123456789abcdef-000007");
        assert!(decoded.len() <= 64, "Azure's limit on block ids");
        let body = block_list_xml(&[block_id(&a, 1), block_id(&a, 2)]);
        let doc = xml::parse(std::str::from_utf8(&body).unwrap()).unwrap();
        let latest: Vec<&str> = doc
            .children_named("Latest")
            .map(|l| l.text.as_str())
            .collect();
        assert_eq!(latest, vec![block_id(&a, 1), block_id(&a, 2)]);
    }

    #[test]
    fn superseded_writes_are_recognised_through_the_chain() {
        let e = Error::Backend {
            driver: DRIVER,
            retryable: true,
            message: "x".into(),
            operation: None,
            source: Some(Box::new(Superseded)),
        };
        assert!(is_superseded(&e) && e.is_retryable());
        assert!(!is_superseded(&Error::not_found("p")));
    }
}

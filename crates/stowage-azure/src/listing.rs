//! Listings: List Blobs paged by hand (5,000 names a page), so that a
//! repeated marker fails instead of looping. Only committed blobs are
//! listed: Azure, and Azurite 3.35 (checked), leave blobs that have only
//! uncommitted blocks (a write in progress, failed or dropped) out of a
//! listing without `include=uncommittedblobs`, which the driver never asks
//! for.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use percent_encoding::percent_decode_str;
use reqwest::Method;
use stowage_core::{Error, ListStream, ObjectMeta, Result, StoragePath};

use crate::client::Call;
use crate::error::{into_error, DRIVER};
use crate::xml::{self, Element};
use crate::AzureStorage;

/// Names a page asks for (Azure's largest page).
const PAGE: &str = "5000";

/// Where a listing stands.
struct Pages {
    prefix: String,
    marker: Option<String>,
    seen: HashSet<String>,
    listed: u64,
}

/// A listed blob's name, decoded when the service percent-encoded it
/// (`Encoded="true"`: names with characters XML cannot carry).
fn blob_name(element: &Element) -> String {
    if element.attribute("Encoded") == Some("true") {
        if let Ok(decoded) = percent_decode_str(&element.text).decode_utf8() {
            return decoded.into_owned();
        }
    }
    element.text.clone()
}

/// An ETag as Get Blob Properties gives it: quoted.
fn quoted(etag: &str) -> String {
    if etag.starts_with('"') {
        etag.to_string()
    } else {
        format!("\"{etag}\"")
    }
}

impl AzureStorage {
    pub(crate) fn list_blobs(&self, prefix: Option<&StoragePath>) -> ListStream<'_> {
        let start = Pages {
            prefix: self.list_prefix(prefix),
            marker: None,
            seen: HashSet::new(),
            listed: 0,
        };
        stream::unfold(Some(start), move |pages| async move {
            let mut pages = pages?;
            match self.list_page(&mut pages).await {
                Ok((items, more)) => {
                    let items: Vec<Result<ObjectMeta>> = items.into_iter().map(Ok).collect();
                    Some((stream::iter(items), more.then_some(pages)))
                }
                Err(e) => Some((stream::iter(vec![Err(e)]), None)),
            }
        })
        .flatten()
        .boxed()
    }

    /// One page: its blobs, and whether another follows.
    async fn list_page(&self, pages: &mut Pages) -> Result<(Vec<ObjectMeta>, bool)> {
        let mut call = Call::container(Method::GET)
            .query("comp", "list")
            .query("maxresults", PAGE);
        if !pages.prefix.is_empty() {
            call = call.query("prefix", pages.prefix.clone());
        }
        if let Some(marker) = &pages.marker {
            call = call.query("marker", marker.clone());
        }
        let body = self
            .send_and_read("ListBlobs", &call)
            .await
            .map_err(|f| into_error(f, self.op("ListBlobs", &pages.prefix), &pages.prefix))?;
        let what = format!("ListBlobs {}/{}", self.container(), pages.prefix);
        let doc = std::str::from_utf8(&body)
            .map_err(|e| e.to_string())
            .and_then(xml::parse)
            .map_err(|e| {
                Error::backend(
                    DRIVER,
                    true,
                    format!("{what}: the answer is not a listing"),
                    std::io::Error::other(e),
                )
            })?;
        let mut items = Vec::new();
        for blob in doc
            .child("Blobs")
            .into_iter()
            .flat_map(|b| b.children_named("Blob"))
        {
            let Some(name) = blob.child("Name").map(blob_name) else {
                continue;
            };
            let Some(path) = self.path_of(&name) else {
                tracing::warn!(blob = %name, "skipping a blob whose name is not a valid storage path");
                continue;
            };
            let properties = blob.child("Properties");
            let property = |n: &str| {
                properties
                    .and_then(|p| p.text_of(n))
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
            };
            let size = property("Content-Length")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let modified = property("Last-Modified")
                .and_then(|t| DateTime::parse_from_rfc2822(t).ok())
                .map(|t| t.with_timezone(&Utc));
            items.push(
                ObjectMeta::new(path, size)
                    .with_etag(property("Etag").map(quoted))
                    .with_last_modified(modified)
                    .with_content_type(property("Content-Type").map(str::to_string)),
            );
        }
        pages.listed += items.len() as u64;
        let next = doc
            .text_of("NextMarker")
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(str::to_string);
        let more = match next {
            None => false,
            Some(marker) if !pages.seen.insert(marker.clone()) => {
                return Err(Error::Backend {
                    driver: DRIVER,
                    retryable: false,
                    message: format!(
                        "{what}: the service sent the marker {marker:?} a second time after {} \
                         entries; stopping rather than listing in a loop",
                        pages.listed
                    ),
                    operation: None,
                    source: None,
                });
            }
            Some(marker) => {
                pages.marker = Some(marker);
                true
            }
        };
        Ok((items, more))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_names_and_etags() {
        let encoded = xml::parse(r#"<Name Encoded="true">a%2Fb%20c</Name>"#).unwrap();
        assert_eq!(blob_name(&encoded), "a/b c");
        let plain = xml::parse("<Name>a%2Fb</Name>").unwrap();
        assert_eq!(blob_name(&plain), "a%2Fb", "kept as it is without Encoded");
        assert_eq!(quoted("0x1F"), "\"0x1F\"");
        assert_eq!(quoted("\"0x1F\""), "\"0x1F\"");
    }
}

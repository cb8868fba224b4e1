//! `GET /v2/<name>/tags/list` with `n` / `last` paging, read from storage
//! a page at a time: with `n`, one `list_page` of the repository's tags
//! (with a delimiter, starting after `last`, at most `n` entries), so a
//! page costs one listing request whatever the number of tags.

use axum::http::header::LINK;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use stowage::StoragePath;

use super::{child_name, list_options};
use crate::errors::{ErrorCode, RegistryError, RegistryResult};
use crate::layout;
use crate::registry::Registry;

fn failed(e: stowage::Error) -> RegistryError {
    RegistryError::storage(e, ErrorCode::NameUnknown)
}

impl Registry {
    /// The repository's tags in lexical (bytewise) order, after `last`, at
    /// most `n` (all of them without `n`; none with `n=0`). A `Link`
    /// header points at the next page when the storage says there is one.
    /// An unknown repository is `NAME_UNKNOWN`.
    pub(crate) async fn list_tags(
        &self,
        repo: &str,
        n: Option<usize>,
        last: Option<&str>,
    ) -> RegistryResult {
        let prefix = layout::tags(repo);
        let mut tags: Vec<String> = Vec::new();
        let mut more = false;
        if n != Some(0) {
            let mut start_after = last.map(|last| format!("{prefix}/{last}"));
            loop {
                let page = self
                    .storage
                    .list_page(list_options(prefix.clone(), true, start_after, n))
                    .await
                    .map_err(failed)?;
                tags.extend(
                    page.objects
                        .iter()
                        .filter_map(|m| child_name(&prefix, &m.path))
                        .map(str::to_string),
                );
                start_after = page.next_start_after;
                // With `n`, one page; without, every page.
                if n.is_some() || start_after.is_none() {
                    more = start_after.is_some();
                    break;
                }
            }
        }
        tags.sort();
        tags.dedup();
        if let Some(last) = last {
            tags.retain(|t| t.as_str() > last);
        }
        if let Some(n) = n {
            if tags.len() > n {
                tags.truncate(n);
                more = true;
            }
        }
        if tags.is_empty() && !self.repository_exists(repo).await? {
            return Err(RegistryError::new(
                ErrorCode::NameUnknown,
                format!("repository {repo} is unknown"),
            ));
        }
        let mut response = axum::Json(json!({"name": repo, "tags": tags})).into_response();
        if let (true, Some(n), Some(last)) = (more, n, tags.last()) {
            let next = format!("</v2/{repo}/tags/list?n={n}&last={last}>; rel=\"next\"");
            if let Ok(v) = HeaderValue::from_str(&next) {
                response.headers_mut().insert(LINK, v);
            }
        }
        Ok::<Response, _>(response)
    }

    /// Whether anything is stored for `repo` (a manifest, a tag, a blob
    /// link): one listing of at most one entry.
    pub(crate) async fn repository_exists(&self, repo: &str) -> RegistryResult<bool> {
        let prefix: StoragePath = layout::repository(repo);
        let page = self
            .storage
            .list_page(list_options(prefix, false, None, Some(1)))
            .await
            .map_err(failed)?;
        Ok(!page.is_empty())
    }
}

//! `GET /v2/<name>/tags/list` with `n` / `last` paging.

use axum::http::header::LINK;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use serde_json::json;

use crate::errors::{ErrorCode, RegistryError, RegistryResult};
use crate::layout;
use crate::registry::Registry;

impl Registry {
    /// The repository's tags in lexical order, after `last`, at most `n`;
    /// a `Link` header points at the next page when there is one.
    pub(crate) async fn list_tags(
        &self,
        repo: &str,
        n: Option<usize>,
        last: Option<&str>,
    ) -> RegistryResult {
        let mut tags: Vec<String> = self
            .storage
            .list(Some(&layout::tags(repo)))
            .map_ok(|m| m.path.as_str().rsplit('/').next().unwrap_or("").to_string())
            .try_collect()
            .await
            .map_err(|e| RegistryError::storage(e, ErrorCode::NameUnknown))?;
        if tags.is_empty() {
            let any = self
                .storage
                .list(Some(&layout::repository(repo)))
                .try_next()
                .await
                .map_err(|e| RegistryError::storage(e, ErrorCode::NameUnknown))?;
            if any.is_none() {
                return Err(RegistryError::new(
                    ErrorCode::NameUnknown,
                    format!("repository {repo} is unknown"),
                ));
            }
        }
        tags.sort();
        if let Some(last) = last {
            tags.retain(|t| t.as_str() > last);
        }
        let more = n.is_some_and(|n| tags.len() > n);
        if let Some(n) = n {
            tags.truncate(n);
        }
        let mut response = axum::Json(json!({"name": repo, "tags": tags})).into_response();
        if more {
            let next = format!(
                "</v2/{repo}/tags/list?n={}&last={}>; rel=\"next\"",
                n.unwrap_or_default(),
                tags.last().cloned().unwrap_or_default()
            );
            if let Ok(v) = HeaderValue::from_str(&next) {
                response.headers_mut().insert(LINK, v);
            }
        }
        Ok::<Response, _>(response)
    }
}

//! `GET /v2/_catalog?n=&last=`: the repositories, a page at a time, and
//! [`RepositoryWalk`], the walk of `repositories/` that the catalog and the
//! garbage collection share.
//!
//! Repository names nest (`team/app`, `team/app/cache`), so the walk goes
//! down `repositories/` one directory level at a time, listing each level
//! with a delimiter (`list_page`): a directory is a repository when it has
//! `_manifests` below it; its other children not starting with `_` are
//! deeper names. Repositories come in the bytewise order of
//! `<name>/` (a repository before the ones nested in it; `a-b` before `a`,
//! `a` before `a/b` and `a0`), the order of the listings themselves, so a
//! page resumes after `last` with one listing per level of `last` instead
//! of walking everything before it.

use std::cmp::Ordering;
use std::collections::VecDeque;

use axum::http::header::LINK;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use stowage::{Storage, StoragePath};

use super::{child_name, list_options};
use crate::errors::{ErrorCode, RegistryError, RegistryResult};
use crate::layout;
use crate::names::check_repository;
use crate::registry::Registry;

/// The catalog's page size when the request names none.
pub(crate) const DEFAULT_CATALOG_PAGE: usize = 100;

/// Entries asked for per listing of a directory level.
const LEVEL_PAGE: usize = 1000;

/// The walk order of two names at one level: bytewise order of `name/`,
/// the order in which a delimited listing returns directories.
fn walk_order(a: &str, b: &str) -> Ordering {
    let slash = std::iter::once(b'/');
    a.bytes().chain(slash.clone()).cmp(b.bytes().chain(slash))
}

/// One directory level of the walk.
#[derive(Debug)]
struct Level {
    /// `repositories` or `repositories/<name>`.
    dir: StoragePath,
    /// The name `dir` stands for (empty at the top).
    name: String,
    /// The child taken last, or the one to resume after: children are
    /// taken strictly after it.
    after: Option<String>,
    /// Children listed and not taken yet, in walk order.
    pending: VecDeque<String>,
    /// Where the next listing of the level starts (`None` before the first).
    next: Option<String>,
    /// Whether the level was listed to its end.
    done: bool,
}

impl Level {
    fn new(dir: StoragePath, name: String, after: Option<String>) -> Self {
        Self {
            dir,
            name,
            after,
            pending: VecDeque::new(),
            next: None,
            done: false,
        }
    }

    /// Lists the next page of the level's children; whether `_manifests`
    /// was among them (the level is a repository).
    async fn fetch(&mut self, storage: &dyn Storage) -> stowage::Result<bool> {
        let start_after = match (&self.next, &self.after) {
            (Some(next), _) => Some(next.clone()),
            // Resuming: skip the child `after` and everything below it.
            (None, Some(after)) => Some(format!("{}/{after}/", self.dir)),
            (None, None) => None,
        };
        let page = storage
            .list_page(list_options(
                self.dir.clone(),
                true,
                start_after,
                Some(LEVEL_PAGE),
            ))
            .await?;
        self.next = page.next_start_after;
        self.done = self.next.is_none();
        let mut manifests = false;
        let mut children: Vec<String> = Vec::new();
        for name in page
            .prefixes
            .iter()
            .filter_map(|p| child_name(&self.dir, p))
        {
            if name == "_manifests" {
                manifests = true;
            }
            let later = self
                .after
                .as_deref()
                .is_none_or(|after| walk_order(name, after) == Ordering::Greater);
            if !name.starts_with('_') && later {
                children.push(name.to_string());
            }
        }
        children.sort_by(|a, b| walk_order(a, b));
        children.dedup();
        self.pending.extend(children);
        Ok(manifests)
    }
}

/// The repositories in storage, in walk order (see the module
/// documentation), found a directory level at a time.
#[derive(Debug)]
pub(crate) struct RepositoryWalk {
    stack: Vec<Level>,
}

impl RepositoryWalk {
    /// Every repository.
    pub(crate) fn new() -> Self {
        Self::after(None)
    }

    /// The repositories after `last` (a valid repository name, which need
    /// not exist): the ones nested in it, then those after it.
    pub(crate) fn after(last: Option<&str>) -> Self {
        let mut stack = vec![Level::new(layout::repositories(), String::new(), None)];
        if let Some(last) = last {
            let segments: Vec<&str> = last.split('/').collect();
            stack[0].after = segments.first().map(|s| s.to_string());
            for depth in 1..=segments.len() {
                let name = segments[..depth].join("/");
                let after = segments.get(depth).map(|s| s.to_string());
                stack.push(Level::new(layout::repository(&name), name, after));
            }
        }
        Self { stack }
    }

    /// The next repository, `None` at the end.
    ///
    /// # Errors
    /// Storage failures (the walk can go on after one: the failed listing
    /// is asked again).
    pub(crate) async fn next(&mut self, storage: &dyn Storage) -> stowage::Result<Option<String>> {
        loop {
            let Some(level) = self.stack.last_mut() else {
                return Ok(None);
            };
            let Some(child) = level.pending.pop_front() else {
                if level.done {
                    self.stack.pop();
                } else {
                    level.fetch(storage).await?;
                }
                continue;
            };
            level.after = Some(child.clone());
            let name = if level.name.is_empty() {
                child.clone()
            } else {
                format!("{}/{child}", level.name)
            };
            let mut below = Level::new(level.dir.join(&child)?, name.clone(), None);
            // The first listing of the directory usually says whether it is
            // a repository (`_manifests` sorts before lowercase names);
            // otherwise one more listing does.
            let mut repository = below.fetch(storage).await?;
            if !repository && !below.done {
                let manifests = layout::manifests(&name);
                repository = !storage
                    .list_page(list_options(manifests, false, None, Some(1)))
                    .await?
                    .is_empty();
            }
            self.stack.push(below);
            if repository {
                return Ok(Some(name));
            }
        }
    }
}

impl Registry {
    /// `GET /v2/_catalog?n=&last=`: at most `n` repositories (default
    /// [`DEFAULT_CATALOG_PAGE`]) after `last`, in walk order, and a `Link`
    /// to the next page when there is one (`</v2/_catalog?last=X&n=N>;
    /// rel="next"`, as distribution writes it). `n=0` is an empty list.
    pub(crate) async fn catalog(&self, n: Option<usize>, last: Option<&str>) -> RegistryResult {
        if let Some(last) = last {
            check_repository(last)?;
        }
        let n = n.unwrap_or(DEFAULT_CATALOG_PAGE);
        let failed = |e: stowage::Error| RegistryError::storage(e, ErrorCode::NameUnknown);
        let mut repositories: Vec<String> = Vec::new();
        let mut more = false;
        if n > 0 {
            let mut walk = RepositoryWalk::after(last);
            while let Some(name) = walk.next(&*self.storage).await.map_err(failed)? {
                if repositories.len() == n {
                    more = true;
                    break;
                }
                repositories.push(name);
            }
        }
        let mut response = axum::Json(json!({"repositories": repositories})).into_response();
        if let (true, Some(last)) = (more, repositories.last()) {
            let next = format!("</v2/_catalog?last={last}&n={n}>; rel=\"next\"");
            if let Ok(v) = HeaderValue::from_str(&next) {
                response.headers_mut().insert(LINK, v);
            }
        }
        Ok::<Response, _>(response)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use stowage::PutOptions;

    use super::*;

    #[test]
    fn names_walk_in_the_order_of_their_directories() {
        let mut names = vec!["a0", "a/b", "a", "a-b", "a.b", "b", "a/b/c"];
        names.sort_by(|a, b| walk_order(a, b));
        assert_eq!(names, ["a-b", "a.b", "a", "a/b", "a/b/c", "a0", "b"]);
    }

    async fn put(storage: &dyn Storage, path: &str) {
        storage
            .put(
                &StoragePath::parse(path).unwrap(),
                Bytes::from_static(b"x"),
                PutOptions::default(),
            )
            .await
            .unwrap();
    }

    /// Every repository after `last`, walking the whole way.
    async fn walk_all(storage: &dyn Storage, last: Option<&str>) -> Vec<String> {
        let mut walk = RepositoryWalk::after(last);
        let mut out = Vec::new();
        while let Some(name) = walk.next(storage).await.unwrap() {
            out.push(name);
        }
        out
    }

    #[tokio::test]
    async fn the_walk_finds_nested_repositories_and_resumes_after_any_name() {
        let storage: Arc<dyn Storage> = Arc::new(stowage::local::LocalStorage::in_memory());
        let s = &*storage;
        for repo in ["a", "a/b", "a/b/c", "a-b", "a0", "team/app", "z"] {
            put(s, &format!("repositories/{repo}/_manifests/tags/v1")).await;
        }
        // Blob links only (a push that never put a manifest): not listed,
        // but what is nested in it is.
        put(s, "repositories/lonely/_layers/sha256/ab").await;
        put(s, "repositories/lonely/x/_manifests/revisions/sha256/ab").await;
        let all = [
            "a-b", "a", "a/b", "a/b/c", "a0", "lonely/x", "team/app", "z",
        ];
        assert_eq!(walk_all(s, None).await, all);
        for (i, last) in all.iter().enumerate() {
            assert_eq!(walk_all(s, Some(last)).await, all[i + 1..], "after {last}");
        }
        // A name that does not exist resumes where it would be.
        assert_eq!(walk_all(s, Some("a/a")).await, all[2..]);
        assert_eq!(walk_all(s, Some("team")).await, ["team/app", "z"]);
        assert_eq!(walk_all(s, Some("zz")).await, Vec::<String>::new());
    }
}

//! `ls`, `stat` and `rm`.

use futures::TryStreamExt;
use stowage::{ObjectMeta, StorageExt};

use super::{prefix_path, storage_path, strip_one_slash};
use crate::context::Context;
use crate::failure::Failure;

/// `stowage ls [PREFIX] [--long]`, sorted by path. `dir/` lists `dir`.
pub(crate) async fn ls(ctx: &Context, prefix: Option<&str>, long: bool) -> Result<(), Failure> {
    let prefix = prefix.map(prefix_path).transpose()?;
    let storage = ctx.storage().await?;
    let mut all: Vec<ObjectMeta> = storage.list(prefix.as_ref()).try_collect().await?;
    all.sort_by(|a, b| a.path.cmp(&b.path));
    for m in all {
        if long {
            let when = m
                .last_modified
                .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                .unwrap_or_else(|| "-".into());
            println!("{:>14}  {when}  {}", m.size, m.path);
        } else {
            println!("{}", m.path);
        }
    }
    Ok(())
}

/// `stowage stat PATH [--json]`.
pub(crate) async fn stat(ctx: &Context, path: &str, json: bool) -> Result<(), Failure> {
    let path = storage_path(path)?;
    let storage = ctx.storage().await?;
    let m = storage.stat(&path).await?;
    let modified = m.last_modified.map(|t| t.to_rfc3339());
    if json {
        let v = serde_json::json!({
            "path": m.path.as_str(),
            "size": m.size,
            "etag": m.etag,
            "last_modified": modified,
            "content_type": m.content_type,
        });
        println!("{v}");
    } else {
        println!("path:          {}", m.path);
        println!("size:          {}", m.size);
        println!("etag:          {}", m.etag.as_deref().unwrap_or("-"));
        println!("last modified: {}", modified.as_deref().unwrap_or("-"));
        println!(
            "content type:  {}",
            m.content_type.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}

/// `stowage rm PATH [--recursive]`: a missing object is an error unless
/// --recursive removed something below it. With --recursive, `dir/` (one
/// trailing `/`) names only what is below `dir`, as `aws s3 rm --recursive`
/// does: an object named `dir` itself stays.
pub(crate) async fn rm(ctx: &Context, path: &str, recursive: bool) -> Result<(), Failure> {
    let only_below = recursive && strip_one_slash(path) != path;
    let path = if recursive {
        prefix_path(path)?
    } else {
        storage_path(path)?
    };
    let storage = ctx.storage().await?;
    let existed = !only_below && storage.exists(&path).await?;
    if existed {
        storage.delete(&path).await?;
    }
    let below = if recursive {
        storage.delete_prefix(&path).await?
    } else {
        0
    };
    if !existed && below == 0 {
        return Err(Failure::failed(format!("not found: {path}")));
    }
    if recursive {
        eprintln!("removed {} object(s)", below + u64::from(existed));
    }
    Ok(())
}

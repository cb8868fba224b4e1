//! Forwarding written once: [`forward_storage!`](crate::forward_storage)
//! implements [`Storage`](crate::Storage) for a wrapper by sending the
//! methods it names to the wrapped storage, next to the methods the wrapper
//! writes itself; core uses it for `Arc<T>` and `Box<T>`, the CloudFront
//! layer for its S3 driver, and the [layers](crate::layers). The generated
//! impl carries `#[deny(clippy::missing_trait_methods)]`, so a method added
//! to the trait later must be forwarded or written by every wrapper.
//!
//! A wrapper that does the same thing around many methods (time them, hold
//! a permit, refuse them) lists them after `around`: each is sent to the
//! wrapped storage through the wrapper's [`Around::around`], which gets a
//! [`Call`] describing the operation and the wrapped storage's future.

use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;

use crate::{
    ByteRange, CleanupReport, DirectUrl, GetResult, ListPage, ObjectMeta, Result, StoragePath,
    UploadState,
};

/// Implements [`Storage`](crate::Storage) for a wrapper type: the methods
/// in `forward [...]` go to what [`Wraps::wrapped`] returns; the methods
/// written after the list are the wrapper's own, as in an `#[async_trait]`
/// impl.
///
/// ```ignore
/// impl stowage_core::forward::Wraps for MyLayer {
///     type Inner = S3Storage;
///     fn wrapped(&self) -> &S3Storage { &self.s3 }
/// }
/// stowage_core::forward_storage! {
///     impl Storage for MyLayer;
///     forward [capabilities get put_stream put stat delete delete_prefix list list_page
///              copy upload_url start_upload write_chunk complete_upload abort_upload
///              cleanup_uploads validate metrics download_url];
///     fn driver(&self) -> &'static str { "my-layer" }
/// }
/// ```
/// Generics go after `impl`, their bounds in brackets after `where`:
/// `impl<T> Storage for Arc<T> where [T: Storage + ?Sized]; ...`.
///
/// An optional `around [...]` list after `forward` names methods sent to
/// the wrapped storage through the wrapper's [`Around::around`] (every
/// method returning a `Result` can be listed: all but `driver`,
/// `capabilities`, `list`, `validate` and `metrics`):
///
/// ```ignore
/// impl stowage_core::forward::Around for MyLayer {
///     fn around<'a, T: Outcome + 'a>(&'a self, call: Call<'a>, run: BoxFuture<'a, Result<T>>)
///         -> BoxFuture<'a, Result<T>> {
///         Box::pin(async move { /* before */ let r = run.await; /* after */ r })
///     }
/// }
/// stowage_core::forward_storage! {
///     impl Storage for MyLayer;
///     forward [driver capabilities list validate metrics];
///     around [get put_stream put stat delete delete_prefix list_page copy download_url
///             upload_url start_upload write_chunk complete_upload abort_upload
///             cleanup_uploads];
/// }
/// ```
#[macro_export]
macro_rules! forward_storage {
    (
        impl $(<$($gen:ident),+>)? Storage for $ty:ty $(where [$($wc:tt)*])?;
        forward [$($method:ident)*];
        around [$($around:ident)*];
        $($own:tt)*
    ) => {
        $crate::__forward_storage_around! {
            [$(<$($gen),+>)?] [$ty] [$(where $($wc)*)?] [$($method)*] [$($around)*] [] $($own)*
        }
    };
    (
        impl $(<$($gen:ident),+>)? Storage for $ty:ty $(where [$($wc:tt)*])?;
        forward [$($method:ident)*];
        $($own:tt)*
    ) => {
        $crate::__forward_storage_collect! {
            [$(<$($gen),+>)?] [$ty] [$(where $($wc)*)?] [$($method)*] [] $($own)*
        }
    };
}

/// Expands the method list of [`forward_storage!`] one name at a time into
/// method text, then emits the impl (not public API: the `#[async_trait]`
/// attribute must see finished methods, so no macro calls are left inside).
#[doc(hidden)]
#[macro_export]
macro_rules! __forward_storage_collect {
    ([$($gen:tt)*] [$ty:ty] [$($wc:tt)*] [] [$($done:tt)*] $($own:tt)*) => {
        #[$crate::async_trait]
        #[deny(clippy::missing_trait_methods)]
        impl $($gen)* $crate::Storage for $ty $($wc)* {
            $($done)*
            $($own)*
        }
    };
    ([$($gen:tt)*] [$ty:ty] [$($wc:tt)*] [driver $($rest:ident)*] [$($done:tt)*] $($own:tt)*) => {
        $crate::__forward_storage_collect! {
            [$($gen)*] [$ty] [$($wc)*] [$($rest)*]
            [$($done)* fn driver(&self) -> &'static str { $crate::Storage::driver($crate::forward::Wraps::wrapped(self)) }]
            $($own)*
        }
    };
    ([$($gen:tt)*] [$ty:ty] [$($wc:tt)*] [capabilities $($rest:ident)*] [$($done:tt)*] $($own:tt)*) => {
        $crate::__forward_storage_collect! {
            [$($gen)*] [$ty] [$($wc)*] [$($rest)*]
            [$($done)* fn capabilities(&self) -> $crate::Capabilities { $crate::Storage::capabilities($crate::forward::Wraps::wrapped(self)) }]
            $($own)*
        }
    };
    ([$($gen:tt)*] [$ty:ty] [$($wc:tt)*] [get $($rest:ident)*] [$($done:tt)*] $($own:tt)*) => {
        $crate::__forward_storage_collect! {
            [$($gen)*] [$ty] [$($wc)*] [$($rest)*]
            [$($done)* async fn get(&self, path: &$crate::StoragePath, options: $crate::GetOptions) -> $crate::Result<$crate::GetResult> { $crate::Storage::get($crate::forward::Wraps::wrapped(self), path, options).await }]
            $($own)*
        }
    };
    ([$($gen:tt)*] [$ty:ty] [$($wc:tt)*] [put_stream $($rest:ident)*] [$($done:tt)*] $($own:tt)*) => {
        $crate::__forward_storage_collect! {
            [$($gen)*] [$ty] [$($wc)*] [$($rest)*]
            [$($done)* async fn put_stream(&self, path: &$crate::StoragePath, data: $crate::WriteStream<'_>, options: $crate::PutOptions) -> $crate::Result<$crate::ObjectMeta> { $crate::Storage::put_stream($crate::forward::Wraps::wrapped(self), path, data, options).await }]
            $($own)*
        }
    };
    ([$($gen:tt)*] [$ty:ty] [$($wc:tt)*] [put $($rest:ident)*] [$($done:tt)*] $($own:tt)*) => {
        $crate::__forward_storage_collect! {
            [$($gen)*] [$ty] [$($wc)*] [$($rest)*]
            [$($done)* async fn put(&self, path: &$crate::StoragePath, data: $crate::__bytes::Bytes, options: $crate::PutOptions) -> $crate::Result<$crate::ObjectMeta> { $crate::Storage::put($crate::forward::Wraps::wrapped(self), path, data, options).await }]
            $($own)*
        }
    };
    ([$($gen:tt)*] [$ty:ty] [$($wc:tt)*] [stat $($rest:ident)*] [$($done:tt)*] $($own:tt)*) => {
        $crate::__forward_storage_collect! {
            [$($gen)*] [$ty] [$($wc)*] [$($rest)*]
            [$($done)* async fn stat(&self, path: &$crate::StoragePath) -> $crate::Result<$crate::ObjectMeta> { $crate::Storage::stat($crate::forward::Wraps::wrapped(self), path).await }]
            $($own)*
        }
    };
    ([$($gen:tt)*] [$ty:ty] [$($wc:tt)*] [delete $($rest:ident)*] [$($done:tt)*] $($own:tt)*) => {
        $crate::__forward_storage_collect! {
            [$($gen)*] [$ty] [$($wc)*] [$($rest)*]
            [$($done)* async fn delete(&self, path: &$crate::StoragePath) -> $crate::Result<()> { $crate::Storage::delete($crate::forward::Wraps::wrapped(self), path).await }]
            $($own)*
        }
    };
    ([$($gen:tt)*] [$ty:ty] [$($wc:tt)*] [delete_prefix $($rest:ident)*] [$($done:tt)*] $($own:tt)*) => {
        $crate::__forward_storage_collect! {
            [$($gen)*] [$ty] [$($wc)*] [$($rest)*]
            [$($done)* async fn delete_prefix(&self, prefix: &$crate::StoragePath) -> $crate::Result<u64> { $crate::Storage::delete_prefix($crate::forward::Wraps::wrapped(self), prefix).await }]
            $($own)*
        }
    };
    ([$($gen:tt)*] [$ty:ty] [$($wc:tt)*] [list $($rest:ident)*] [$($done:tt)*] $($own:tt)*) => {
        $crate::__forward_storage_collect! {
            [$($gen)*] [$ty] [$($wc)*] [$($rest)*]
            [$($done)* fn list(&self, prefix: ::std::option::Option<&$crate::StoragePath>) -> $crate::ListStream<'_> { $crate::Storage::list($crate::forward::Wraps::wrapped(self), prefix) }]
            $($own)*
        }
    };
    ([$($gen:tt)*] [$ty:ty] [$($wc:tt)*] [list_page $($rest:ident)*] [$($done:tt)*] $($own:tt)*) => {
        $crate::__forward_storage_collect! {
            [$($gen)*] [$ty] [$($wc)*] [$($rest)*]
            [$($done)* async fn list_page(&self, options: $crate::ListOptions) -> $crate::Result<$crate::ListPage> { $crate::Storage::list_page($crate::forward::Wraps::wrapped(self), options).await }]
            $($own)*
        }
    };
    ([$($gen:tt)*] [$ty:ty] [$($wc:tt)*] [copy $($rest:ident)*] [$($done:tt)*] $($own:tt)*) => {
        $crate::__forward_storage_collect! {
            [$($gen)*] [$ty] [$($wc)*] [$($rest)*]
            [$($done)* async fn copy(&self, from: &$crate::StoragePath, to: &$crate::StoragePath) -> $crate::Result<$crate::ObjectMeta> { $crate::Storage::copy($crate::forward::Wraps::wrapped(self), from, to).await }]
            $($own)*
        }
    };
    ([$($gen:tt)*] [$ty:ty] [$($wc:tt)*] [download_url $($rest:ident)*] [$($done:tt)*] $($own:tt)*) => {
        $crate::__forward_storage_collect! {
            [$($gen)*] [$ty] [$($wc)*] [$($rest)*]
            [$($done)* async fn download_url(&self, path: &$crate::StoragePath, options: &$crate::DownloadUrlOptions) -> $crate::Result<::std::option::Option<$crate::DirectUrl>> { $crate::Storage::download_url($crate::forward::Wraps::wrapped(self), path, options).await }]
            $($own)*
        }
    };
    ([$($gen:tt)*] [$ty:ty] [$($wc:tt)*] [upload_url $($rest:ident)*] [$($done:tt)*] $($own:tt)*) => {
        $crate::__forward_storage_collect! {
            [$($gen)*] [$ty] [$($wc)*] [$($rest)*]
            [$($done)* async fn upload_url(&self, path: &$crate::StoragePath, options: &$crate::UploadUrlOptions) -> $crate::Result<::std::option::Option<$crate::DirectUrl>> { $crate::Storage::upload_url($crate::forward::Wraps::wrapped(self), path, options).await }]
            $($own)*
        }
    };
    ([$($gen:tt)*] [$ty:ty] [$($wc:tt)*] [start_upload $($rest:ident)*] [$($done:tt)*] $($own:tt)*) => {
        $crate::__forward_storage_collect! {
            [$($gen)*] [$ty] [$($wc)*] [$($rest)*]
            [$($done)* async fn start_upload(&self) -> $crate::Result<$crate::UploadState> { $crate::Storage::start_upload($crate::forward::Wraps::wrapped(self)).await }]
            $($own)*
        }
    };
    ([$($gen:tt)*] [$ty:ty] [$($wc:tt)*] [write_chunk $($rest:ident)*] [$($done:tt)*] $($own:tt)*) => {
        $crate::__forward_storage_collect! {
            [$($gen)*] [$ty] [$($wc)*] [$($rest)*]
            [$($done)* async fn write_chunk(&self, state: &$crate::UploadState, offset: u64, data: $crate::WriteStream<'_>) -> $crate::Result<$crate::UploadState> { $crate::Storage::write_chunk($crate::forward::Wraps::wrapped(self), state, offset, data).await }]
            $($own)*
        }
    };
    ([$($gen:tt)*] [$ty:ty] [$($wc:tt)*] [complete_upload $($rest:ident)*] [$($done:tt)*] $($own:tt)*) => {
        $crate::__forward_storage_collect! {
            [$($gen)*] [$ty] [$($wc)*] [$($rest)*]
            [$($done)* async fn complete_upload(&self, state: &$crate::UploadState, dest: &$crate::StoragePath, options: $crate::CompleteOptions) -> $crate::Result<$crate::ObjectMeta> { $crate::Storage::complete_upload($crate::forward::Wraps::wrapped(self), state, dest, options).await }]
            $($own)*
        }
    };
    ([$($gen:tt)*] [$ty:ty] [$($wc:tt)*] [abort_upload $($rest:ident)*] [$($done:tt)*] $($own:tt)*) => {
        $crate::__forward_storage_collect! {
            [$($gen)*] [$ty] [$($wc)*] [$($rest)*]
            [$($done)* async fn abort_upload(&self, state: &$crate::UploadState) -> $crate::Result<()> { $crate::Storage::abort_upload($crate::forward::Wraps::wrapped(self), state).await }]
            $($own)*
        }
    };
    ([$($gen:tt)*] [$ty:ty] [$($wc:tt)*] [cleanup_uploads $($rest:ident)*] [$($done:tt)*] $($own:tt)*) => {
        $crate::__forward_storage_collect! {
            [$($gen)*] [$ty] [$($wc)*] [$($rest)*]
            [$($done)* async fn cleanup_uploads(&self, older_than: ::std::time::Duration) -> $crate::Result<$crate::CleanupReport> { $crate::Storage::cleanup_uploads($crate::forward::Wraps::wrapped(self), older_than).await }]
            $($own)*
        }
    };
    ([$($gen:tt)*] [$ty:ty] [$($wc:tt)*] [validate $($rest:ident)*] [$($done:tt)*] $($own:tt)*) => {
        $crate::__forward_storage_collect! {
            [$($gen)*] [$ty] [$($wc)*] [$($rest)*]
            [$($done)* async fn validate(&self) -> $crate::ValidationReport { $crate::Storage::validate($crate::forward::Wraps::wrapped(self)).await }]
            $($own)*
        }
    };
    ([$($gen:tt)*] [$ty:ty] [$($wc:tt)*] [metrics $($rest:ident)*] [$($done:tt)*] $($own:tt)*) => {
        $crate::__forward_storage_collect! {
            [$($gen)*] [$ty] [$($wc)*] [$($rest)*]
            [$($done)* fn metrics(&self) -> ::std::vec::Vec<$crate::Metric> { $crate::Storage::metrics($crate::forward::Wraps::wrapped(self)) }]
            $($own)*
        }
    };
}

/// Expands the `around [...]` list of [`forward_storage!`] one name at a
/// time into methods that send the call through [`Around::around`], then
/// hands the finished methods to the `forward [...]` expansion (not public
/// API).
#[doc(hidden)]
#[macro_export]
macro_rules! __forward_storage_around {
    ([$($gen:tt)*] [$ty:ty] [$($wc:tt)*] [$($fwd:ident)*] [] [$($done:tt)*] $($own:tt)*) => {
        $crate::__forward_storage_collect! {
            [$($gen)*] [$ty] [$($wc)*] [$($fwd)*] [$($done)*] $($own)*
        }
    };
    ([$($gen:tt)*] [$ty:ty] [$($wc:tt)*] [$($fwd:ident)*] [get $($rest:ident)*] [$($done:tt)*] $($own:tt)*) => {
        $crate::__forward_storage_around! {
            [$($gen)*] [$ty] [$($wc)*] [$($fwd)*] [$($rest)*]
            [$($done)* async fn get(&self, path: &$crate::StoragePath, options: $crate::GetOptions) -> $crate::Result<$crate::GetResult> { $crate::forward::Around::around(self, $crate::forward::Call::new($crate::forward::Op::Get).with_path(path).with_range(options.range), $crate::Storage::get($crate::forward::Wraps::wrapped(self), path, options)).await }]
            $($own)*
        }
    };
    ([$($gen:tt)*] [$ty:ty] [$($wc:tt)*] [$($fwd:ident)*] [put_stream $($rest:ident)*] [$($done:tt)*] $($own:tt)*) => {
        $crate::__forward_storage_around! {
            [$($gen)*] [$ty] [$($wc)*] [$($fwd)*] [$($rest)*]
            [$($done)* async fn put_stream(&self, path: &$crate::StoragePath, data: $crate::WriteStream<'_>, options: $crate::PutOptions) -> $crate::Result<$crate::ObjectMeta> { $crate::forward::Around::around(self, $crate::forward::Call::new($crate::forward::Op::PutStream).with_path(path).with_size(options.size_hint), $crate::Storage::put_stream($crate::forward::Wraps::wrapped(self), path, data, options)).await }]
            $($own)*
        }
    };
    ([$($gen:tt)*] [$ty:ty] [$($wc:tt)*] [$($fwd:ident)*] [put $($rest:ident)*] [$($done:tt)*] $($own:tt)*) => {
        $crate::__forward_storage_around! {
            [$($gen)*] [$ty] [$($wc)*] [$($fwd)*] [$($rest)*]
            [$($done)* async fn put(&self, path: &$crate::StoragePath, data: $crate::__bytes::Bytes, options: $crate::PutOptions) -> $crate::Result<$crate::ObjectMeta> { $crate::forward::Around::around(self, $crate::forward::Call::new($crate::forward::Op::Put).with_path(path).with_size(::std::option::Option::Some(data.len() as u64)), $crate::Storage::put($crate::forward::Wraps::wrapped(self), path, data, options)).await }]
            $($own)*
        }
    };
    ([$($gen:tt)*] [$ty:ty] [$($wc:tt)*] [$($fwd:ident)*] [stat $($rest:ident)*] [$($done:tt)*] $($own:tt)*) => {
        $crate::__forward_storage_around! {
            [$($gen)*] [$ty] [$($wc)*] [$($fwd)*] [$($rest)*]
            [$($done)* async fn stat(&self, path: &$crate::StoragePath) -> $crate::Result<$crate::ObjectMeta> { $crate::forward::Around::around(self, $crate::forward::Call::new($crate::forward::Op::Stat).with_path(path), $crate::Storage::stat($crate::forward::Wraps::wrapped(self), path)).await }]
            $($own)*
        }
    };
    ([$($gen:tt)*] [$ty:ty] [$($wc:tt)*] [$($fwd:ident)*] [delete $($rest:ident)*] [$($done:tt)*] $($own:tt)*) => {
        $crate::__forward_storage_around! {
            [$($gen)*] [$ty] [$($wc)*] [$($fwd)*] [$($rest)*]
            [$($done)* async fn delete(&self, path: &$crate::StoragePath) -> $crate::Result<()> { $crate::forward::Around::around(self, $crate::forward::Call::new($crate::forward::Op::Delete).with_path(path), $crate::Storage::delete($crate::forward::Wraps::wrapped(self), path)).await }]
            $($own)*
        }
    };
    ([$($gen:tt)*] [$ty:ty] [$($wc:tt)*] [$($fwd:ident)*] [delete_prefix $($rest:ident)*] [$($done:tt)*] $($own:tt)*) => {
        $crate::__forward_storage_around! {
            [$($gen)*] [$ty] [$($wc)*] [$($fwd)*] [$($rest)*]
            [$($done)* async fn delete_prefix(&self, prefix: &$crate::StoragePath) -> $crate::Result<u64> { $crate::forward::Around::around(self, $crate::forward::Call::new($crate::forward::Op::DeletePrefix).with_path(prefix), $crate::Storage::delete_prefix($crate::forward::Wraps::wrapped(self), prefix)).await }]
            $($own)*
        }
    };
    ([$($gen:tt)*] [$ty:ty] [$($wc:tt)*] [$($fwd:ident)*] [list_page $($rest:ident)*] [$($done:tt)*] $($own:tt)*) => {
        $crate::__forward_storage_around! {
            [$($gen)*] [$ty] [$($wc)*] [$($fwd)*] [$($rest)*]
            [$($done)* async fn list_page(&self, options: $crate::ListOptions) -> $crate::Result<$crate::ListPage> { let prefix = options.prefix.clone(); $crate::forward::Around::around(self, $crate::forward::Call::new($crate::forward::Op::ListPage).with_prefix(prefix.as_ref()), $crate::Storage::list_page($crate::forward::Wraps::wrapped(self), options)).await }]
            $($own)*
        }
    };
    ([$($gen:tt)*] [$ty:ty] [$($wc:tt)*] [$($fwd:ident)*] [copy $($rest:ident)*] [$($done:tt)*] $($own:tt)*) => {
        $crate::__forward_storage_around! {
            [$($gen)*] [$ty] [$($wc)*] [$($fwd)*] [$($rest)*]
            [$($done)* async fn copy(&self, from: &$crate::StoragePath, to: &$crate::StoragePath) -> $crate::Result<$crate::ObjectMeta> { $crate::forward::Around::around(self, $crate::forward::Call::new($crate::forward::Op::Copy).with_path(from).with_to(to), $crate::Storage::copy($crate::forward::Wraps::wrapped(self), from, to)).await }]
            $($own)*
        }
    };
    ([$($gen:tt)*] [$ty:ty] [$($wc:tt)*] [$($fwd:ident)*] [download_url $($rest:ident)*] [$($done:tt)*] $($own:tt)*) => {
        $crate::__forward_storage_around! {
            [$($gen)*] [$ty] [$($wc)*] [$($fwd)*] [$($rest)*]
            [$($done)* async fn download_url(&self, path: &$crate::StoragePath, options: &$crate::DownloadUrlOptions) -> $crate::Result<::std::option::Option<$crate::DirectUrl>> { $crate::forward::Around::around(self, $crate::forward::Call::new($crate::forward::Op::DownloadUrl).with_path(path), $crate::Storage::download_url($crate::forward::Wraps::wrapped(self), path, options)).await }]
            $($own)*
        }
    };
    ([$($gen:tt)*] [$ty:ty] [$($wc:tt)*] [$($fwd:ident)*] [upload_url $($rest:ident)*] [$($done:tt)*] $($own:tt)*) => {
        $crate::__forward_storage_around! {
            [$($gen)*] [$ty] [$($wc)*] [$($fwd)*] [$($rest)*]
            [$($done)* async fn upload_url(&self, path: &$crate::StoragePath, options: &$crate::UploadUrlOptions) -> $crate::Result<::std::option::Option<$crate::DirectUrl>> { $crate::forward::Around::around(self, $crate::forward::Call::new($crate::forward::Op::UploadUrl).with_path(path), $crate::Storage::upload_url($crate::forward::Wraps::wrapped(self), path, options)).await }]
            $($own)*
        }
    };
    ([$($gen:tt)*] [$ty:ty] [$($wc:tt)*] [$($fwd:ident)*] [start_upload $($rest:ident)*] [$($done:tt)*] $($own:tt)*) => {
        $crate::__forward_storage_around! {
            [$($gen)*] [$ty] [$($wc)*] [$($fwd)*] [$($rest)*]
            [$($done)* async fn start_upload(&self) -> $crate::Result<$crate::UploadState> { $crate::forward::Around::around(self, $crate::forward::Call::new($crate::forward::Op::StartUpload), $crate::Storage::start_upload($crate::forward::Wraps::wrapped(self))).await }]
            $($own)*
        }
    };
    ([$($gen:tt)*] [$ty:ty] [$($wc:tt)*] [$($fwd:ident)*] [write_chunk $($rest:ident)*] [$($done:tt)*] $($own:tt)*) => {
        $crate::__forward_storage_around! {
            [$($gen)*] [$ty] [$($wc)*] [$($fwd)*] [$($rest)*]
            [$($done)* async fn write_chunk(&self, state: &$crate::UploadState, offset: u64, data: $crate::WriteStream<'_>) -> $crate::Result<$crate::UploadState> { $crate::forward::Around::around(self, $crate::forward::Call::new($crate::forward::Op::WriteChunk).with_upload(&state.id).with_offset(offset), $crate::Storage::write_chunk($crate::forward::Wraps::wrapped(self), state, offset, data)).await }]
            $($own)*
        }
    };
    ([$($gen:tt)*] [$ty:ty] [$($wc:tt)*] [$($fwd:ident)*] [complete_upload $($rest:ident)*] [$($done:tt)*] $($own:tt)*) => {
        $crate::__forward_storage_around! {
            [$($gen)*] [$ty] [$($wc)*] [$($fwd)*] [$($rest)*]
            [$($done)* async fn complete_upload(&self, state: &$crate::UploadState, dest: &$crate::StoragePath, options: $crate::CompleteOptions) -> $crate::Result<$crate::ObjectMeta> { $crate::forward::Around::around(self, $crate::forward::Call::new($crate::forward::Op::CompleteUpload).with_path(dest).with_upload(&state.id), $crate::Storage::complete_upload($crate::forward::Wraps::wrapped(self), state, dest, options)).await }]
            $($own)*
        }
    };
    ([$($gen:tt)*] [$ty:ty] [$($wc:tt)*] [$($fwd:ident)*] [abort_upload $($rest:ident)*] [$($done:tt)*] $($own:tt)*) => {
        $crate::__forward_storage_around! {
            [$($gen)*] [$ty] [$($wc)*] [$($fwd)*] [$($rest)*]
            [$($done)* async fn abort_upload(&self, state: &$crate::UploadState) -> $crate::Result<()> { $crate::forward::Around::around(self, $crate::forward::Call::new($crate::forward::Op::AbortUpload).with_upload(&state.id), $crate::Storage::abort_upload($crate::forward::Wraps::wrapped(self), state)).await }]
            $($own)*
        }
    };
    ([$($gen:tt)*] [$ty:ty] [$($wc:tt)*] [$($fwd:ident)*] [cleanup_uploads $($rest:ident)*] [$($done:tt)*] $($own:tt)*) => {
        $crate::__forward_storage_around! {
            [$($gen)*] [$ty] [$($wc)*] [$($fwd)*] [$($rest)*]
            [$($done)* async fn cleanup_uploads(&self, older_than: ::std::time::Duration) -> $crate::Result<$crate::CleanupReport> { $crate::forward::Around::around(self, $crate::forward::Call::new($crate::forward::Op::CleanupUploads), $crate::Storage::cleanup_uploads($crate::forward::Wraps::wrapped(self), older_than)).await }]
            $($own)*
        }
    };
}

/// A wrapper around another storage: what [`forward_storage!`] forwards to.
pub trait Wraps {
    /// The wrapped storage.
    type Inner: crate::Storage + ?Sized;
    /// The wrapped storage of `self`.
    fn wrapped(&self) -> &Self::Inner;
}

impl<T: crate::Storage + ?Sized> Wraps for Arc<T> {
    type Inner = T;
    fn wrapped(&self) -> &T {
        self
    }
}

impl<T: crate::Storage + ?Sized> Wraps for Box<T> {
    type Inner = T;
    fn wrapped(&self) -> &T {
        self
    }
}

crate::forward_storage! {
    impl<T> Storage for Arc<T> where [T: crate::Storage + ?Sized];
    forward [driver capabilities get put_stream put stat delete delete_prefix list list_page
             copy download_url upload_url start_upload write_chunk complete_upload
             abort_upload cleanup_uploads validate metrics];
}

crate::forward_storage! {
    impl<T> Storage for Box<T> where [T: crate::Storage + ?Sized];
    forward [driver capabilities get put_stream put stat delete delete_prefix list list_page
             copy download_url upload_url start_upload write_chunk complete_upload
             abort_upload cleanup_uploads validate metrics];
}

/// A wrapper that does something around the methods listed after `around`
/// in [`forward_storage!`]: each such method builds a [`Call`], starts the
/// wrapped storage's method (`run`, not yet polled) and awaits what
/// `around` returns.
///
/// `around` may await `run` once (timing it, holding a permit, racing it
/// against a timer) or drop it unpolled (refusing the call). A method whose
/// result carries a stream (`get`) or whose data is a stream the wrapper
/// wants to watch (`put_stream`, `write_chunk`) is better written by hand,
/// next to the lists.
pub trait Around {
    /// Runs one call of the wrapped storage.
    fn around<'a, T: Outcome + 'a>(
        &'a self,
        call: Call<'a>,
        run: BoxFuture<'a, Result<T>>,
    ) -> BoxFuture<'a, Result<T>>;
}

/// A [`Storage`](crate::Storage) operation, as layers name it in spans,
/// metric labels and errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Op {
    /// [`Storage::get`](crate::Storage::get).
    Get,
    /// [`Storage::put_stream`](crate::Storage::put_stream).
    PutStream,
    /// [`Storage::put`](crate::Storage::put).
    Put,
    /// [`Storage::stat`](crate::Storage::stat).
    Stat,
    /// [`Storage::delete`](crate::Storage::delete).
    Delete,
    /// [`Storage::delete_prefix`](crate::Storage::delete_prefix).
    DeletePrefix,
    /// [`Storage::list`](crate::Storage::list).
    List,
    /// [`Storage::list_page`](crate::Storage::list_page).
    ListPage,
    /// [`Storage::copy`](crate::Storage::copy).
    Copy,
    /// [`Storage::download_url`](crate::Storage::download_url).
    DownloadUrl,
    /// [`Storage::upload_url`](crate::Storage::upload_url).
    UploadUrl,
    /// [`Storage::start_upload`](crate::Storage::start_upload).
    StartUpload,
    /// [`Storage::write_chunk`](crate::Storage::write_chunk).
    WriteChunk,
    /// [`Storage::complete_upload`](crate::Storage::complete_upload).
    CompleteUpload,
    /// [`Storage::abort_upload`](crate::Storage::abort_upload).
    AbortUpload,
    /// [`Storage::cleanup_uploads`](crate::Storage::cleanup_uploads).
    CleanupUploads,
}

impl Op {
    /// The method's name (`get`, `put_stream`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::PutStream => "put_stream",
            Self::Put => "put",
            Self::Stat => "stat",
            Self::Delete => "delete",
            Self::DeletePrefix => "delete_prefix",
            Self::List => "list",
            Self::ListPage => "list_page",
            Self::Copy => "copy",
            Self::DownloadUrl => "download_url",
            Self::UploadUrl => "upload_url",
            Self::StartUpload => "start_upload",
            Self::WriteChunk => "write_chunk",
            Self::CompleteUpload => "complete_upload",
            Self::AbortUpload => "abort_upload",
            Self::CleanupUploads => "cleanup_uploads",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One call handed to [`Around::around`]: the operation and what is known
/// about it before it runs (paths, never data or secrets).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Call<'a> {
    /// The operation.
    pub op: Op,
    /// The object (`get`, `put`, `stat`, ...), the source of a `copy`, the
    /// destination of `complete_upload`, the prefix of `delete_prefix` and
    /// `list_page`.
    pub path: Option<&'a StoragePath>,
    /// The destination of a `copy`.
    pub to: Option<&'a StoragePath>,
    /// The upload's id (`write_chunk`, `complete_upload`, `abort_upload`).
    pub upload: Option<&'a str>,
    /// The bytes handed in, when known before the call (`put`; the size
    /// hint of `put_stream`).
    pub size: Option<u64>,
    /// The offset of a `write_chunk`.
    pub offset: Option<u64>,
    /// The range of a `get`.
    pub range: Option<ByteRange>,
}

impl<'a> Call<'a> {
    /// A call of `op` with nothing else known.
    pub fn new(op: Op) -> Self {
        Self {
            op,
            path: None,
            to: None,
            upload: None,
            size: None,
            offset: None,
            range: None,
        }
    }

    /// Sets the path.
    pub fn with_path(mut self, path: &'a StoragePath) -> Self {
        self.path = Some(path);
        self
    }

    /// Sets the path to a listing's prefix (`None`: everything).
    pub fn with_prefix(mut self, prefix: Option<&'a StoragePath>) -> Self {
        self.path = prefix;
        self
    }

    /// Sets the destination of a copy.
    pub fn with_to(mut self, to: &'a StoragePath) -> Self {
        self.to = Some(to);
        self
    }

    /// Sets the upload id.
    pub fn with_upload(mut self, id: &'a str) -> Self {
        self.upload = Some(id);
        self
    }

    /// Sets the size handed in (`None`: unknown).
    pub fn with_size(mut self, size: Option<u64>) -> Self {
        self.size = size;
        self
    }

    /// Sets the offset of a chunk.
    pub fn with_offset(mut self, offset: u64) -> Self {
        self.offset = Some(offset);
        self
    }

    /// Sets the range read (`None`: the whole object).
    pub fn with_range(mut self, range: Option<ByteRange>) -> Self {
        self.range = range;
        self
    }
}

/// What a [`Storage`](crate::Storage) method returns, as [`Around::around`]
/// sees it: a size and a count where the result has them, for spans and
/// metrics.
pub trait Outcome: Send {
    /// The size the result reports: the object's (`stat`, `put`, `copy`,
    /// `complete_upload`), the range's (`get`), the upload's so far
    /// (`start_upload`, `write_chunk`).
    fn size(&self) -> Option<u64> {
        None
    }

    /// How many things the result counts: entries of a page, objects
    /// deleted by `delete_prefix`, uploads removed by `cleanup_uploads`.
    fn count(&self) -> Option<u64> {
        None
    }
}

impl Outcome for ObjectMeta {
    fn size(&self) -> Option<u64> {
        Some(self.size)
    }
}

impl Outcome for GetResult {
    fn size(&self) -> Option<u64> {
        Some(self.range.end.saturating_sub(self.range.start))
    }
}

impl Outcome for UploadState {
    fn size(&self) -> Option<u64> {
        Some(self.size)
    }
}

impl Outcome for ListPage {
    fn count(&self) -> Option<u64> {
        Some(self.len() as u64)
    }
}

impl Outcome for u64 {
    fn count(&self) -> Option<u64> {
        Some(*self)
    }
}

impl Outcome for CleanupReport {
    fn count(&self) -> Option<u64> {
        Some(self.uploads_removed)
    }
}

impl Outcome for () {}

impl Outcome for Option<DirectUrl> {}

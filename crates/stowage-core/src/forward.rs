//! Forwarding written once: [`forward_storage!`](crate::forward_storage)
//! implements [`Storage`](crate::Storage) for a wrapper by sending the
//! methods it names to the wrapped storage, next to the methods the wrapper
//! writes itself; core uses it for `Arc<T>` and `Box<T>`, the CloudFront
//! layer for its S3 driver. The generated impl carries
//! `#[deny(clippy::missing_trait_methods)]`, so a method added to the trait
//! later must be forwarded or written by every wrapper.

use std::sync::Arc;

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
#[macro_export]
macro_rules! forward_storage {
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

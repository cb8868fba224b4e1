//! The conformance suite through a stack of all five layers around the
//! local driver (in memory), so every method is shown to go through every
//! layer to the driver and back unchanged; then what the stack adds.

use std::sync::Arc;
use std::time::Duration;

use stowage_core::layers::{
    ConcurrencyLayer, LayerExt, MetricsLayer, ReadOnlyLayer, TimeoutLayer, TracingLayer,
};
use stowage_core::Storage;
use stowage_local::LocalStorage;

/// Local storage in memory inside every layer, the last outermost (limits
/// generous enough for the suite's 256 MiB object; read-only switched
/// off).
fn stacked(read_only: &ReadOnlyLayer) -> Arc<dyn Storage> {
    (Arc::new(LocalStorage::in_memory()) as Arc<dyn Storage>)
        .layer(
            TimeoutLayer::new()
                .with_metadata(Duration::from_secs(60))
                .with_read(Duration::from_secs(60))
                .with_write(Duration::from_secs(120))
                .with_stream_idle(Duration::from_secs(60)),
        )
        .layer(ConcurrencyLayer::new(8))
        .layer(read_only)
        .layer(MetricsLayer::new())
        .layer(TracingLayer::new())
}

mod all_layers {
    use super::*;

    stowage_core::conformance_tests!(|| async {
        let read_only = ReadOnlyLayer::new();
        read_only.set(false);
        stacked(&read_only)
    });
}

mod what_the_stack_adds {
    use bytes::Bytes;
    use stowage_core::metrics::render_prometheus;
    use stowage_core::{ErrorKind, PutOptions, StorageExt, StoragePath};

    use super::*;

    #[tokio::test]
    async fn metrics_reach_prometheus_and_read_only_refuses_writes_at_run_time() {
        let read_only = ReadOnlyLayer::new();
        read_only.set(false);
        let storage = stacked(&read_only);
        let path = StoragePath::parse("blobs/stacked").unwrap();
        storage
            .put(&path, Bytes::from_static(b"stacked"), PutOptions::default())
            .await
            .unwrap();
        assert_eq!(storage.get_bytes(&path).await.unwrap(), "stacked");

        let text = render_prometheus(&storage.metrics());
        assert!(
            text.contains("# TYPE stowage_storage_operation_duration_seconds histogram\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "stowage_storage_operation_bytes_sum{driver=\"local\",operation=\"get\"} 7\n"
            ),
            "{text}"
        );

        read_only.set(true);
        let err = storage
            .put(&path, Bytes::from_static(b"new"), PutOptions::default())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
        assert!(err.to_string().contains("put of blobs/stacked"), "{err}");
        assert_eq!(storage.get_bytes(&path).await.unwrap(), "stacked");
        let report = storage.validate().await;
        assert!(report.is_ok(), "{report:?}");

        read_only.set(false);
        storage.delete(&path).await.unwrap();
        assert!(!storage.exists(&path).await.unwrap());
    }
}

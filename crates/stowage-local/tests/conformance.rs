//! The conformance suite on the local driver: on disk and in memory.

mod on_disk {
    use std::sync::Arc;
    use stowage_core::Storage;
    use stowage_local::LocalStorage;

    stowage_core::conformance_tests!(|| async {
        let dir = tempfile::tempdir().expect("tempdir").keep();
        Arc::new(LocalStorage::open(dir).expect("open")) as Arc<dyn Storage>
    });
}

mod in_memory {
    use std::sync::Arc;
    use stowage_core::Storage;
    use stowage_local::LocalStorage;

    stowage_core::conformance_tests!(|| async {
        Arc::new(LocalStorage::in_memory()) as Arc<dyn Storage>
    });
}

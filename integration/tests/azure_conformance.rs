//! The conformance suite against Azure Blob Storage (Azurite in CI), each
//! behaviour under its own random root: once signed with the account key,
//! once with a container SAS token and no key.

mod account_key {
    use stowage_integration::azure::AzureEnv;

    stowage_core::conformance_tests!(|| async { AzureEnv::get().shared("conformance") });
}

mod sas_token {
    use std::sync::Arc;

    use stowage_azure::AzureStorage;
    use stowage_core::Storage;
    use stowage_integration::azure::AzureEnv;

    stowage_core::conformance_tests!(|| async {
        let config = AzureEnv::get().sas_config("conformance-sas", "racwdl");
        Arc::new(AzureStorage::new(config).expect("driver")) as Arc<dyn Storage>
    });
}

//! The conformance suite against a real S3 server, each behaviour under its
//! own random root.

use stowage_integration::S3Env;

stowage_core::conformance_tests!(|| async { S3Env::get().shared("conformance").await });

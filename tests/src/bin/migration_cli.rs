//! The migration CLI under test: the same one call as the `migration` binary's
//! `main`, built here so the CLI tests can run it (`CARGO_BIN_EXE_migration_cli`)
//! next to the per-test databases of this crate.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    migration::cli::main().await
}

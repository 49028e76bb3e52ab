//! `migration`: the trade-engine migration CLI; see [`migration::cli`].

#[tokio::main]
async fn main() -> std::process::ExitCode {
    migration::cli::main().await
}

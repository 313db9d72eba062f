//! The `imds_exporter` binary: everything lives in the library.

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    match imds_exporter::main_with_args().await {
        Ok(code) => code,
        Err(message) => {
            eprintln!("imds_exporter: error: {message}");
            std::process::ExitCode::from(2)
        }
    }
}

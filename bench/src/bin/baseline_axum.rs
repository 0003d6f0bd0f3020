//! Baseline (a): axum answering a fixed JSON body to `POST /graphql`.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let run = async {
        let addr = bench::parse_listen_addr(std::env::var("LISTEN_ADDR").ok())?;
        bench::serve(addr, bench::fixed_router()).await
    };
    match run.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("baseline-axum: {err:#}");
            ExitCode::FAILURE
        }
    }
}

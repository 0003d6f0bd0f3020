//! Baseline (b): async-graphql answering `me { id phone inviteCode }` from memory.

use std::process::ExitCode;

use bench::MeSource;

#[tokio::main]
async fn main() -> ExitCode {
    let run = async {
        let addr = bench::parse_listen_addr(std::env::var("LISTEN_ADDR").ok())?;
        let schema = bench::schema(MeSource::Memory(bench::memory_user()));
        bench::serve(addr, bench::graphql_router(schema)).await
    };
    match run.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("baseline-graphql: {err:#}");
            ExitCode::FAILURE
        }
    }
}

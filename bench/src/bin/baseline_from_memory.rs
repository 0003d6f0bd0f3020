//! Baseline (e): the `nested` scenario's query answered from memory (`bench::from_memory`):
//! the pages and counts under `BENCH_USER_ID` are read from `DATABASE_URL` once, at start-up.

use std::process::ExitCode;

use bench::from_memory::{self, Snapshot};

#[tokio::main]
async fn main() -> ExitCode {
    let run = async {
        let (addr, db, user_id) = bench::database_settings().await?;
        let snapshot = Snapshot::load(&db, user_id).await?;
        drop(db);
        bench::serve(addr, bench::graphql_router(from_memory::schema(snapshot))).await
    };
    match run.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("baseline-from-memory: {err:#}");
            ExitCode::FAILURE
        }
    }
}

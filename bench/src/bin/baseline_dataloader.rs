//! Baseline (d): the `nested` scenario's query with a default DataLoader per item and no
//! look-ahead (`bench::per_item`), on `DATABASE_URL`; `BENCH_USER_ID` names the root user.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let run = async {
        let (addr, db, user_id) = bench::database_settings().await?;
        let schema = bench::per_item::schema(db.clone(), user_id);
        bench::serve(addr, bench::per_item_router(schema, db)).await
    };
    match run.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("baseline-dataloader: {err:#}");
            ExitCode::FAILURE
        }
    }
}

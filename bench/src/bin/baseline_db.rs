//! Baseline (c): async-graphql answering `me { id phone inviteCode }` with one SeaORM
//! primary-key read (`users::Entity::find_by_id`) per request, on `DATABASE_URL` (the real
//! server's database, opened with its own `db::connect`). `BENCH_USER_ID` names the user.

use std::process::ExitCode;

use bench::MeSource;

#[tokio::main]
async fn main() -> ExitCode {
    let run = async {
        let (addr, db, user_id) = bench::database_settings().await?;
        let schema = bench::schema(MeSource::Database { db, user_id });
        bench::serve(addr, bench::graphql_router(schema)).await
    };
    match run.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("baseline-db: {err:#}");
            ExitCode::FAILURE
        }
    }
}

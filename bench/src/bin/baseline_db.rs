//! Baseline (c): async-graphql answering `me { id phone inviteCode }` with one SeaORM
//! primary-key read (`users::Entity::find_by_id`) per request, on `DATABASE_URL` (the real
//! server's database, opened with its own `db::connect`). `BENCH_USER_ID` names the user.

use std::process::ExitCode;

use anyhow::Context;
use bench::MeSource;

#[tokio::main]
async fn main() -> ExitCode {
    let run = async {
        let env = |name: &str| std::env::var(name).ok();
        let addr = bench::parse_listen_addr(env("LISTEN_ADDR"))?;
        let url = env("DATABASE_URL").context("DATABASE_URL is required")?;
        let max_connections: u32 = env("DATABASE_MAX_CONNECTIONS")
            .map(|v| v.parse())
            .transpose()
            .context("DATABASE_MAX_CONNECTIONS")?
            .unwrap_or(10);
        let user_id: i64 = env("BENCH_USER_ID")
            .context("BENCH_USER_ID is required")?
            .parse()
            .context("BENCH_USER_ID")?;
        let db = phone_auth::db::connect(&url, max_connections)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the database: {e}"))?;
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

//! sea-orm-migration's command line for this project's migrations (`cargo run -p migration --
//! status | up | down | fresh …`). It reads `DATABASE_URL` (or `-u <url>`), and `.env`.
//!
//! The upstream command line panics when no database is named or the database cannot be opened;
//! here both are a one-line error naming what to do, with a non-zero exit.

use std::process::ExitCode;

use sea_orm_migration::{
    prelude::*,
    sea_orm::{ConnectOptions, Database},
};

#[tokio::main]
async fn main() -> ExitCode {
    // As the upstream command line does, so a DATABASE_URL in .env counts here too.
    let _ = dotenvy::dotenv();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !asks_for_help(&args) && !names_a_database(&args) {
        eprintln!(
            "migration: DATABASE_URL is not set; name the database to migrate, e.g.\n  \
             DATABASE_URL='sqlite://phone-auth.db?mode=rwc' cargo run -p migration -- status\n  \
             DATABASE_URL=postgres://postgres@127.0.0.1:5432/phone_auth cargo run -p migration -- up\n\
             (or pass -u <url>; a .env file in the working directory is read too)"
        );
        return ExitCode::from(2);
    }
    cli::run_cli_with_connection(migration::Migrator, |options: ConnectOptions| async move {
        Database::connect(options).await.map_err(|err| {
            eprintln!("migration: cannot open the database: {err}");
            std::process::exit(1)
        })
    })
    .await;
    ExitCode::SUCCESS
}

/// `--help`, `help` and `--version` need no database.
fn asks_for_help(args: &[String]) -> bool {
    args.iter()
        .any(|a| matches!(a.as_str(), "-h" | "--help" | "help" | "-V" | "--version"))
}

/// A database URL on the command line (`-u`, `--database-url`) or in the environment.
fn names_a_database(args: &[String]) -> bool {
    let in_args = args.iter().any(|a| {
        a == "-u" || a.starts_with("--database-url") || (a.starts_with("-u") && a.len() > 2)
    });
    in_args || std::env::var("DATABASE_URL").is_ok_and(|url| !url.trim().is_empty())
}

//! Connecting, migrating and checking the database (SQLite or PostgreSQL).

pub mod entities;

use std::{str::FromStr, time::Duration};

use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr, SqlxPostgresConnector,
    SqlxSqliteConnector, Statement, Value,
    sea_query::{Expr, Func, Query},
};
use sqlx::{
    postgres::{PgConnectOptions, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

/// How many rows SQLite's thread may hand over before the reading task takes them (sqlx's
/// `row_buffer_size`; its default is 50). Above what the request path's statements return
/// (a page of 101 users, counts for 201 inviters, 5-user pages of 200 inviters); a larger
/// result (a deep `invitedUsers` page, the revocation reload, the outbox's retire) only goes
/// back to the hand-over by turns past this point. The channel grows only as rows arrive, so
/// the cap costs no memory up front.
const ROW_BUFFER: usize = 4096;

/// Opens a pool for `url`. SQLite files get WAL, `synchronous=NORMAL` and a busy timeout, so
/// readers never block the writer and brief write contention waits instead of failing.
/// An in-memory SQLite database lives in one connection, so its pool holds exactly one.
pub async fn connect(url: &str, max_connections: u32) -> Result<DatabaseConnection, DbErr> {
    // sqlx's own default for SQLite (30 s): a busy file database queues rather than fails.
    let acquire_timeout = Duration::from_secs(if url.starts_with("sqlite:") { 30 } else { 5 });
    connect_with(url, max_connections, acquire_timeout).await
}

/// [`connect`], with how long a statement may wait for a pooled connection (or for a new one
/// while the database is unreachable) before it fails.
pub async fn connect_with(
    url: &str,
    max_connections: u32,
    acquire_timeout: Duration,
) -> Result<DatabaseConnection, DbErr> {
    let max_connections = max_connections.max(1);
    if url.starts_with("sqlite:") {
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| DbErr::Custom(format!("invalid DATABASE_URL: {e}")))?
            .create_if_missing(true)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5))
            // Rows cross from SQLite's thread to the request's task through a bounded channel
            // (sqlx's default holds 50). Every caller collects all rows anyway (`fetch_all`),
            // so a full channel only makes the two threads take turns row by row: two context
            // switches per row beyond the 50th, which on one core cost more than reading them.
            .row_buffer_size(ROW_BUFFER);
        let options = if in_memory {
            options
        } else {
            options
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
        };
        let pool = SqlitePoolOptions::new()
            .max_connections(if in_memory { 1 } else { max_connections })
            .acquire_timeout(acquire_timeout)
            .min_connections(if in_memory { 1 } else { 0 })
            // An in-memory database dies with its last connection: never let it go idle.
            .idle_timeout(if in_memory {
                None
            } else {
                Some(Duration::from_secs(600))
            })
            .max_lifetime(if in_memory {
                None
            } else {
                Some(Duration::from_secs(1800))
            })
            .connect_with(options)
            .await
            .map_err(|e| DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e.into())))?;
        Ok(count_statements(
            SqlxSqliteConnector::from_sqlx_sqlite_pool(pool),
        ))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| DbErr::Custom(format!("invalid DATABASE_URL: {e}")))?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(acquire_timeout)
            .connect_with(options)
            .await
            .map_err(|e| DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e.into())))?;
        Ok(count_statements(
            SqlxPostgresConnector::from_sqlx_postgres_pool(pool),
        ))
    } else {
        Err(DbErr::Custom(
            "DATABASE_URL must start with sqlite: or postgres:".into(),
        ))
    }
}

/// Every statement run through SeaORM increments `db_statements_total` (and failures
/// `db_statement_errors_total`): the benchmark divides it by requests served.
/// With OpenTelemetry on, each also becomes a span of the request that ran it (the SQL with its
/// placeholders, never the bound values).
fn count_statements(mut db: DatabaseConnection) -> DatabaseConnection {
    let traced = crate::otel::on();
    let backend = db.get_database_backend();
    db.set_metric_callback(move |info| {
        metrics::counter!("db_statements_total").increment(1);
        if info.failed {
            metrics::counter!("db_statement_errors_total").increment(1);
        }
        if traced {
            crate::otel::sql_span(backend, &info.statement.sql, info.elapsed, info.failed);
        }
    });
    db
}

pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    Migrator::up(db, None).await
}

/// `SELECT 1` (the 1 bound as a value), for `/readyz`.
pub async fn ping(db: &DatabaseConnection) -> Result<(), DbErr> {
    db.execute(&Query::select().expr(Expr::val(1)).to_owned())
        .await
        .map(|_| ())
}

/// `SELECT pg_notify(channel, payload)`: how instances sharing a PostgreSQL database tell each
/// other (invite activations, revoked sessions). The send takes effect when `conn` commits.
pub async fn notify(
    conn: &impl ConnectionTrait,
    channel: &str,
    payload: String,
) -> Result<(), DbErr> {
    let notify = Query::select()
        .expr(Func::cust("pg_notify").arg(channel).arg(payload))
        .to_owned();
    conn.execute(&notify).await.map(|_| ())
}

/// A statement written with `?` placeholders, numbered `$1, $2, …` for PostgreSQL. For the one
/// query the builder cannot express (`services::users::invitees_of`, the per-inviter pages); the
/// SQL must hold no other `?`.
pub fn raw(backend: DatabaseBackend, sql: &str, values: Vec<Value>) -> Statement {
    let sql = match backend {
        DatabaseBackend::Postgres => {
            let mut out = String::with_capacity(sql.len() + 8);
            let mut n = 0;
            for ch in sql.chars() {
                if ch == '?' {
                    n += 1;
                    out.push('$');
                    out.push_str(&n.to_string());
                } else {
                    out.push(ch);
                }
            }
            out
        }
        _ => sql.to_owned(),
    };
    Statement::from_sql_and_values(backend, sql, values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::cursor::MAX_PAGE;

    // A page is read with one row beyond it (to know whether there is a next page); a page's
    // rows and its inviters' counts come back in one statement each.
    const _: () = assert!(ROW_BUFFER > 2 * (MAX_PAGE as usize + 1));

    /// With sqlx's default of 50, SQLite's thread and the reading task took turns row by row
    /// once the channel was full: ~185 context switches per `nested` request instead of ~26
    /// (docs/performance.md). The setting must reach every connection of the pool.
    #[tokio::test]
    async fn sqlite_hands_a_whole_page_of_rows_over_at_once() {
        let db = connect("sqlite::memory:", 1)
            .await
            .expect("in-memory SQLite");
        let conn = db
            .get_sqlite_connection_pool()
            .acquire()
            .await
            .expect("a connection");
        let shown = format!("{:?}", &*conn);
        assert!(
            shown.contains(&format!("row_channel_size: {ROW_BUFFER},")),
            "{shown}"
        );
    }
}

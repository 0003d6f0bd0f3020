//! Users: lookup, creation on first sign-in, the admin list, and the batched queries behind
//! `invitedUsers` / `totalCount`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseBackend, EntityTrait, FromQueryResult,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Statement,
    sea_query::{OnConflict, Query},
};

use crate::{
    db::{
        self,
        entities::users::{self, Column},
    },
    domain::{cursor::Position, invite_code::InviteCode, phone::Phone},
    error::{AppError, AppResult},
    state::AppState,
};

/// Collisions need 31^6 ≈ 8.9e8 codes to get likely; eight draws in a row colliding means
/// something else is wrong.
const INVITE_CODE_ATTEMPTS: usize = 8;

/// The user with primary key `id`, if any.
///
/// The statement is a constant, not built with the query builder per call: this read is the
/// whole database cost of `me`, the request every app screen makes, and building it through
/// sea-query (identifiers quoted and written one by one, a `LIMIT` bound) cost more CPU than
/// SQLite spent running it. One statement, as before; a primary-key lookup returns at most one
/// row without a `LIMIT`.
pub async fn find(conn: &impl ConnectionTrait, id: i64) -> AppResult<Option<users::Model>> {
    let backend = conn.get_database_backend();
    let sql = match backend {
        DatabaseBackend::Postgres => FIND_BY_ID_POSTGRES,
        _ => FIND_BY_ID_SQLITE,
    };
    Ok(
        users::Model::find_by_statement(Statement::from_sql_and_values(backend, sql, [id.into()]))
            .one(conn)
            .await?,
    )
}

/// Every column of `users::Model`, by primary key (`find`).
const FIND_BY_ID_POSTGRES: &str = r#"SELECT "id", "phone", "invite_code", "invited_by_id", "activated_invite_code", "activated_at", "created_at" FROM "users" WHERE "id" = $1"#;
const FIND_BY_ID_SQLITE: &str = r#"SELECT "id", "phone", "invite_code", "invited_by_id", "activated_invite_code", "activated_at", "created_at" FROM "users" WHERE "id" = ?"#;

/// The user an access token names; UNAUTHENTICATED when that user was deleted since.
pub async fn signed_in(conn: &impl ConnectionTrait, id: i64) -> AppResult<users::Model> {
    find(conn, id).await?.ok_or_else(AppError::user_gone)
}

/// The signed-in user (`caller`, from [`signed_in`]), when their phone is one of
/// `ADMIN_PHONES`; FORBIDDEN otherwise.
pub fn admin(state: &AppState, caller: users::Model) -> AppResult<users::Model> {
    if state.config.admin_phones.contains(caller.phone.as_str()) {
        Ok(caller)
    } else {
        Err(AppError::Forbidden)
    }
}

/// The user for `phone`, created (with a fresh invite code) if this is their first sign-in.
/// Returns the user and whether it was created. Race-safe: `INSERT … ON CONFLICT DO NOTHING`
/// against the unique phone and invite-code indexes, never check-then-insert.
pub async fn find_or_create(
    conn: &impl ConnectionTrait,
    phone: &Phone,
    now: DateTime<Utc>,
) -> AppResult<(users::Model, bool)> {
    for _ in 0..INVITE_CODE_ATTEMPTS {
        let code = InviteCode::generate();
        let insert = Query::insert()
            .into_table(users::Entity)
            .columns([Column::Phone, Column::InviteCode, Column::CreatedAt])
            .values_panic([phone.as_str().into(), code.as_str().into(), now.into()])
            .on_conflict(OnConflict::new().do_nothing().to_owned())
            .returning_all()
            .to_owned();
        if let Some(row) = conn.query_one(&insert).await? {
            return Ok((users::Model::from_query_result(&row, "")?, true));
        }
        // Nothing inserted: either the phone exists (a returning user) or the invite code
        // collided (draw again).
        if let Some(user) = users::Entity::find()
            .filter(Column::Phone.eq(phone.as_str()))
            .one(conn)
            .await?
        {
            return Ok((user, false));
        }
    }
    Err(AppError::internal(anyhow::anyhow!(
        "could not draw a free invite code"
    )))
}

/// Users newest first (by creation, then id), for admins: up to `first` after the cursor, and
/// whether more follow.
pub async fn page_all(
    conn: &impl ConnectionTrait,
    first: u64,
    after: Option<Position>,
) -> AppResult<(Vec<users::Model>, bool)> {
    let mut query = users::Entity::find()
        .order_by_desc(Column::CreatedAt)
        .order_by_desc(Column::Id)
        .limit(first + 1);
    if let Some(after) = after {
        query = query.filter(
            Condition::any().add(Column::CreatedAt.lt(after.at)).add(
                Condition::all()
                    .add(Column::CreatedAt.eq(after.at))
                    .add(Column::Id.lt(after.id)),
            ),
        );
    }
    Ok(split_page(query.all(conn).await?, first))
}

pub async fn count_all(conn: &impl ConnectionTrait) -> AppResult<i64> {
    Ok(users::Entity::find().count(conn).await? as i64)
}

/// Keeps `first` rows and reports whether there was one more.
pub fn split_page(mut rows: Vec<users::Model>, first: u64) -> (Vec<users::Model>, bool) {
    let has_next = rows.len() as u64 > first;
    rows.truncate(first as usize);
    (rows, has_next)
}

/// Inviters per statement in [`invitees_of`]: SQLite allows 500 terms in a compound SELECT.
const INVITERS_PER_STATEMENT: usize = 200;

/// For each inviter, up to `limit` of their invitees after the cursor, in activation order
/// (then id). Each inviter's page is its own `ORDER BY … LIMIT`, which the
/// `(invited_by_id, activated_at, id)` index answers by reading just those rows — ranking all
/// of an inviter's invitees with a window function instead costs a thousand rows for a page of
/// a hundred. One statement for up to 200 inviters: a `LATERAL` join on PostgreSQL, a
/// `UNION ALL` of the pages on SQLite (which has no `LATERAL`).
pub async fn invitees_of(
    conn: &impl ConnectionTrait,
    inviter_ids: &[i64],
    limit: u64,
    after: Option<Position>,
) -> AppResult<HashMap<i64, Vec<users::Model>>> {
    let backend = conn.get_database_backend();
    let after_clause = match after {
        Some(_) => "AND (activated_at > ? OR (activated_at = ? AND id > ?))",
        None => "",
    };
    let page = |inviter: &str| {
        format!(
            "SELECT id, phone, invite_code, invited_by_id, activated_invite_code, activated_at, \
             created_at FROM users WHERE invited_by_id = {inviter} {after_clause} \
             ORDER BY activated_at, id LIMIT ?"
        )
    };
    // The values one page's `after_clause` and `LIMIT` bind, in order.
    let page_values = || {
        let mut values: Vec<sea_orm::Value> = Vec::with_capacity(4);
        if let Some(after) = after {
            values.extend([after.at.into(), after.at.into(), after.id.into()]);
        }
        values.push((limit as i64).into());
        values
    };

    let mut grouped: HashMap<i64, Vec<users::Model>> = HashMap::new();
    for chunk in inviter_ids.chunks(INVITERS_PER_STATEMENT) {
        let (sql, values) = match (chunk, backend) {
            ([inviter], _) => {
                let mut values = vec![(*inviter).into()];
                values.extend(page_values());
                (page("?"), values)
            }
            (_, DatabaseBackend::Postgres) => {
                let mut values: Vec<sea_orm::Value> = chunk.iter().map(|id| (*id).into()).collect();
                values.extend(page_values());
                let inviters = vec!["(CAST(? AS BIGINT))"; chunk.len()].join(", ");
                let sql = format!(
                    "SELECT p.* FROM (VALUES {inviters}) AS i(id) CROSS JOIN LATERAL ({}) p",
                    page("i.id")
                );
                (sql, values)
            }
            _ => {
                let mut values = Vec::with_capacity(chunk.len() * 5);
                for inviter in chunk {
                    values.push((*inviter).into());
                    values.extend(page_values());
                }
                let one = format!("SELECT * FROM ({})", page("?"));
                (vec![one; chunk.len()].join(" UNION ALL "), values)
            }
        };
        // Raw SQL: sea-query writes each UNION member in parentheses, which SQLite refuses, and
        // has no `CROSS JOIN LATERAL` over a `VALUES` list with named columns (`AS i(id)`).
        let rows = users::Entity::find()
            .from_raw_sql(db::raw(backend, &sql, values))
            .all(conn)
            .await?;
        for row in rows {
            if let Some(inviter) = row.invited_by_id {
                grouped.entry(inviter).or_default().push(row);
            }
        }
    }
    // Neither a lateral join nor a union promises the order of its rows across pages.
    for rows in grouped.values_mut() {
        rows.sort_by_key(|row| (row.activated_at, row.id));
    }
    Ok(grouped)
}

/// How many users activated each inviter's code: one `GROUP BY` for any number of inviters.
pub async fn invitee_counts(
    conn: &impl ConnectionTrait,
    inviter_ids: &[i64],
) -> AppResult<HashMap<i64, i64>> {
    if inviter_ids.is_empty() {
        return Ok(HashMap::new());
    }
    #[derive(FromQueryResult)]
    struct Row {
        invited_by_id: i64,
        n: i64,
    }
    let rows = users::Entity::find()
        .select_only()
        .column(Column::InvitedById)
        .column_as(Column::Id.count(), "n")
        .filter(Column::InvitedById.is_in(inviter_ids.iter().copied()))
        .group_by(Column::InvitedById)
        .into_model::<Row>()
        .all(conn)
        .await?;
    Ok(rows.into_iter().map(|r| (r.invited_by_id, r.n)).collect())
}

#[cfg(test)]
mod find_tests {
    use sea_orm::{IdenStatic, Iterable};

    use super::*;

    /// `find`'s constant statements select exactly the entity's columns, in its order.
    #[test]
    fn find_selects_every_column_of_the_entity() {
        let list = Column::iter()
            .map(|column| format!("\"{}\"", column.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        for (sql, placeholder) in [(FIND_BY_ID_POSTGRES, "$1"), (FIND_BY_ID_SQLITE, "?")] {
            assert_eq!(
                sql,
                format!("SELECT {list} FROM \"users\" WHERE \"id\" = {placeholder}")
            );
        }
    }
}

//! Users: lookup, creation on first sign-in, the admin list, and the batched queries behind
//! `invitedUsers` / `totalCount`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, FromQueryResult, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect,
    sea_query::{OnConflict, Query},
};

use crate::{
    db::{
        self,
        entities::users::{self, Column},
    },
    domain::{cursor::Position, invite_code::InviteCode, phone::Phone},
    error::{AppError, AppResult},
};

/// Collisions need 31^6 ≈ 8.9e8 codes to get likely; eight draws in a row colliding means
/// something else is wrong.
const INVITE_CODE_ATTEMPTS: usize = 8;

pub async fn find(conn: &impl ConnectionTrait, id: i64) -> AppResult<Option<users::Model>> {
    Ok(users::Entity::find_by_id(id).one(conn).await?)
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
        let backend = conn.get_database_backend();
        if let Some(row) = conn.query_one(backend.build(&insert)).await? {
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

/// For each inviter, up to `limit` of their invitees after the cursor, in activation order
/// (then id): one query for any number of inviters (a window function ranks rows per inviter).
pub async fn invitees_of(
    conn: &impl ConnectionTrait,
    inviter_ids: &[i64],
    limit: u64,
    after: Option<Position>,
) -> AppResult<HashMap<i64, Vec<users::Model>>> {
    let mut grouped: HashMap<i64, Vec<users::Model>> = HashMap::new();
    if inviter_ids.is_empty() {
        return Ok(grouped);
    }
    let mut values: Vec<sea_orm::Value> = inviter_ids.iter().map(|id| (*id).into()).collect();
    let after_clause = match after {
        Some(after) => {
            values.extend([after.at.into(), after.at.into(), after.id.into()]);
            "AND (u.activated_at > ? OR (u.activated_at = ? AND u.id > ?))"
        }
        None => "",
    };
    values.push((limit as i64).into());
    let sql = format!(
        "SELECT id, phone, invite_code, invited_by_id, activated_invite_code, activated_at, created_at \
         FROM (SELECT u.*, ROW_NUMBER() OVER (PARTITION BY u.invited_by_id ORDER BY u.activated_at, u.id) AS rn \
               FROM users u WHERE u.invited_by_id IN ({}) {after_clause}) ranked \
         WHERE rn <= ? ORDER BY invited_by_id, activated_at, id",
        db::placeholders(inviter_ids.len())
    );
    let rows = users::Entity::find()
        .from_raw_sql(db::raw(conn.get_database_backend(), &sql, values))
        .all(conn)
        .await?;
    for row in rows {
        if let Some(inviter) = row.invited_by_id {
            grouped.entry(inviter).or_default().push(row);
        }
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

//! Activating someone else's invite code: it must exist, must not be one's own, and a user
//! activates at most once — enforced by one conditional UPDATE, not a read before the write.

use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter, sea_query::Query,
};

use crate::{
    db::entities::users::{self, Column},
    domain::invite_code::InviteCode,
    error::{AppError, AppResult},
    events::InviteActivated,
    state::AppState,
};

#[tracing::instrument(skip_all, fields(user_id))]
pub async fn activate_invite(
    state: &AppState,
    user_id: i64,
    code: InviteCode,
) -> AppResult<users::Model> {
    let owner = users::Entity::find()
        .filter(Column::InviteCode.eq(code.as_str()))
        .one(&state.db)
        .await?
        .ok_or(AppError::InviteCodeNotFound)?;
    if owner.id == user_id {
        return Err(AppError::SelfInvite);
    }
    let now = state.clock.now();
    let update = Query::update()
        .table(users::Entity)
        .values([
            (Column::InvitedById, owner.id.into()),
            (Column::ActivatedInviteCode, code.as_str().into()),
            (Column::ActivatedAt, now.into()),
        ])
        .and_where(Column::Id.eq(user_id))
        .and_where(Column::InvitedById.is_null())
        .and_where(Column::ActivatedInviteCode.is_null())
        .returning_all()
        .to_owned();
    match state.db.query_one(&update).await? {
        Some(row) => {
            let user = users::Model::from_query_result(&row, "")?;
            state
                .invite_events
                .publish(
                    &state.db,
                    InviteActivated {
                        inviter_id: owner.id,
                        invitee_id: user.id,
                    },
                )
                .await;
            tracing::info!(inviter_id = owner.id, "invite activated");
            Ok(user)
        }
        None => {
            let me = users::Entity::find_by_id(user_id).one(&state.db).await?;
            match me.and_then(|me| me.activated_invite_code) {
                Some(activated_invite_code) => Err(AppError::InviteAlreadyActivated {
                    activated_invite_code,
                }),
                None => Err(AppError::user_gone()),
            }
        }
    }
}

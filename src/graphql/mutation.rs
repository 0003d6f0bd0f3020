use async_graphql::{Context, ID, Object};

use super::{
    types::{AuthPayload, RequestCodePayload, User},
    viewer::{ClientIp, UserAgent, Viewer},
};
use crate::{
    domain::{invite_code::InviteCode, otp_code::OtpCode, phone::Phone},
    services::{account, invites, otp, phone_change, sessions, tokens},
    state::AppState,
};

pub struct MutationRoot;

#[Object(name = "Mutation")]
impl MutationRoot {
    /// Start sign-in: normalise the phone, create and send a one-time code.
    async fn request_code(
        &self,
        ctx: &Context<'_>,
        phone: String,
    ) -> async_graphql::Result<RequestCodePayload> {
        let state = ctx.data_unchecked::<AppState>();
        let phone = Phone::parse(&phone, state.config.default_region)?;
        let ip = ctx.data_unchecked::<ClientIp>().0;
        Ok(otp::request_code(state, phone, ip).await?.into())
    }

    /// Finish sign-in: check the code; the first success creates the user with a fresh invite code.
    async fn verify_code(
        &self,
        ctx: &Context<'_>,
        phone: String,
        code: String,
    ) -> async_graphql::Result<AuthPayload> {
        let state = ctx.data_unchecked::<AppState>();
        let phone = Phone::parse(&phone, state.config.default_region)?;
        let code = OtpCode::parse(&code, state.config.otp.length)?;
        let ip = ctx.data_unchecked::<ClientIp>().0;
        let user_agent = ctx.data_opt::<UserAgent>().and_then(|ua| ua.0.as_deref());
        Ok(otp::verify_code(state, phone, code, ip, user_agent)
            .await?
            .into())
    }

    /// Trade a refresh token for a new pair; the old refresh token stops working (rotation).
    async fn refresh_token(
        &self,
        ctx: &Context<'_>,
        refresh_token: String,
    ) -> async_graphql::Result<AuthPayload> {
        let state = ctx.data_unchecked::<AppState>();
        Ok(sessions::refresh(state, &refresh_token).await?.into())
    }

    /// Revoke a refresh token (and with it, that sign-in). Always true for a token that was valid.
    async fn logout(
        &self,
        ctx: &Context<'_>,
        refresh_token: String,
    ) -> async_graphql::Result<bool> {
        Ok(tokens::logout(ctx.data_unchecked::<AppState>(), &refresh_token).await?)
    }

    /// Enter another user's invite code. Once per user, never one's own.
    async fn activate_invite(
        &self,
        ctx: &Context<'_>,
        invite_code: String,
    ) -> async_graphql::Result<User> {
        let user_id = ctx.data_unchecked::<Viewer>().user_id()?;
        let code = InviteCode::parse(&invite_code)?;
        let state = ctx.data_unchecked::<AppState>();
        Ok(User(invites::activate_invite(state, user_id, code).await?))
    }

    /// Revoke every sign-in (all refresh-token families) of the caller. Returns how many were revoked.
    async fn logout_all(&self, ctx: &Context<'_>) -> async_graphql::Result<i32> {
        let user_id = ctx.data_unchecked::<Viewer>().user_id()?;
        Ok(tokens::logout_all(ctx.data_unchecked::<AppState>(), user_id).await?)
    }

    /// Revoke one of the caller's sign-ins. False when it was not live or not theirs.
    async fn revoke_session(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<bool> {
        let user_id = ctx.data_unchecked::<Viewer>().user_id()?;
        let state = ctx.data_unchecked::<AppState>();
        Ok(tokens::revoke_session(state, user_id, &id).await?)
    }

    /// Send a code to a new phone for the caller; every send rule applies to the new phone.
    async fn request_phone_change(
        &self,
        ctx: &Context<'_>,
        phone: String,
    ) -> async_graphql::Result<RequestCodePayload> {
        let caller = ctx.data_unchecked::<Viewer>().access()?;
        let state = ctx.data_unchecked::<AppState>();
        let phone = Phone::parse(&phone, state.config.default_region)?;
        let ip = ctx.data_unchecked::<ClientIp>().0;
        Ok(
            phone_change::request_phone_change(state, &caller, phone, ip)
                .await?
                .into(),
        )
    }

    /// Move the caller to the new phone once its code checks out (same attempt rules as verifyCode).
    /// PHONE_TAKEN when another user has it. The old phone gets an SMS saying the number changed.
    async fn confirm_phone_change(
        &self,
        ctx: &Context<'_>,
        phone: String,
        code: String,
    ) -> async_graphql::Result<User> {
        let caller = ctx.data_unchecked::<Viewer>().access()?;
        let state = ctx.data_unchecked::<AppState>();
        let phone = Phone::parse(&phone, state.config.default_region)?;
        let code = OtpCode::parse(&code, state.config.otp.length)?;
        let ip = ctx.data_unchecked::<ClientIp>().0;
        Ok(User(
            phone_change::confirm_phone_change(state, &caller, phone, code, ip).await?,
        ))
    }

    /// Delete the caller: the user row, sign-ins, pending codes and queued SMS. Needs a sign-in whose
    /// verifyCode is younger than REAUTH_MAX_AGE_SECONDS (default 300); otherwise FORBIDDEN with
    /// reason REAUTHENTICATION_REQUIRED. Invitees keep their activatedInviteCode and still cannot
    /// activate another; the phone may sign up again as a new user with a new invite code. Rate-limit
    /// history of the phone is kept.
    async fn delete_account(&self, ctx: &Context<'_>) -> async_graphql::Result<bool> {
        let caller = ctx.data_unchecked::<Viewer>().access()?;
        Ok(account::delete_account(ctx.data_unchecked::<AppState>(), &caller).await?)
    }
}

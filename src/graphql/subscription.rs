use async_graphql::{Context, Subscription};
use futures_util::{StreamExt, stream::BoxStream};
use tokio_stream::wrappers::BroadcastStream;

use super::{types::User, viewer::Viewer};
use crate::{services::users, state::AppState};

pub struct SubscriptionRoot;

#[Subscription(name = "Subscription")]
impl SubscriptionRoot {
    /// Fires for the signed-in user each time someone activates their invite code (graphql-transport-ws;
    /// the access token goes in connection_init's payload as {"Authorization": "Bearer …"}).
    async fn invited_user_joined(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<BoxStream<'static, User>> {
        let me = ctx.data_unchecked::<Viewer>().user_id()?;
        let state = ctx.data_unchecked::<AppState>().clone();
        let events = BroadcastStream::new(state.invite_events.subscribe().await);
        Ok(events
            .filter_map(move |event| {
                let state = state.clone();
                async move {
                    let event = event.ok().filter(|e| e.inviter_id == me)?;
                    match users::find(&state.db, event.invitee_id).await {
                        Ok(Some(user)) => Some(User(user)),
                        Ok(None) => None,
                        Err(err) => {
                            tracing::error!(error = ?err, "loading a new invitee for a subscription failed");
                            None
                        }
                    }
                }
            })
            .boxed())
    }
}

use async_graphql::{ID, SimpleObject};
use chrono::{DateTime, Utc};

use crate::services::sessions::SessionInfo;

/// One sign-in of the caller.
#[derive(SimpleObject)]
pub struct Session {
    pub id: ID,
    pub created_at: DateTime<Utc>,
    /// When the sign-in last got tokens (verifyCode or refreshToken).
    pub last_used_at: DateTime<Utc>,
    /// User-Agent of the request that created it, at most 200 characters.
    pub user_agent: Option<String>,
    /// True for the sign-in of the access token making this request.
    pub current: bool,
}

impl Session {
    pub fn new(info: SessionInfo, current_id: &str) -> Self {
        Self {
            current: info.id == current_id,
            id: ID(info.id),
            created_at: info.created_at,
            last_used_at: info.last_used_at,
            user_agent: info.user_agent,
        }
    }
}

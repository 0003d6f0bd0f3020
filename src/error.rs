//! One error type for the whole API. Each variant is one `extensions.code` of the contract
//! (`shared/API.md`); `Display` is the sentence a person reads. Everything unexpected is
//! `Internal`: its cause is logged once (in `http::graphql`) and never sent to the client.

use async_graphql::{ErrorExtensions, Value};

/// Values of the `reason` extension.
pub mod reason {
    /// BAD_USER_INPUT on `phone`: the number's type may not receive codes
    /// (`SMS_ALLOWED_NUMBER_TYPES`).
    pub const UNSUPPORTED_NUMBER_TYPE: &str = "UNSUPPORTED_NUMBER_TYPE";
}

/// A whole document refused before anything runs (a rule over the document rather than a
/// field), as BAD_USER_INPUT at `pos`: `graphql::sensitive_fields`, `scalar_variables`,
/// `expanded_fields`.
pub fn document_refused(
    message: impl Into<String>,
    pos: async_graphql::Pos,
) -> async_graphql::ServerError {
    let mut error = async_graphql::ServerError::new(message, Some(pos));
    error
        .extensions
        .get_or_insert_with(Default::default)
        .set("code", code::BAD_USER_INPUT);
    error
}

pub mod code {
    pub const BAD_USER_INPUT: &str = "BAD_USER_INPUT";
    pub const INVALID_CODE: &str = "INVALID_CODE";
    pub const CODE_EXPIRED: &str = "CODE_EXPIRED";
    pub const RATE_LIMITED: &str = "RATE_LIMITED";
    pub const UNAUTHENTICATED: &str = "UNAUTHENTICATED";
    pub const FORBIDDEN: &str = "FORBIDDEN";
    pub const INVITE_CODE_NOT_FOUND: &str = "INVITE_CODE_NOT_FOUND";
    pub const INVITE_ALREADY_ACTIVATED: &str = "INVITE_ALREADY_ACTIVATED";
    pub const SELF_INVITE: &str = "SELF_INVITE";
    pub const PHONE_TAKEN: &str = "PHONE_TAKEN";
    pub const INTERNAL_SERVER_ERROR: &str = "INTERNAL_SERVER_ERROR";
    /// Apollo's automatic persisted queries: the hash is unknown here; send the document too.
    pub const PERSISTED_QUERY_NOT_FOUND: &str = "PERSISTED_QUERY_NOT_FOUND";
    /// This kind of request is not accepted: an unknown persisted-query version, or, with
    /// `PERSISTED_OPERATIONS_ONLY`, a document outside the manifest.
    pub const PERSISTED_QUERY_NOT_SUPPORTED: &str = "PERSISTED_QUERY_NOT_SUPPORTED";
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{message}")]
    BadUserInput {
        field: &'static str,
        message: String,
        /// A machine-readable refinement (`UNSUPPORTED_NUMBER_TYPE`), sent as `reason`.
        reason: Option<&'static str>,
    },
    #[error("The code is wrong or no code is pending for this phone.")]
    InvalidCode { attempts_left: u32 },
    #[error("The code has expired; request a new one.")]
    CodeExpired,
    #[error("Too many requests; try again in {retry_after} seconds.")]
    RateLimited { retry_after: u64 },
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("You are not allowed to do this.")]
    Forbidden,
    #[error("No user has this invite code.")]
    InviteCodeNotFound,
    #[error("You have already activated an invite code.")]
    InviteAlreadyActivated { activated_invite_code: String },
    #[error("You cannot activate your own invite code.")]
    SelfInvite,
    #[error("Another account uses this phone number.")]
    PhoneTaken,
    /// FORBIDDEN with `reason: REAUTHENTICATION_REQUIRED`: the sign-in's verifyCode is too old
    /// for what was asked (deleteAccount).
    #[error("Sign in again (request and enter a new code), then retry.")]
    ReauthenticationRequired,
    #[error("Something went wrong on our side.")]
    Internal(#[source] anyhow::Error),
}

impl AppError {
    pub fn bad_input(field: &'static str, message: impl Into<String>) -> Self {
        Self::BadUserInput {
            field,
            message: message.into(),
            reason: None,
        }
    }

    /// BAD_USER_INPUT with a `reason` extension besides `field`.
    pub fn bad_input_because(
        field: &'static str,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self::BadUserInput {
            field,
            message: message.into(),
            reason: Some(reason),
        }
    }

    /// UNAUTHENTICATED: the access token is valid but its user was deleted since.
    pub fn user_gone() -> Self {
        Self::Unauthenticated("The signed-in user no longer exists.")
    }

    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        Self::Internal(err.into())
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::BadUserInput { .. } => code::BAD_USER_INPUT,
            Self::InvalidCode { .. } => code::INVALID_CODE,
            Self::CodeExpired => code::CODE_EXPIRED,
            Self::RateLimited { .. } => code::RATE_LIMITED,
            Self::Unauthenticated(_) => code::UNAUTHENTICATED,
            Self::Forbidden => code::FORBIDDEN,
            Self::InviteCodeNotFound => code::INVITE_CODE_NOT_FOUND,
            Self::InviteAlreadyActivated { .. } => code::INVITE_ALREADY_ACTIVATED,
            Self::SelfInvite => code::SELF_INVITE,
            Self::PhoneTaken => code::PHONE_TAKEN,
            Self::ReauthenticationRequired => code::FORBIDDEN,
            Self::Internal(_) => code::INTERNAL_SERVER_ERROR,
        }
    }

    /// The extensions besides `code`, as the contract's error table lists them.
    fn extra_extensions(&self) -> Vec<(&'static str, Value)> {
        match self {
            Self::BadUserInput { field, reason, .. } => {
                let mut extra = vec![("field", Value::from(*field))];
                if let Some(reason) = reason {
                    extra.push(("reason", Value::from(*reason)));
                }
                extra
            }
            Self::InvalidCode { attempts_left } => {
                vec![("attemptsLeft", Value::from(*attempts_left))]
            }
            Self::RateLimited { retry_after } => vec![("retryAfter", Value::from(*retry_after))],
            Self::InviteAlreadyActivated {
                activated_invite_code,
            } => {
                vec![(
                    "activatedInviteCode",
                    Value::from(activated_invite_code.as_str()),
                )]
            }
            Self::ReauthenticationRequired => {
                vec![("reason", Value::from("REAUTHENTICATION_REQUIRED"))]
            }
            _ => Vec::new(),
        }
    }
}

impl From<sea_orm::DbErr> for AppError {
    fn from(err: sea_orm::DbErr) -> Self {
        Self::Internal(err.into())
    }
}

impl From<AppError> for async_graphql::Error {
    fn from(err: AppError) -> Self {
        let code = err.code();
        let extra = err.extra_extensions();
        async_graphql::Error::new_with_source(err).extend_with(|_, ext| {
            ext.set("code", code);
            for (key, value) in extra {
                ext.set(key, value);
            }
        })
    }
}

pub type AppResult<T> = Result<T, AppError>;

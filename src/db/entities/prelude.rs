pub use super::otp_codes::Entity as OtpCodes;
pub use super::refresh_tokens::Entity as RefreshTokens;
pub use super::users::Entity as Users;

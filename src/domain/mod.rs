//! Parsed value types. Untrusted input becomes one of these through `parse`, or a typed
//! `AppError::BadUserInput`; nothing here touches the database, HTTP or GraphQL.

pub mod client_ip;
pub mod cursor;
pub mod invite_code;
pub mod number_type;
pub mod otp_code;
pub mod phone;

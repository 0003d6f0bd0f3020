//! Opaque pagination cursors. A cursor names the last row seen by its place in the list's
//! order — a timestamp and the id that breaks ties — so a page never shifts when rows are added
//! elsewhere. Clients must treat it as an opaque string: it is base64url of a versioned text.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};

use crate::error::AppError;

const PREFIX: &str = "c1:";
/// The longest cursor we issue is ~50 characters; refusing longer input keeps decoding cheap.
const MAX_LEN: usize = 96;

/// Page size: `first` must be within 1..=100 (the contract); 20 when not given.
pub const MAX_PAGE: i32 = 100;
pub const DEFAULT_PAGE: i32 = 20;

/// Where a row sits in an ordered list: `(at, id)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Position {
    pub at: DateTime<Utc>,
    pub id: i64,
}

pub fn encode(position: Position) -> String {
    URL_SAFE_NO_PAD.encode(format!(
        "{PREFIX}{}:{}",
        position.at.timestamp_micros(),
        position.id
    ))
}

pub fn decode(raw: &str) -> Result<Position, AppError> {
    let bad = || AppError::bad_input("after", "This cursor is not valid.");
    if raw.len() > MAX_LEN {
        return Err(bad());
    }
    let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| bad())?;
    let text = std::str::from_utf8(&bytes).map_err(|_| bad())?;
    let (micros, id) = text
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.split_once(':'))
        .ok_or_else(bad)?;
    let at = micros
        .parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(bad)?;
    let id = id
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(bad)?;
    Ok(Position { at, id })
}

pub fn page_size(first: i32) -> Result<u64, AppError> {
    if (1..=MAX_PAGE).contains(&first) {
        Ok(first as u64)
    } else {
        Err(AppError::bad_input(
            "first",
            format!("first must be between 1 and {MAX_PAGE}."),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_over_long_cursor_is_refused_even_when_it_would_parse() {
        // Zeros in front of the number parse; the length check refuses before any parsing.
        let padded = URL_SAFE_NO_PAD.encode(format!("{PREFIX}{}1:5", "0".repeat(80)));
        assert!(padded.len() > MAX_LEN);
        assert!(matches!(
            decode(&padded),
            Err(AppError::BadUserInput { field: "after", .. })
        ));
    }

    #[test]
    fn round_trips() {
        for (micros, id) in [(0, 1), (1_795_000_000_123_456, 42), (-5, i64::MAX)] {
            let position = Position {
                at: DateTime::from_timestamp_micros(micros).unwrap(),
                id,
            };
            assert_eq!(decode(&encode(position)).unwrap(), position);
        }
    }

    #[test]
    fn refuses_garbage() {
        let b = |s: &str| URL_SAFE_NO_PAD.encode(s);
        for raw in [
            String::new(),
            "!!".into(),
            b("c1:"),
            b("c1:5"),
            b("c1:5:0"),
            b("c1:5:-1"),
            b("c1:x:1"),
            b("c2:5:1"),
            b("c1:99999999999999999999:1"),
            "A".repeat(200),
        ] {
            assert!(decode(&raw).is_err(), "{raw}");
        }
    }

    #[test]
    fn page_bounds() {
        assert!(page_size(0).is_err());
        assert!(page_size(101).is_err());
        assert_eq!(page_size(100).unwrap(), 100);
    }
}

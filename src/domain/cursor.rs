//! Opaque pagination cursors. A cursor names the last row seen (its id); clients must treat
//! it as an opaque string, so it is base64url of a versioned prefix.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

use crate::error::AppError;

const PREFIX: &str = "u1:";
/// Longest cursor we ever issue is far below this; refusing longer input keeps decoding cheap.
const MAX_LEN: usize = 64;

pub fn encode(id: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{PREFIX}{id}"))
}

pub fn decode(raw: &str) -> Result<i64, AppError> {
    let bad = || AppError::bad_input("after", "This cursor is not valid.");
    if raw.len() > MAX_LEN {
        return Err(bad());
    }
    let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| bad())?;
    let text = std::str::from_utf8(&bytes).map_err(|_| bad())?;
    let id = text.strip_prefix(PREFIX).ok_or_else(bad)?;
    id.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(bad)
}

/// Page size: `first` must be within 1..=100 (the contract); 20 when not given.
pub const MAX_PAGE: i32 = 100;
pub const DEFAULT_PAGE: i32 = 20;

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
    fn round_trips() {
        for id in [1, 42, i64::MAX] {
            assert_eq!(decode(&encode(id)).unwrap(), id);
        }
    }

    #[test]
    fn refuses_garbage() {
        for raw in ["", "!!", "dTE6", "dTE6LTE", "eDox", &"A".repeat(100)] {
            assert!(decode(raw).is_err(), "{raw}");
        }
    }

    #[test]
    fn page_bounds() {
        assert!(page_size(0).is_err());
        assert!(page_size(101).is_err());
        assert_eq!(page_size(100).unwrap(), 100);
    }
}

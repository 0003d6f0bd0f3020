//! Phone numbers, normalised to E.164 with libphonenumber's rules (the `phonenumber` crate).

use std::{fmt, str::FromStr};

use phonenumber::{Mode, country};

use crate::error::AppError;

/// Longer input is not a phone number; refusing it early keeps the parser's work bounded.
const MAX_INPUT_LEN: usize = 40;
/// `+` and at most 15 digits (ITU-T E.164).
const MAX_E164_LEN: usize = 16;

/// A region (ISO 3166-1 alpha-2, e.g. `RU`) for numbers written in national form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region(country::Id);

impl Region {
    pub fn code(&self) -> &str {
        self.0.as_ref()
    }
}

impl Default for Region {
    fn default() -> Self {
        Self(country::Id::RU)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown region {0:?} (expected a two-letter code such as RU)")]
pub struct UnknownRegion(String);

impl FromStr for Region {
    type Err = UnknownRegion;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        country::Id::from_str(&s.trim().to_ascii_uppercase())
            .map(Self)
            .map_err(|_| UnknownRegion(s.to_owned()))
    }
}

/// A valid phone number in E.164 (`+79123456789`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Phone {
    e164: String,
    region: Option<String>,
}

impl Phone {
    /// Accepts E.164, international or national form (for `default_region`), with spaces,
    /// dashes, dots and brackets.
    pub fn parse(raw: &str, default_region: Region) -> Result<Self, AppError> {
        let invalid = || AppError::bad_input("phone", "This is not a valid phone number.");
        let raw = raw.trim();
        if raw.is_empty() || raw.len() > MAX_INPUT_LEN {
            return Err(invalid());
        }
        if !raw
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '(' | ')' | '.'))
        {
            return Err(invalid());
        }
        let number = phonenumber::parse(Some(default_region.0), raw).map_err(|_| invalid())?;
        if !phonenumber::is_valid(&number) {
            return Err(invalid());
        }
        let region = number
            .country()
            .id()
            .map(|id| AsRef::<str>::as_ref(&id).to_owned());
        let e164 = number.format().mode(Mode::E164).to_string();
        // E.164 allows at most 15 digits; libphonenumber's metadata accepts a few longer
        // national ranges, which no SMS route can reach and our column does not hold.
        if e164.len() > MAX_E164_LEN {
            return Err(invalid());
        }
        Ok(Self { e164, region })
    }

    /// Rebuilds a phone already stored in E.164 (no validation: it was validated on the way in).
    pub fn from_e164(e164: impl Into<String>) -> Self {
        Self {
            e164: e164.into(),
            region: None,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.e164
    }

    /// The region the number belongs to (for `SMS_ALLOWED_REGIONS`), when libphonenumber knows it.
    pub fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }

    /// `+7912***6789`: enough to tell numbers apart in logs, not enough to dial.
    pub fn masked(&self) -> String {
        let chars: Vec<char> = self.e164.chars().collect();
        if chars.len() <= 8 {
            return "***".to_owned();
        }
        let head: String = chars[..5].iter().collect();
        let tail: String = chars[chars.len() - 4..].iter().collect();
        format!("{head}***{tail}")
    }
}

impl fmt::Display for Phone {
    /// Masked on purpose: `Display` is what ends up in log lines.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ru(raw: &str) -> Result<String, AppError> {
        Phone::parse(raw, Region::default()).map(|p| p.as_str().to_owned())
    }

    #[test]
    fn every_spelling_of_one_number_gives_one_e164() {
        for raw in [
            "+79123456789",
            "89123456789",
            "8 (912) 345-67-89",
            "+7 912 345 67 89",
            "  +7-912-345-67-89 ",
            "+7 (912) 345.67.89",
        ] {
            assert_eq!(ru(raw).unwrap(), "+79123456789", "{raw}");
        }
    }

    #[test]
    fn other_countries_in_international_form() {
        assert_eq!(ru("+1 650 253 0000").unwrap(), "+16502530000");
        assert_eq!(ru("+44 20 7946 0958").unwrap(), "+442079460958");
    }

    #[test]
    fn invalid_input_is_bad_user_input() {
        for raw in [
            "",
            "   ",
            "123",
            "abc",
            "+7912345678901234",
            "+7912345678a",
            "+4920100000000000",
            "8912345678\u{0}",
            &"9".repeat(500),
        ] {
            match ru(raw) {
                Err(AppError::BadUserInput { field: "phone", .. }) => {}
                other => panic!("{raw:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn masks_the_middle() {
        let phone = Phone::parse("+79123456789", Region::default()).unwrap();
        assert_eq!(phone.masked(), "+7912***6789");
        assert_eq!(phone.to_string(), "+7912***6789");
        assert_eq!(phone.region(), Some("RU"));
    }

    #[test]
    fn region_parses_case_insensitively() {
        assert_eq!("by".parse::<Region>().unwrap().code(), "BY");
        assert!("XX1".parse::<Region>().is_err());
    }
}

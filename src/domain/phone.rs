//! Phone numbers, normalised to E.164 with libphonenumber's rules (the `phonenumber` crate).

use std::{borrow::Borrow, cmp::Ordering, fmt, hash, str::FromStr};

use phonenumber::{Mode, country};

use super::number_type::NumberType;
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

/// Regions order and compare by their code, so a set of them can be asked about a `&str`.
impl Ord for Region {
    fn cmp(&self, other: &Self) -> Ordering {
        self.code().cmp(other.code())
    }
}

impl PartialOrd for Region {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Borrow<str> for Region {
    fn borrow(&self) -> &str {
        self.code()
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
///
/// Two phones are the same number when their E.164 forms are: equality, order and hash look
/// at nothing else (what libphonenumber told us about the number is not part of its identity,
/// and a phone rebuilt from storage knows none of it), so a set of phones can be asked about
/// the `&str` a user row holds.
#[derive(Clone, Debug)]
pub struct Phone {
    e164: String,
    region: Option<String>,
    /// The country calling code (`7`, `44`, `882`); 0 when rebuilt from storage.
    calling_code: u16,
    number_type: NumberType,
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
        // A number in international form is parsed without the default region: the crate
        // strips that region's national prefix from it otherwise (with RU, "+44 800 …" lost
        // its "8" and a valid British number was refused).
        let region = (!raw.starts_with('+')).then_some(default_region.0);
        let number = phonenumber::parse(region, raw).map_err(|_| invalid())?;
        // The type lookup is also the validity test (libphonenumber: valid = type known).
        let number_type = NumberType::of(&number).ok_or_else(invalid)?;
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
        Ok(Self {
            e164,
            region,
            calling_code: number.country().code(),
            number_type,
        })
    }

    /// Rebuilds a phone already stored in E.164 (no validation: it was validated on the way in).
    pub fn from_e164(e164: impl Into<String>) -> Self {
        Self {
            e164: e164.into(),
            region: None,
            calling_code: 0,
            number_type: NumberType::Unknown,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.e164
    }

    /// The region the number belongs to (for `SMS_ALLOWED_REGIONS`), when libphonenumber knows it.
    pub fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }

    /// What kind of line it is (`Unknown` for a phone rebuilt with [`Phone::from_e164`]).
    pub fn number_type(&self) -> NumberType {
        self.number_type
    }

    /// The destination country SMS statistics are kept per: the region (`RU`), or the
    /// calling code (`+882`) for a number of no region.
    pub fn country_key(&self) -> String {
        match &self.region {
            Some(region) => region.clone(),
            None => format!("+{}", self.calling_code),
        }
    }

    /// The number range: the E.164 number without its last `digits` digits
    /// (`+79123456789`, 4 → `+7912345`). Never shorter than `+` and one digit.
    pub fn range(&self, digits: usize) -> &str {
        let keep = self.e164.len().saturating_sub(digits).max(2);
        self.e164.get(..keep).unwrap_or(&self.e164)
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

impl PartialEq for Phone {
    fn eq(&self, other: &Self) -> bool {
        self.e164 == other.e164
    }
}

impl Eq for Phone {}

impl hash::Hash for Phone {
    fn hash<H: hash::Hasher>(&self, state: &mut H) {
        self.e164.hash(state);
    }
}

impl Ord for Phone {
    fn cmp(&self, other: &Self) -> Ordering {
        self.e164.cmp(&other.e164)
    }
}

impl PartialOrd for Phone {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Borrow<str> for Phone {
    fn borrow(&self) -> &str {
        &self.e164
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

    fn kind(raw: &str) -> NumberType {
        Phone::parse(raw, Region::default())
            .unwrap_or_else(|e| panic!("{raw}: {e:?}"))
            .number_type()
    }

    #[test]
    fn number_types_come_from_the_metadata() {
        assert_eq!(kind("+79123456789"), NumberType::Mobile);
        assert_eq!(kind("+447400123456"), NumberType::Mobile);
        assert_eq!(kind("+4915123456789"), NumberType::Mobile);
        assert_eq!(kind("+12015550123"), NumberType::FixedLineOrMobile);
        assert_eq!(kind("+73011234567"), NumberType::FixedLine);
        assert_eq!(kind("+448001234567"), NumberType::TollFree);
        assert_eq!(kind("+18002345678"), NumberType::TollFree);
        assert_eq!(kind("+19002345678"), NumberType::PremiumRate);
        assert_eq!(kind("+449012345678"), NumberType::PremiumRate);
        assert_eq!(kind("+4918012345"), NumberType::SharedCost);
        assert_eq!(kind("+445512345678"), NumberType::Uan);
        assert_eq!(kind("+445612345678"), NumberType::Voip);
        assert_eq!(kind("+447012345678"), NumberType::PersonalNumber);
        assert_eq!(kind("+447640123456"), NumberType::Pager);
        assert_eq!(kind("+41860123456789"), NumberType::Voicemail);
        assert_eq!(kind("+8823421234"), NumberType::NonGeographic);
        assert_eq!(kind("+883510012345"), NumberType::NonGeographic);
        assert_eq!(kind("+881612345678"), NumberType::NonGeographic);
    }

    #[test]
    fn international_numbers_keep_digits_the_default_region_would_strip() {
        // RU's national prefix is 8; it must not be taken off a number given with its
        // country code.
        assert_eq!(ru("+44 800 123 4567").unwrap(), "+448001234567");
        assert_eq!(ru("+81 80 1234 5678").unwrap(), "+818012345678");
        assert_eq!(kind("+818012345678"), NumberType::Mobile);
    }

    /// The length cap is the only thing refusing an over-long spelling of a valid number:
    /// the parser itself would accept it (after doing work proportional to its length).
    #[test]
    fn input_longer_than_the_cap_is_refused_before_parsing() {
        let padded = |len: usize| {
            let digits = "+7 912 345 67 89";
            digits.replacen(' ', &" ".repeat(len - digits.len() + 1), 1)
        };
        assert_eq!(padded(MAX_INPUT_LEN).len(), MAX_INPUT_LEN);
        assert_eq!(ru(&padded(MAX_INPUT_LEN)).unwrap(), "+79123456789");
        assert!(ru(&padded(MAX_INPUT_LEN + 1)).is_err());
        assert!(ru("").is_err());
        assert!(ru("   ").is_err());
    }

    /// E.164's 15 digits fit (a German toll-free number is that long); the 16-digit national
    /// ranges the metadata also knows do not.
    #[test]
    fn fifteen_digits_is_the_longest_number() {
        assert_eq!(ru("+49 800 1234567890").unwrap(), "+498001234567890");
        let sixteen = "+49 800 12345678901";
        assert!(phonenumber::parse(None, sixteen).is_ok_and(|n| n.is_valid()));
        assert!(ru(sixteen).is_err());
    }

    #[test]
    fn range_and_country() {
        let phone = Phone::parse("+79123456789", Region::default()).unwrap();
        assert_eq!(phone.range(4), "+7912345");
        assert_eq!(phone.range(0), "+79123456789");
        assert_eq!(phone.range(40), "+7");
        assert_eq!(phone.country_key(), "RU");
        let satellite = Phone::parse("+8823421234", Region::default()).unwrap();
        assert_eq!(satellite.country_key(), "+882");
    }

    #[test]
    fn a_phone_is_its_e164_form_whatever_else_is_known() {
        let parsed = Phone::parse("8 912 345-67-89", Region::default()).unwrap();
        let stored = Phone::from_e164("+79123456789");
        assert_eq!(
            parsed, stored,
            "parsed and rebuilt from storage are one number"
        );
        let admins = std::collections::BTreeSet::from([parsed]);
        assert!(
            admins.contains("+79123456789"),
            "a set is asked with a stored &str"
        );
        assert!(!admins.contains("+79123456780"));
        let hashed = std::collections::HashSet::from([stored]);
        assert!(hashed.contains("+79123456789"));
    }

    #[test]
    fn phones_differ_and_order_by_their_e164_form() {
        let low = Phone::from_e164("+79123456780");
        let high = Phone::parse("+7 912 345 67 89", Region::default()).unwrap();
        assert_ne!(low, high, "two numbers are two phones");
        assert_eq!(low.partial_cmp(&high), Some(Ordering::Less));
        assert!(low < high, "the operators agree with the order");
        assert!(high > low);
        assert_eq!(low.cmp(&high), Ordering::Less);
    }

    #[test]
    fn regions_are_found_by_their_code() {
        let allowed: std::collections::BTreeSet<Region> =
            ["by", "RU"].iter().map(|r| r.parse().unwrap()).collect();
        assert!(allowed.contains("RU") && allowed.contains("BY"));
        assert!(!allowed.contains("KZ"));
    }

    #[test]
    fn region_parses_case_insensitively() {
        assert_eq!("by".parse::<Region>().unwrap().code(), "BY");
        assert!("XX1".parse::<Region>().is_err());
    }
}

//! What kind of line a phone number is, from libphonenumber's metadata (the `phonenumber`
//! crate; its version carries the metadata release, e.g. `0.3.10+9.0.33`). Only some kinds
//! should ever get a code by SMS (`SMS_ALLOWED_NUMBER_TYPES`): premium-rate, shared-cost and
//! the non-geographic international networks are how SMS pumping (international revenue
//! share fraud) gets paid.

use std::{fmt, str::FromStr};

/// The kinds of number a code may be sent to when `SMS_ALLOWED_NUMBER_TYPES` is not set.
pub const DEFAULT_ALLOWED: [NumberType; 2] = [NumberType::Mobile, NumberType::FixedLineOrMobile];

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NumberType {
    Mobile,
    /// The region's plan does not tell fixed lines and mobiles apart (e.g. the US, Canada).
    FixedLineOrMobile,
    FixedLine,
    TollFree,
    PremiumRate,
    SharedCost,
    PersonalNumber,
    Voip,
    Pager,
    /// Universal access ("company") numbers.
    Uan,
    Voicemail,
    /// A number of a non-geographic calling code (+800, +808, +870, +878, +881, +882, +883,
    /// +888, +979: global services, satellite and international networks), whatever its line
    /// type: these belong to no country's numbering plan, cost the most to reach and are the
    /// classic pumping destinations.
    NonGeographic,
    /// Anything else (a number the metadata does not place).
    Unknown,
}

impl NumberType {
    pub const ALL: [NumberType; 13] = [
        Self::Mobile,
        Self::FixedLineOrMobile,
        Self::FixedLine,
        Self::TollFree,
        Self::PremiumRate,
        Self::SharedCost,
        Self::PersonalNumber,
        Self::Voip,
        Self::Pager,
        Self::Uan,
        Self::Voicemail,
        Self::NonGeographic,
        Self::Unknown,
    ];

    /// Types whose numbers pay their owner for the SMS (or cost far more than a mobile):
    /// allowing them is warned about at start.
    pub fn is_pumping_risk(self) -> bool {
        matches!(
            self,
            Self::PremiumRate | Self::SharedCost | Self::NonGeographic | Self::Unknown
        )
    }

    /// The name used in `SMS_ALLOWED_NUMBER_TYPES` and in logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mobile => "mobile",
            Self::FixedLineOrMobile => "fixed_line_or_mobile",
            Self::FixedLine => "fixed_line",
            Self::TollFree => "toll_free",
            Self::PremiumRate => "premium_rate",
            Self::SharedCost => "shared_cost",
            Self::PersonalNumber => "personal_number",
            Self::Voip => "voip",
            Self::Pager => "pager",
            Self::Uan => "uan",
            Self::Voicemail => "voicemail",
            Self::NonGeographic => "non_geographic",
            Self::Unknown => "unknown",
        }
    }

    /// The type of a parsed number, or `None` when the metadata places it nowhere (an
    /// invalid number: this is libphonenumber's own validity test, `type != UNKNOWN`).
    /// `non_geographic` is decided by the calling code, after validity and before the line
    /// type: +882 and +883 hold "mobile" ranges in the metadata.
    pub(crate) fn of(number: &phonenumber::PhoneNumber) -> Option<Self> {
        use phonenumber::{Type, metadata::DATABASE};
        let line = match number.number_type(&DATABASE) {
            Type::Unknown => return None,
            Type::Mobile => Self::Mobile,
            Type::FixedLineOrMobile => Self::FixedLineOrMobile,
            Type::FixedLine => Self::FixedLine,
            Type::TollFree => Self::TollFree,
            Type::PremiumRate => Self::PremiumRate,
            Type::SharedCost => Self::SharedCost,
            Type::PersonalNumber => Self::PersonalNumber,
            Type::Voip => Self::Voip,
            Type::Pager => Self::Pager,
            Type::Uan => Self::Uan,
            Type::Voicemail => Self::Voicemail,
            _ => Self::Unknown,
        };
        // "001" is libphonenumber's region for the non-geographic calling codes.
        let non_geographic = number
            .metadata(&DATABASE)
            .is_some_and(|meta| meta.id() == "001");
        Some(if non_geographic {
            Self::NonGeographic
        } else {
            line
        })
    }
}

impl fmt::Display for NumberType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown number type {0:?} (known: {known})", known = known_names())]
pub struct UnknownNumberType(String);

fn known_names() -> String {
    NumberType::ALL.map(NumberType::name).join(", ")
}

impl FromStr for NumberType {
    type Err = UnknownNumberType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase().replace('-', "_");
        Self::ALL
            .into_iter()
            .find(|t| t.name() == wanted)
            .ok_or_else(|| UnknownNumberType(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in NumberType::ALL {
            assert_eq!(t.name().parse::<NumberType>().unwrap(), t);
            // What the log line of a refused number shows (`services::pumping`).
            assert_eq!(t.to_string(), t.name());
        }
        assert_eq!(
            "Fixed-Line-Or-Mobile".parse::<NumberType>().unwrap(),
            NumberType::FixedLineOrMobile
        );
        // The operator who mistypes `SMS_ALLOWED_NUMBER_TYPES` is told every valid name.
        assert_eq!(
            "satellite".parse::<NumberType>().unwrap_err().to_string(),
            "unknown number type \"satellite\" (known: mobile, fixed_line_or_mobile, \
             fixed_line, toll_free, premium_rate, shared_cost, personal_number, voip, pager, \
             uan, voicemail, non_geographic, unknown)"
        );
    }

    /// Start-up warns when `SMS_ALLOWED_NUMBER_TYPES` lets codes go to these; a mobile or
    /// fixed line must not set the warning off (operators would learn to ignore it).
    #[test]
    fn only_the_kinds_that_pay_for_sms_are_pumping_risks() {
        let risky: Vec<NumberType> = NumberType::ALL
            .into_iter()
            .filter(|t| t.is_pumping_risk())
            .collect();
        assert_eq!(
            risky,
            [
                NumberType::PremiumRate,
                NumberType::SharedCost,
                NumberType::NonGeographic,
                NumberType::Unknown,
            ]
        );
    }
}

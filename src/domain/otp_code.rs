//! One-time codes: generated with a CSPRNG, entered as digits of the configured length.

use rand::Rng;

use crate::error::AppError;

/// A code as the user typed it, checked for shape only (digits, right length).
#[derive(Clone, PartialEq, Eq)]
pub struct OtpCode(String);

impl OtpCode {
    pub fn parse(raw: &str, length: usize) -> Result<Self, AppError> {
        let code = raw.trim();
        if code.len() != length || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AppError::bad_input(
                "code",
                format!("The code must be {length} digits."),
            ));
        }
        Ok(Self(code.to_owned()))
    }

    /// A fresh uniform code of `length` digits (leading zeros included).
    pub fn generate(length: usize) -> Self {
        let mut rng = rand::rng();
        Self(
            (0..length)
                .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
                .collect(),
        )
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for OtpCode {
    // Never print a code by accident.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OtpCode(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_that_a_code_is_there_but_never_the_code() {
        let code = OtpCode::parse("0123", 4).unwrap();
        assert_eq!(format!("{code:?}"), "OtpCode(***)");
    }

    #[test]
    fn accepts_digits_of_the_right_length() {
        assert_eq!(OtpCode::parse(" 0123 ", 4).unwrap().expose(), "0123");
        assert_eq!(OtpCode::parse("012345", 6).unwrap().expose(), "012345");
    }

    #[test]
    fn refuses_other_shapes() {
        for raw in ["", "123", "12345", "12a4", "١٢٣٤", "12 34", "-123"] {
            assert!(
                matches!(
                    OtpCode::parse(raw, 4),
                    Err(AppError::BadUserInput { field: "code", .. })
                ),
                "{raw}"
            );
        }
    }

    #[test]
    fn generated_codes_have_the_length_and_vary() {
        let codes: std::collections::HashSet<String> = (0..200)
            .map(|_| OtpCode::generate(6).expose().to_owned())
            .collect();
        assert!(
            codes
                .iter()
                .all(|c| c.len() == 6 && c.bytes().all(|b| b.is_ascii_digit()))
        );
        assert!(codes.len() > 190);
    }
}

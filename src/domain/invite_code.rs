//! Invite codes: 6 characters from an alphabet without look-alikes (no 0/O, 1/I/L), so a code
//! read aloud or copied by hand survives. Stored upper-case; input is matched case-insensitively.

use rand::Rng;

use crate::error::AppError;

pub const INVITE_CODE_LEN: usize = 6;
/// 31 symbols: 31^6 ≈ 8.9e8 codes.
const ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct InviteCode(String);

impl InviteCode {
    /// Accepts any case and surrounding spaces; refuses anything that cannot be a code.
    /// Codes are checked against the letters-and-digits shape rather than the generation
    /// alphabet, so a code that exists always matches whatever alphabet made it.
    pub fn parse(raw: &str) -> Result<Self, AppError> {
        let code = raw.trim().to_ascii_uppercase();
        if code.len() != INVITE_CODE_LEN || !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(AppError::bad_input(
                "inviteCode",
                "An invite code is 6 letters and digits.",
            ));
        }
        Ok(Self(code))
    }

    pub fn generate() -> Self {
        let mut rng = rand::rng();
        Self(
            (0..INVITE_CODE_LEN)
                .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
                .collect(),
        )
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_upper_cases_and_trims() {
        assert_eq!(InviteCode::parse(" abc234 ").unwrap().as_str(), "ABC234");
    }

    #[test]
    fn parse_refuses_malformed() {
        for raw in [
            "", "ABC12", "ABC1234", "ABC12_", "ABC 12", "ABC12%", "ÄBC123",
        ] {
            assert!(InviteCode::parse(raw).is_err(), "{raw}");
        }
    }

    #[test]
    fn generated_codes_use_the_alphabet() {
        for _ in 0..100 {
            let code = InviteCode::generate();
            assert_eq!(code.as_str().len(), INVITE_CODE_LEN);
            assert!(code.as_str().bytes().all(|b| ALPHABET.contains(&b)));
            assert_eq!(InviteCode::parse(code.as_str()).unwrap(), code);
        }
    }
}

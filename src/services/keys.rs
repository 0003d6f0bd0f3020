//! Keys derived from the one configured secret, one per purpose (RFC 8725 §3.12: one key, one
//! use): signing access tokens, hashing one-time codes, hashing refresh tokens.

use hmac::{Hmac, Mac};
use jsonwebtoken::{DecodingKey, EncodingKey};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

pub struct Keys {
    pub jwt_encoding: EncodingKey,
    pub jwt_decoding: DecodingKey,
    otp: [u8; 32],
    refresh: [u8; 32],
}

impl Keys {
    pub fn derive(secret: &SecretString) -> Self {
        let secret = secret.expose_secret().as_bytes();
        let jwt = derive(secret, b"phone-auth/jwt-hs256/v1");
        Self {
            jwt_encoding: EncodingKey::from_secret(&jwt),
            jwt_decoding: DecodingKey::from_secret(&jwt),
            otp: derive(secret, b"phone-auth/otp-hash/v1"),
            refresh: derive(secret, b"phone-auth/refresh-hash/v1"),
        }
    }

    /// The stored form of a one-time code: bound to the phone and to the moment the code was
    /// issued, so equal codes never share a hash.
    pub fn otp_hash(&self, phone: &str, issued_at_micros: i64, code: &str) -> String {
        mac_hex(
            &self.otp,
            &[
                phone.as_bytes(),
                &issued_at_micros.to_be_bytes(),
                code.as_bytes(),
            ],
        )
    }

    /// The stored form of a refresh token.
    pub fn refresh_hash(&self, token: &str) -> String {
        mac_hex(&self.refresh, &[token.as_bytes()])
    }
}

fn derive(secret: &[u8], label: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(label);
    mac.finalize().into_bytes().into()
}

fn mac_hex(key: &[u8], parts: &[&[u8]]) -> String {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    for part in parts {
        // Length-prefix each part so ("ab","c") and ("a","bc") hash differently.
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    hex::encode(mac.finalize().into_bytes())
}

/// Equality that takes the same time wherever the inputs differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_keyed_and_bound_to_their_inputs() {
        let a = Keys::derive(&SecretString::from("a".repeat(32)));
        let b = Keys::derive(&SecretString::from("b".repeat(32)));
        let h = a.otp_hash("+79123456789", 1, "1234");
        assert_eq!(h.len(), 64);
        assert_eq!(h, a.otp_hash("+79123456789", 1, "1234"));
        assert_ne!(h, b.otp_hash("+79123456789", 1, "1234"));
        assert_ne!(h, a.otp_hash("+79123456789", 2, "1234"));
        assert_ne!(h, a.otp_hash("+79123456780", 1, "1234"));
        assert_ne!(a.refresh_hash("t"), b.refresh_hash("t"));
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "abcd"));
    }
}

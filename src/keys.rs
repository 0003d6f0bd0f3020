//! Keys derived from the one configured secret, one per purpose (RFC 8725 §3.12: one key, one
//! use): signing access tokens, hashing one-time codes, hashing refresh tokens, sealing the
//! SMS outbox. Shared by every layer that signs, hashes or seals (the state builds them once),
//! so they sit at the top of the crate, not under `services`.

use chacha20poly1305::{
    Key, KeyInit, XChaCha20Poly1305, XNonce,
    aead::{Aead, Payload},
};
use hmac::{Hmac, Mac};
use jsonwebtoken::{DecodingKey, EncodingKey};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

pub struct Keys {
    pub jwt_encoding: EncodingKey,
    pub jwt_decoding: DecodingKey,
    otp: [u8; 32],
    refresh: [u8; 32],
    outbox: XChaCha20Poly1305,
    /// Access tokens already verified with `jwt_decoding` (per key: a token verified under one
    /// secret is never taken under another).
    pub verified: crate::services::tokens::VerifiedTokens,
}

/// XChaCha20-Poly1305's nonce: 24 random bytes, long enough that random nonces never repeat.
const NONCE_LEN: usize = 24;

impl Keys {
    pub fn derive(secret: &SecretString) -> Self {
        let secret = secret.expose_secret().as_bytes();
        let jwt = derive(secret, b"phone-auth/jwt-hs256/v1");
        Self {
            // jsonwebtoken refuses only an empty HMAC key; this one is 32 derived bytes.
            jwt_encoding: EncodingKey::from_secret(&jwt).expect("a 32-byte key is not empty"),
            jwt_decoding: DecodingKey::from_secret(&jwt).expect("a 32-byte key is not empty"),
            otp: derive(secret, b"phone-auth/otp-hash/v1"),
            refresh: derive(secret, b"phone-auth/refresh-hash/v1"),
            outbox: XChaCha20Poly1305::new(&Key::from(derive(secret, b"phone-auth/sms-outbox/v1"))),
            verified: Default::default(),
        }
    }

    /// Encrypts an outbox message (it holds a code) for storage: `nonce || ciphertext || tag`.
    /// `context` (the phone and the code's issue time) is authenticated, so a sealed message
    /// only opens for the row it was written for.
    pub fn seal_outbox(&self, context: &[&[u8]], text: &str) -> anyhow::Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let aad = length_prefixed(context);
        let ciphertext = self
            .outbox
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: text.as_bytes(),
                    aad: &aad,
                },
            )
            // Only a message longer than 256 GiB could fail.
            .map_err(|_| anyhow::anyhow!("cannot seal the outbox message"))?;
        let mut sealed = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        Ok(sealed)
    }

    /// The text of a sealed outbox message; `None` if it was sealed under another key
    /// (`JWT_SECRET` changed), for another row, or was altered.
    pub fn open_outbox(&self, context: &[&[u8]], sealed: &[u8]) -> Option<String> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).ok()?;
        let aad = length_prefixed(context);
        let text = self
            .outbox
            .decrypt(
                &nonce,
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .ok()?;
        String::from_utf8(text).ok()
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

/// Each part preceded by its length, so ("ab","c") and ("a","bc") differ.
fn length_prefixed(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        out.extend_from_slice(&(part.len() as u64).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
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
    fn outbox_messages_open_only_with_their_key_and_context() {
        let a = Keys::derive(&SecretString::from("a".repeat(32)));
        let b = Keys::derive(&SecretString::from("b".repeat(32)));
        let context: &[&[u8]] = &[b"+79123456789", b"1"];
        let sealed = a.seal_outbox(context, "Your code: 1234").unwrap();
        assert!(!sealed.windows(4).any(|w| w == b"1234"));
        assert_ne!(
            sealed,
            a.seal_outbox(context, "Your code: 1234").unwrap(),
            "fresh nonce"
        );
        assert_eq!(
            a.open_outbox(context, &sealed).as_deref(),
            Some("Your code: 1234")
        );
        assert_eq!(b.open_outbox(context, &sealed), None);
        assert_eq!(a.open_outbox(&[b"+79123456789", b"2"], &sealed), None);
        let mut altered = sealed.clone();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        assert_eq!(a.open_outbox(context, &altered), None);
        assert_eq!(a.open_outbox(context, &sealed[..10]), None);
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "abcd"));
    }
}

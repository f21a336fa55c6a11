//! API tokens: a random secret shown once to whoever creates it; the catalog keeps only its
//! SHA-256 (a 256-bit random secret needs no slow hash: nothing can be guessed from its digest).

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

/// Every token starts with this, so a leaked one is easy to recognise (and to search for).
pub const PREFIX: &str = "gvt_";

/// A new token secret and the hash to store.
pub fn generate() -> (String, String) {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source works");
    let secret = format!("{PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
    let h = hash(&secret);
    (secret, h)
}

/// The stored form of a token secret: lowercase hex SHA-256.
pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_and_hash_to_what_is_stored() {
        let (a, ha) = generate();
        let (b, _) = generate();
        assert_ne!(a, b);
        assert!(a.starts_with(PREFIX) && a.len() == PREFIX.len() + 43, "{a}");
        assert_eq!(hash(&a), ha);
        assert_eq!(ha.len(), 64);
        assert!(!ha.contains(&a[PREFIX.len()..]));
    }
}

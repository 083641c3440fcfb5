//! Secrets: the API key / personal access token format, CSPRNG base62 randomness, argon2id
//! hashing and verification, and the fast digest used for session tokens.
//!
//! Key format (design.md section 3): `mcpobs_{kind}_{random}` where kind is `live`, `test` (API keys)
//! or `pat` (personal access tokens) and random is 40 base62 characters: the first 8 are the public
//! key id used for lookup, the remaining 32 (~190 bits) are the secret. The whole key string is what
//! argon2id hashes and verifies.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use blake2::{Blake2s256, Digest};
use rand::rngs::OsRng;
use rand::Rng;

use crate::error::{Result, StorageError};
use crate::model::Env;

pub const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Length of the public key id at the start of the random part.
pub const KEY_ID_LEN: usize = 8;
/// Length of the secret part after the key id.
pub const KEY_SECRET_LEN: usize = 32;
pub const KEY_RANDOM_LEN: usize = KEY_ID_LEN + KEY_SECRET_LEN;
const KEY_PREFIX: &str = "mcpobs_";
/// Longest well-formed key (`mcpobs_live_` + 40); anything longer is rejected before any work.
pub const KEY_LEN_MAX: usize = KEY_PREFIX.len() + 5 + KEY_RANDOM_LEN;

/// What a key string grants: an API key of one env, or a personal access token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    Api(Env),
    Pat,
}

impl KeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Api(env) => env.as_str(),
            KeyKind::Pat => "pat",
        }
    }
}

/// A syntactically valid key, borrowed from the presented string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParsedKey<'a> {
    pub kind: KeyKind,
    pub key_id: &'a str,
    /// The whole key, as hashed.
    pub full: &'a str,
}

/// `n` characters of base62 from the OS CSPRNG. `gen_range` rejects biased draws, so every
/// character is uniform.
pub fn random_base62(n: usize) -> String {
    let mut rng = OsRng;
    (0..n)
        .map(|_| BASE62[rng.gen_range(0..BASE62.len())] as char)
        .collect()
}

/// 32 random bytes from the OS CSPRNG, hex encoded: session and CSRF tokens.
pub fn random_token_hex() -> String {
    let bytes: [u8; 32] = OsRng.gen();
    hex::encode(bytes)
}

pub fn is_base62(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// `mcpobs_{kind}_{random}`; `random` must be [`KEY_RANDOM_LEN`] base62 characters.
pub fn format_key(kind: KeyKind, random: &str) -> String {
    debug_assert!(random.len() == KEY_RANDOM_LEN && is_base62(random));
    format!("{KEY_PREFIX}{}_{random}", kind.as_str())
}

/// The display prefix of a key: everything up to and including the key id.
pub fn key_prefix(kind: KeyKind, key_id: &str) -> String {
    format!("{KEY_PREFIX}{}_{key_id}", kind.as_str())
}

/// Parses a presented key. `None` for anything not exactly in the key format.
pub fn parse_key(s: &str) -> Option<ParsedKey<'_>> {
    if s.len() > KEY_LEN_MAX {
        return None;
    }
    let rest = s.strip_prefix(KEY_PREFIX)?;
    let (kind, random) = rest.split_once('_')?;
    let kind = match kind {
        "pat" => KeyKind::Pat,
        other => KeyKind::Api(Env::parse(other)?),
    };
    if random.len() != KEY_RANDOM_LEN || !is_base62(random) {
        return None;
    }
    Some(ParsedKey {
        kind,
        key_id: &random[..KEY_ID_LEN],
        full: s,
    })
}

/// A fresh key of `kind`: (full key, key id).
pub fn generate_key(kind: KeyKind) -> (String, String) {
    let random = random_base62(KEY_RANDOM_LEN);
    let key_id = random[..KEY_ID_LEN].to_string();
    (format_key(kind, &random), key_id)
}

/// How expensive argon2id hashing is. Verification reads the parameters from the stored PHC
/// string, so this only affects newly hashed secrets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HashCost {
    /// `Argon2::default()`: argon2id v19, m = 19 MiB, t = 2, p = 1 (OWASP recommendation).
    #[default]
    Standard,
    /// Still argon2id, with minimal memory and time: for test suites only (debug builds take
    /// ~0.5 s per standard hash).
    Low,
}

fn hasher(cost: HashCost) -> Argon2<'static> {
    match cost {
        HashCost::Standard => Argon2::default(),
        HashCost::Low => {
            // 64 KiB, one pass: the smallest parameters argon2 accepts comfortably.
            let params = Params::new(64, 1, 1, None).unwrap_or_default();
            Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        }
    }
}

/// argon2id PHC string of `secret` with a fresh random salt.
pub fn hash_secret(secret: &str, cost: HashCost) -> Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    hasher(cost)
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| StorageError::Invalid(format!("cannot hash secret: {e}")))
}

/// Verifies `secret` against a PHC string. Slow on purpose (argon2id): call it off the async
/// runtime. A malformed stored hash verifies nothing.
pub fn verify_secret(phc: &str, secret: &str) -> bool {
    match PasswordHash::new(phc) {
        // The algorithm and parameters come from the PHC string itself.
        Ok(parsed) => Argon2::default()
            .verify_password(secret.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Fast digest of a high-entropy token (session tokens, cached-key fingerprints). Not for
/// passwords: those need argon2.
pub fn token_digest(token: &str) -> [u8; 32] {
    Blake2s256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generated_keys_parse_back() {
        for kind in [
            KeyKind::Api(Env::Live),
            KeyKind::Api(Env::Test),
            KeyKind::Pat,
        ] {
            let (key, id) = generate_key(kind);
            let parsed = parse_key(&key).expect("parses");
            assert_eq!(parsed.kind, kind);
            assert_eq!(parsed.key_id, id);
            assert!(key.starts_with(&key_prefix(kind, &id)));
            assert!(key.len() <= KEY_LEN_MAX);
        }
    }

    #[test]
    fn malformed_keys_are_rejected() {
        let good = format_key(KeyKind::Api(Env::Live), &"a".repeat(KEY_RANDOM_LEN));
        assert!(parse_key(&good).is_some());
        for bad in [
            String::new(),
            "mcpobs_live_".into(),
            format!("mcpobs_prod_{}", "a".repeat(40)),
            format!("mcpobs_live_{}", "a".repeat(39)),
            format!("mcpobs_live_{}", "a".repeat(41)),
            format!("mcpobs_live_{}!", "a".repeat(39)),
            format!("xmcpobs_live_{}", "a".repeat(40)),
            format!("mcpobs_live_{}é", "a".repeat(38)),
        ] {
            assert!(parse_key(&bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn hash_and_verify() {
        let h = hash_secret("s3cret", HashCost::Low).unwrap();
        assert!(h.starts_with("$argon2id$v=19$"));
        assert!(verify_secret(&h, "s3cret"));
        assert!(!verify_secret(&h, "s3cret "));
        assert!(!verify_secret("not a phc string", "s3cret"));
    }

    proptest! {
        #[test]
        fn base62_key_round_trip(random in "[0-9A-Za-z]{40}", pat in any::<bool>(), test in any::<bool>()) {
            let kind = if pat { KeyKind::Pat } else if test { KeyKind::Api(Env::Test) } else { KeyKind::Api(Env::Live) };
            let key = format_key(kind, &random);
            let parsed = parse_key(&key).unwrap();
            prop_assert_eq!(parsed.kind, kind);
            prop_assert_eq!(parsed.key_id, &random[..KEY_ID_LEN]);
            prop_assert_eq!(parsed.full, key.as_str());
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,80}") {
            let _ = parse_key(&s);
        }

        #[test]
        fn random_base62_is_base62(n in 0usize..100) {
            let s = random_base62(n);
            prop_assert_eq!(s.len(), n);
            prop_assert!(is_base62(&s));
        }
    }
}

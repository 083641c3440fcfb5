//! Input rules of the metadata store, in one place so the API's 400 messages and the storage
//! invariants cannot drift apart. Each check returns `StorageError::Invalid` with a message fit
//! for the caller.

use crate::error::{Result, StorageError};

pub const SLUG_LEN_MAX: usize = 63;
pub const NAME_CHARS_MAX: usize = 100;
pub const USERNAME_LEN_MAX: usize = 64;
pub const EMAIL_LEN_MAX: usize = 254;
pub const PASSWORD_LEN_MIN: usize = 8;
/// Argon2 accepts long inputs, but an unbounded password is a cheap way to burn CPU.
pub const PASSWORD_LEN_MAX: usize = 1024;
pub const RETENTION_DAYS_MAX: u32 = 3650;

fn invalid<T>(msg: impl Into<String>) -> Result<T> {
    Err(StorageError::Invalid(msg.into()))
}

/// Organization slug: `[a-z0-9-]{1,63}`, not starting or ending with `-`.
pub fn slug(s: &str) -> Result<()> {
    let ok_chars = s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if s.is_empty() || s.len() > SLUG_LEN_MAX || !ok_chars || s.starts_with('-') || s.ends_with('-')
    {
        return invalid(
            "slug must be 1-63 characters of a-z, 0-9 and '-', not starting or ending with '-'",
        );
    }
    Ok(())
}

/// Display names (organizations, servers, keys, tokens): 1-100 characters, no control
/// characters, no surrounding whitespace.
pub fn display_name(what: &str, s: &str) -> Result<()> {
    let chars = s.chars().count();
    if chars == 0 || chars > NAME_CHARS_MAX {
        return invalid(format!("{what} must be 1-{NAME_CHARS_MAX} characters"));
    }
    if s.chars().any(char::is_control) {
        return invalid(format!("{what} must not contain control characters"));
    }
    if s.trim() != s {
        return invalid(format!("{what} must not start or end with whitespace"));
    }
    Ok(())
}

/// Username: `[a-z0-9][a-z0-9_.-]{0,63}`. Callers lowercase user input first.
pub fn username(s: &str) -> Result<()> {
    let ok_chars = s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
    let ok_first = s
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if s.len() > USERNAME_LEN_MAX || !ok_chars || !ok_first {
        return invalid(
            "username must be 1-64 characters of a-z, 0-9, '_', '.', '-', starting with a letter or digit",
        );
    }
    Ok(())
}

/// Email: a plausible address (one '@' with text on both sides, no spaces), at most 254 bytes.
/// Deliverability is not our business; uniqueness is.
pub fn email(s: &str) -> Result<()> {
    let ok = s.len() <= EMAIL_LEN_MAX
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
        && matches!(s.split_once('@'), Some((local, domain)) if !local.is_empty() && !domain.is_empty() && !domain.contains('@'));
    if !ok {
        return invalid("email must look like name@example.com (at most 254 characters)");
    }
    Ok(())
}

/// Passwords chosen through the API: 8-1024 bytes.
pub fn password(s: &str) -> Result<()> {
    if s.len() < PASSWORD_LEN_MIN || s.len() > PASSWORD_LEN_MAX {
        return invalid(format!(
            "password must be {PASSWORD_LEN_MIN}-{PASSWORD_LEN_MAX} bytes"
        ));
    }
    Ok(())
}

/// The operator's bootstrap password (`MCPOBS_ADMIN_PASSWORD`): any non-empty value up to the
/// maximum, since refusing to start over a short password helps nobody.
pub fn bootstrap_password(s: &str) -> Result<()> {
    if s.is_empty() || s.len() > PASSWORD_LEN_MAX {
        return invalid(format!("admin password must be 1-{PASSWORD_LEN_MAX} bytes"));
    }
    Ok(())
}

pub fn sampling_rate(r: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&r) {
        return invalid("sampling_rate must be a number between 0 and 1");
    }
    Ok(())
}

pub fn retention_days(d: u32) -> Result<()> {
    if d == 0 || d > RETENTION_DAYS_MAX {
        return invalid(format!(
            "retention_days must be between 1 and {RETENTION_DAYS_MAX}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        for good in ["a", "default", "acme-corp", "a1", &"x".repeat(63)] {
            assert!(slug(good).is_ok(), "{good}");
        }
        for bad in ["", "-a", "a-", "Acme", "a_b", "a b", &"x".repeat(64), "ä"] {
            assert!(slug(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn usernames_emails_names() {
        assert!(username("admin").is_ok());
        assert!(username("j.doe-2_x").is_ok());
        for bad in ["", "Admin", ".x", "a b", &"a".repeat(65)] {
            assert!(username(bad).is_err(), "{bad}");
        }
        assert!(email("a@b").is_ok());
        for bad in ["", "a", "@b", "a@", "a b@c", "a@b@c"] {
            assert!(email(bad).is_err(), "{bad}");
        }
        assert!(display_name("name", "Payments API").is_ok());
        for bad in ["", " x", "x ", "a\nb", &"n".repeat(101)] {
            assert!(display_name("name", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn numbers() {
        assert!(sampling_rate(0.0).is_ok() && sampling_rate(1.0).is_ok());
        assert!(sampling_rate(-0.1).is_err() && sampling_rate(1.01).is_err());
        assert!(sampling_rate(f64::NAN).is_err());
        assert!(retention_days(0).is_err() && retention_days(90).is_ok());
    }
}

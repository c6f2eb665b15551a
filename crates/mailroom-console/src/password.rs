//! The optional admin password, for consoles that run for long: stored in the database as
//! an Argon2id hash (PHC string, the `argon2` crate's defaults), never the password. With
//! one set, the login page also takes it; failed attempts are limited per minute.

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use mailroom::Mailroom;
use mailroom::accounts::Accounts;

use crate::Error;

/// The shortest password accepted.
pub const MIN_PASSWORD_LENGTH: usize = 12;

/// Sets the console's admin password (`None` removes it: the one-time login URL is then
/// the only way in).
pub async fn set_password(mailroom: &Mailroom, password: Option<&str>) -> Result<(), Error> {
    let hash = match password {
        Some(password) => {
            if password.chars().count() < MIN_PASSWORD_LENGTH {
                return Err(Error::WeakPassword(format!(
                    "the password has {} characters; give at least {MIN_PASSWORD_LENGTH}",
                    password.chars().count()
                )));
            }
            let salt = SaltString::generate(&mut OsRng);
            Some(
                Argon2::default()
                    .hash_password(password.as_bytes(), &salt)
                    .map_err(|error| Error::WeakPassword(format!("cannot hash it: {error}")))?
                    .to_string(),
            )
        }
        None => None,
    };
    Accounts::new(mailroom.database(), &mailroom.options().key)
        .set_console_password_hash(hash.as_deref())
        .await
        .map_err(|error| Error::Mailroom(Box::new(error.into())))
}

/// Whether `password` is the one `hash` (a PHC string) was made from. A hash that does
/// not parse matches nothing.
pub(crate) fn verify(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let salt = SaltString::generate(&mut OsRng);
        let hash = Argon2::default()
            .hash_password(b"correct horse battery", &salt)
            .unwrap()
            .to_string();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify(&hash, "correct horse battery"));
        assert!(!verify(&hash, "correct horse batterY"));
        assert!(!verify("not a hash", "correct horse battery"));
    }
}

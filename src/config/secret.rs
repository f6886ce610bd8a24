//! Secrets as this process holds them, and whether loading the configuration reads the files
//! they (and CA certificates) come from.

use std::fmt;

/// A password or key. Its value leaves this type only through [`Secret::expose`]; printing,
/// debugging or serializing it gives `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

/// A repository's password as this process has it.
#[derive(Clone, PartialEq, Eq)]
pub enum Password {
    Loaded(Secret),
    /// Not read: the command never contacts a repository ([`FileAccess::Skip`]).
    NotRead,
    /// It cannot be had in this process, and why, with the way to provide it.
    Unavailable(String),
}

impl Password {
    /// The secret, or what to tell the user when there is none.
    pub fn get(&self) -> Result<&Secret, String> {
        match self {
            Password::Loaded(secret) => Ok(secret),
            Password::NotRead => Err("the password was not read".into()),
            Password::Unavailable(reason) => Err(reason.clone()),
        }
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Password::Unavailable(reason) => write!(f, "Unavailable({reason})"),
            _ => f.write_str("***"),
        }
    }
}

impl serde::Serialize for Password {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

/// Whether loading the configuration reads the files it names: password files, credentials,
/// CA certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileAccess {
    /// For commands that never contact a repository (`status`, `repos`, `activate --boot`)
    /// or only forward to the daemon: they must work as any user, outside systemd.
    Skip,
    /// Read and check them. A `credential` outside systemd is [`Password::Unavailable`],
    /// not an error: only a transfer needs it.
    Read,
}

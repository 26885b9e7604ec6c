//! The rights a user can hold on one document.
//!
//! Rights are ordered, each including the ones below it: `read` (open the
//! document, see its text, history and peers) < `write` (also send ops) <
//! `admin` (also manage who else may read and write, and share links). A
//! check asks whether the right held [`allows`](Permission::allows) the one
//! needed.
//!
//! The text form (`"read"`, `"write"`, `"admin"`, lowercase, exact) is the
//! same on the wire, in JSON and in the store.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A right on one document. Ordered: `Read < Write < Admin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    /// See the document: its text, history and peers.
    Read,
    /// Also edit it.
    Write,
    /// Also decide who else may read and write it.
    Admin,
}

/// Text that is not one of `read`, `write`, `admin`.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("permission must be one of read, write, admin (got {got:?})")]
pub struct InvalidPermission {
    /// What was given (at most 64 characters of it).
    pub got: String,
}

impl Permission {
    /// Every permission, lowest first.
    pub const ALL: [Self; 3] = [Self::Read, Self::Write, Self::Admin];

    /// The text form: `"read"`, `"write"` or `"admin"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Admin => "admin",
        }
    }

    /// Parses the text form. Exact: no other case, no whitespace.
    ///
    /// # Errors
    ///
    /// [`InvalidPermission`] for anything but `read`, `write`, `admin`.
    pub fn parse(s: &str) -> Result<Self, InvalidPermission> {
        match s {
            "read" => Ok(Self::Read),
            "write" => Ok(Self::Write),
            "admin" => Ok(Self::Admin),
            _ => Err(InvalidPermission {
                got: s.chars().take(64).collect(),
            }),
        }
    }

    /// True when holding `self` is enough for an action that needs `needed`.
    pub fn allows(self, needed: Permission) -> bool {
        self >= needed
    }
}

impl FromStr for Permission {
    type Err = InvalidPermission;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_and_allows() {
        use Permission::{Admin, Read, Write};
        assert!(Read < Write && Write < Admin);
        for held in Permission::ALL {
            for needed in Permission::ALL {
                assert_eq!(held.allows(needed), held >= needed, "{held} for {needed}");
            }
        }
        assert!(Admin.allows(Read) && Write.allows(Write) && !Read.allows(Write));
        assert!(!Write.allows(Admin));
    }

    #[test]
    fn text_round_trips() {
        for p in Permission::ALL {
            assert_eq!(p.as_str().parse::<Permission>(), Ok(p));
            assert_eq!(Permission::parse(&p.to_string()), Ok(p));
            let json = serde_json::to_string(&p).expect("serialise");
            assert_eq!(json, format!("\"{}\"", p.as_str()));
            assert_eq!(serde_json::from_str::<Permission>(&json).expect("parse"), p);
        }
    }

    #[test]
    fn refuses_other_text() {
        for bad in [
            "", "Read", "WRITE", " admin", "admin ", "owner", "rea", "read\0",
        ] {
            assert!(Permission::parse(bad).is_err(), "{bad:?}");
            assert!(serde_json::from_str::<Permission>(&format!("{bad:?}")).is_err());
        }
        let long = "x".repeat(1000);
        let err = Permission::parse(&long).expect_err("long");
        assert_eq!(err.got.len(), 64);
        assert!(err.to_string().contains("read, write, admin"));
    }
}

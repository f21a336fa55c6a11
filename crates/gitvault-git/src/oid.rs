//! Object ids and object formats, as git prints them.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// A full object id in lowercase hex, exactly as git prints it: 40 digits for SHA-1
/// repositories, 64 for SHA-256 ones.
///
/// Kept as text rather than bytes because every place it travels to (git's stdin, packed-refs,
/// JSON manifests) wants text, and validation on construction makes it safe to write anywhere.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ObjectId(String);

impl ObjectId {
    /// Accepts exactly 40 or 64 lowercase hex digits, nothing else (no abbreviations, no
    /// uppercase, no surrounding whitespace).
    pub fn parse(s: &str) -> Result<Self, Error> {
        if is_full_hex(s) { Ok(Self(s.to_owned())) } else { Err(Error::InvalidObjectId { value: s.to_owned() }) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The object format this id belongs to, known from its length.
    pub fn format(&self) -> ObjectFormat {
        if self.0.len() == ObjectFormat::Sha256.hex_len() { ObjectFormat::Sha256 } else { ObjectFormat::Sha1 }
    }
}

fn is_full_hex(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for ObjectId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

impl TryFrom<String> for ObjectId {
    type Error = Error;

    fn try_from(s: String) -> Result<Self, Error> {
        if is_full_hex(&s) { Ok(Self(s)) } else { Err(Error::InvalidObjectId { value: s }) }
    }
}

impl From<ObjectId> for String {
    fn from(oid: ObjectId) -> Self {
        oid.0
    }
}

impl AsRef<str> for ObjectId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// The hash function of a repository (`extensions.objectFormat`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectFormat {
    Sha1,
    Sha256,
}

impl ObjectFormat {
    /// The name git uses (`--object-format=sha1`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
        }
    }

    /// Length of an object id in hex digits.
    pub fn hex_len(self) -> usize {
        match self {
            Self::Sha1 => 40,
            Self::Sha256 => 64,
        }
    }
}

impl fmt::Display for ObjectFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ObjectFormat {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "sha1" => Ok(Self::Sha1),
            "sha256" => Ok(Self::Sha256),
            other => Err(Error::Parse { what: "object format", line: other.to_owned() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_id_accepts_full_lowercase_hex_only() {
        let sha1 = "0123456789abcdef0123456789abcdef01234567";
        let sha256 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(ObjectId::parse(sha1).map(|o| o.format()).ok(), Some(ObjectFormat::Sha1));
        assert_eq!(ObjectId::parse(sha256).map(|o| o.format()).ok(), Some(ObjectFormat::Sha256));
        for bad in [
            "",
            "0123456",
            "0123456789ABCDEF0123456789abcdef01234567",
            "0123456789abcdef0123456789abcdef0123456g",
            " 0123456789abcdef0123456789abcdef0123456",
            "0123456789abcdef0123456789abcdef012345678",
        ] {
            assert!(ObjectId::parse(bad).is_err(), "{bad:?} must be rejected");
            assert!(ObjectId::try_from(bad.to_owned()).is_err());
        }
    }

    #[test]
    fn object_format_round_trips_its_name() {
        for format in [ObjectFormat::Sha1, ObjectFormat::Sha256] {
            assert_eq!(format.as_str().parse::<ObjectFormat>().ok(), Some(format));
        }
        assert!("md5".parse::<ObjectFormat>().is_err());
    }
}

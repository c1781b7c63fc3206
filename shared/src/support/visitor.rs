//! Visitors (pure): the name and email a visitor gives (`identify`), so a visitor who leaves
//! can be answered later and agents see who they talk to; and blocks.

use serde::{Deserialize, Serialize};

use crate::protocol::{ErrorCode, Rejection};
use crate::text;

/// Longest visitor name, characters.
pub const MAX_VISITOR_NAME_CHARS: usize = 80;
/// Longest email address (RFC 5321's path limit), bytes.
pub const MAX_EMAIL_BYTES: usize = 254;

/// What a visitor said about themself ([`crate::store::DeskKind::Visitor`]).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct VisitorInfo {
    /// Their name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Their email address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

impl VisitorInfo {
    /// This, with what `update` gives replacing what it names.
    pub fn merged(&self, update: &VisitorInfo) -> VisitorInfo {
        VisitorInfo {
            name: update.name.clone().or_else(|| self.name.clone()),
            email: update.email.clone().or_else(|| self.email.clone()),
        }
    }
}

/// `identify`'s fields checked and tidied: the name without reordering or invisible characters
/// and trimmed, at most [`MAX_VISITOR_NAME_CHARS`], not blank, no control
/// characters; the email one address, lower-cased domain. At least one must be given.
pub fn checked_identity(name: Option<&str>, email: Option<&str>) -> Result<VisitorInfo, Rejection> {
    let invalid = |message: &str| Rejection::new(ErrorCode::Invalid, message);
    let name = name
        .map(|n| {
            // Names need no reordering or hidden characters; the zero-width joiner stays for
            // emoji sequences.
            let kept: String = n
                .chars()
                .filter(|&c| c == '\u{200d}' || !text::is_invisible_or_reordering(c))
                .collect();
            let trimmed = kept.trim();
            if text::is_blank(trimmed) {
                Err(invalid("name must not be empty"))
            } else if trimmed.chars().count() > MAX_VISITOR_NAME_CHARS {
                Err(invalid("name is over 80 characters"))
            } else if trimmed.chars().any(char::is_control) {
                Err(invalid("name must not contain control characters"))
            } else {
                Ok(trimmed.to_owned())
            }
        })
        .transpose()?;
    let email = email.map(checked_email).transpose()?;
    if name.is_none() && email.is_none() {
        return Err(invalid("identify needs a name or an email"));
    }
    Ok(VisitorInfo { name, email })
}

/// One plausible address: `local@domain.tld`, no spaces or controls, within the length limit.
/// Deliverability is the customer's business; this refuses what cannot be an address.
fn checked_email(email: &str) -> Result<String, Rejection> {
    let email = email.trim();
    let invalid = || Rejection::new(ErrorCode::Invalid, "email is not an address");
    if email.len() > MAX_EMAIL_BYTES || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid());
    }
    let (local, domain) = email.rsplit_once('@').ok_or_else(invalid)?;
    let labels_ok = domain
        .split('.')
        .all(|l| !l.is_empty() && !l.starts_with('-') && !l.ends_with('-'));
    if local.is_empty() || local.contains('@') || !domain.contains('.') || !labels_ok {
        return Err(invalid());
    }
    Ok(format!("{local}@{}", domain.to_lowercase()))
}

/// A blocked visitor ([`crate::store::DeskKind::Block`]): their tokens for the tenant are refused
/// until an agent unblocks them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRecord {
    /// The agent who blocked them.
    pub by: String,
    /// When, epoch milliseconds.
    pub at_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        let v = checked_identity(Some("  Zoë \u{200b}"), None).unwrap();
        assert_eq!(v.name.as_deref(), Some("Zoë"));
        let v = checked_identity(Some("Ann\u{202e}lee"), None).unwrap();
        assert_eq!(v.name.as_deref(), Some("Annlee"), "no override survives");
        assert!(checked_identity(Some("\u{202e}\u{200b} "), None).is_err());
        assert!(checked_identity(Some(&"x".repeat(81)), None).is_err());
        assert!(checked_identity(Some("a\u{7}b"), None).is_err());
        assert!(checked_identity(None, None).is_err());
    }

    #[test]
    fn emails_are_plausible() {
        let v = checked_identity(None, Some(" Ann.Lee+x@Example.COM ")).unwrap();
        assert_eq!(v.email.as_deref(), Some("Ann.Lee+x@example.com"));
        for bad in [
            "",
            "ann",
            "ann@",
            "@x.io",
            "ann@localhost",
            "a b@x.io",
            "ann@x..io",
            "ann@-x.io",
        ] {
            assert!(checked_identity(None, Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn updates_replace_what_they_name() {
        let old = VisitorInfo {
            name: Some("Ann".into()),
            email: Some("a@x.io".into()),
        };
        let new = old.merged(&VisitorInfo {
            name: None,
            email: Some("b@x.io".into()),
        });
        assert_eq!(new.name.as_deref(), Some("Ann"));
        assert_eq!(new.email.as_deref(), Some("b@x.io"));
    }
}

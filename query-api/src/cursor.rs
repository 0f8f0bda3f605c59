//! Page cursors: opaque to clients, a position in a total order to the server.
//!
//! Lists are ordered by a unique key that only grows for new items (UUIDv7 ids, or a time
//! plus id), so a page that starts strictly after the last item seen neither repeats nor skips
//! anything while new items arrive at the head.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed cursor")]
pub struct CursorError;

/// Encodes the sort key of the last item of a page.
pub fn encode(key: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("c1:{key}"))
}

pub fn decode(cursor: &str) -> Result<String, CursorError> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| CursorError)?;
    let text = String::from_utf8(bytes).map_err(|_| CursorError)?;
    text.strip_prefix("c1:").map(str::to_owned).filter(|k| !k.is_empty()).ok_or(CursorError)
}

/// Page size: default 20, 1-100.
pub fn limit(raw: Option<&str>) -> Result<i64, String> {
    match raw {
        None => Ok(20),
        Some(s) => match s.parse::<i64>() {
            Ok(n) if (1..=100).contains(&n) => Ok(n),
            _ => Err("limit must be an integer from 1 to 100".to_owned()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn limits() {
        assert_eq!(limit(None), Ok(20));
        assert_eq!(limit(Some("1")), Ok(1));
        assert_eq!(limit(Some("100")), Ok(100));
        for bad in ["0", "101", "-1", "ten", ""] {
            assert!(limit(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn garbage_cursors_are_rejected() {
        for bad in ["", "%%%", &URL_SAFE_NO_PAD.encode("c2:x"), &URL_SAFE_NO_PAD.encode("c1:")] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn round_trips(key in "\\PC{1,80}") {
            prop_assert_eq!(decode(&encode(&key)), Ok(key));
        }
    }
}

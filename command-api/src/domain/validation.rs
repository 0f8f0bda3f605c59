//! Validated inputs. A value of these types has passed the contract's field rules, so code
//! past the HTTP edge never re-checks them. Lengths count Unicode scalar values, not bytes.

use agora_platform::http::ApiError;

/// Why a text field was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("must be {min}-{max} characters, got {got}")]
    Length { min: usize, max: usize, got: usize },
    #[error("must not contain control characters other than newline and tab")]
    ControlCharacter,
    #[error("must match ^[a-z0-9_]{{3,30}}$")]
    HandleShape,
}

impl TextError {
    pub fn on(self, field: &str) -> ApiError {
        ApiError::invalid_field(field, self.to_string())
    }
}

/// Checks length in characters and refuses control characters other than `\n` and `\t`.
pub fn check_text(s: &str, min: usize, max: usize) -> Result<(), TextError> {
    if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(TextError::ControlCharacter);
    }
    let got = s.chars().count();
    if got < min || got > max {
        return Err(TextError::Length { min, max, got });
    }
    Ok(())
}

macro_rules! text_type {
    ($(#[$doc:meta])* $name:ident, $min:literal, $max:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name(String);

        impl $name {
            pub fn parse(s: String) -> Result<Self, TextError> {
                check_text(&s, $min, $max).map(|()| Self(s))
            }

            pub fn into_inner(self) -> String {
                self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

text_type!(
    /// 1-50 characters.
    DisplayName, 1, 50
);
text_type!(
    /// 0-280 characters.
    Bio, 0, 280
);
text_type!(
    /// 1-2000 characters.
    PostText, 1, 2000
);
text_type!(
    /// 1-1000 characters.
    CommentText, 1, 1000
);
text_type!(
    /// 1-4000 characters.
    MessageText, 1, 4000
);
text_type!(
    /// 8-128 characters. Never logged, never in an event.
    Password, 8, 128
);

/// `^[a-z0-9_]{3,30}$`: the unique public name of a user.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Handle(String);

impl Handle {
    pub fn parse(s: String) -> Result<Self, TextError> {
        let n = s.chars().count();
        if !(3..=30).contains(&n) || !s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
            return Err(TextError::HandleShape);
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lengths_count_characters_not_bytes() {
        // 50 four-byte characters are 200 bytes but a valid display name.
        assert!(DisplayName::parse("🦀".repeat(50)).is_ok());
        assert_eq!(DisplayName::parse("é".repeat(51)), Err(TextError::Length { min: 1, max: 50, got: 51 }));
        assert!(DisplayName::parse(String::new()).is_err());
        assert!(Bio::parse(String::new()).is_ok());
    }

    #[test]
    fn control_characters_other_than_newline_and_tab_are_refused() {
        assert!(PostText::parse("line one\nline\ttwo".into()).is_ok());
        for bad in ["a\u{0}b", "a\rb", "bell\u{7}", "del\u{7f}", "c1\u{85}"] {
            assert_eq!(PostText::parse(bad.into()), Err(TextError::ControlCharacter), "{bad:?}");
        }
    }

    #[test]
    fn handles() {
        for good in ["abc", "a_1", "x".repeat(30).as_str()] {
            assert!(Handle::parse(good.into()).is_ok(), "{good}");
        }
        for bad in ["ab", "Abc", "a-b", "a b", "ébc", &"x".repeat(31)] {
            assert!(Handle::parse(bad.into()).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn handle_accepts_exactly_the_contract_regex(s in "\\PC{0,40}") {
            let shape = (3..=30).contains(&s.chars().count())
                && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            prop_assert_eq!(Handle::parse(s.clone()).is_ok(), shape);
        }

        #[test]
        fn post_text_length_rule(n in 0usize..2100) {
            prop_assert_eq!(PostText::parse("ж".repeat(n)).is_ok(), (1..=2000).contains(&n));
        }
    }
}

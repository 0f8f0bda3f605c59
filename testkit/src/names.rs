//! How tests name what they create on the shared local stack (topics, consumer groups,
//! databases, Redis keys), so that `agora-clean-test-data` can find and remove what earlier
//! runs left behind: a test's name starts with one of [`TAGS`] followed by at least
//! [`HEX_DIGITS`] lowercase hex digits. Nothing the services create by default (`agora`,
//! `agora_write`, `agora-projector`, ...) has that shape.

/// The tags tests use, one per suite, so a leftover shows where it came from.
pub const TAGS: &[&str] = &["t", "st", "sq", "ql", "tstore_", "explain_", "log-reader-"];

/// How many hex digits follow the tag: 40 bits, unique enough across a run's tests.
pub const HEX_DIGITS: usize = 10;

/// A fresh name prefix for one test: `tag` and [`HEX_DIGITS`] random hex digits.
///
/// # Panics
/// When `tag` is not one of [`TAGS`]: the cleaner would never find what the test creates.
pub fn test_prefix(tag: &str) -> String {
    assert!(TAGS.contains(&tag), "test tag {tag:?} is not in agora_testkit::names::TAGS");
    format!("{tag}{}", &uuid::Uuid::new_v4().simple().to_string()[..HEX_DIGITS])
}

/// Whether `name` (a topic, group, database or key) was made by a test.
pub fn is_test_name(name: &str) -> bool {
    TAGS.iter().any(|tag| {
        name.strip_prefix(tag).is_some_and(|rest| {
            rest.len() >= HEX_DIGITS
                && rest.bytes().take(HEX_DIGITS).all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_made_from_a_test_prefix_are_test_names_whatever_follows() {
        for tag in TAGS {
            let prefix = test_prefix(tag);
            for name in
                [prefix.clone(), format!("{prefix}.posts"), format!("{prefix}_read"), format!("{prefix}:rt:seen:u1")]
            {
                assert!(is_test_name(&name), "{name}");
            }
        }
    }

    #[test]
    fn the_services_default_names_and_kafkas_own_are_not_test_names() {
        for name in [
            "agora.posts",
            "agora_write",
            "agora",
            "agora-projector",
            "agora-realtime",
            "__consumer_offsets",
            "admin",
            "local",
            "bench_bulk_0123456789",
            // a tag followed by too few or non-hex digits
            "t0123",
            "test_db",
            "tstore_x123456789a",
            "tABCDEF0123",
        ] {
            assert!(!is_test_name(name), "{name}");
        }
    }

    #[test]
    #[should_panic(expected = "not in agora_testkit::names::TAGS")]
    fn an_unlisted_tag_is_refused() {
        test_prefix("zz");
    }
}

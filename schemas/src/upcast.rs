//! Upcasting: old schema versions become the current one as they are read.
//!
//! Stored events never change. When a payload's shape changes, its `SCHEMA_VERSION` is bumped
//! and one [`Upcaster`] step `vN -> vN+1` is added to [`Upcasters::current`]; every reader then
//! sees old events in the new shape, and the committed v1 fixtures prove it.

use serde_json::Value;

/// One step: turns a payload of `event_type` at `from_version` into `from_version + 1`.
pub trait Upcaster: Send + Sync {
    fn event_type(&self) -> &str;
    fn source_version(&self) -> u16;
    fn upcast(&self, payload: Value) -> Result<Value, String>;
}

/// An [`Upcaster`] made of a plain function.
#[derive(Debug, Clone, Copy)]
pub struct FnUpcaster {
    pub event_type: &'static str,
    pub from_version: u16,
    pub step: fn(Value) -> Result<Value, String>,
}

impl Upcaster for FnUpcaster {
    fn event_type(&self) -> &str {
        self.event_type
    }
    fn source_version(&self) -> u16 {
        self.from_version
    }
    fn upcast(&self, payload: Value) -> Result<Value, String> {
        (self.step)(payload)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpcastError {
    #[error("no upcaster from {event_type} v{from} towards v{target}")]
    MissingStep { event_type: String, from: u16, target: u16 },
    #[error("{event_type} v{version} is newer than this reader's v{target}")]
    FromTheFuture { event_type: String, version: u16, target: u16 },
    #[error("upcasting {event_type} v{from}: {reason}")]
    Failed { event_type: String, from: u16, reason: String },
}

/// An ordered set of upcasting steps.
#[derive(Default)]
pub struct Upcasters {
    steps: Vec<Box<dyn Upcaster>>,
}

impl std::fmt::Debug for Upcasters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.steps.iter().map(|s| (s.event_type(), s.source_version()))).finish()
    }
}

impl Upcasters {
    /// The steps every reader applies. Empty while every event is at v1.
    pub fn current() -> Self {
        Self::default()
    }

    pub fn with(mut self, step: impl Upcaster + 'static) -> Self {
        self.steps.push(Box::new(step));
        self
    }

    /// Brings `payload` from `version` to `target`, one step at a time.
    pub fn upcast(
        &self,
        event_type: &str,
        mut version: u16,
        mut payload: Value,
        target: u16,
    ) -> Result<Value, UpcastError> {
        if version > target {
            return Err(UpcastError::FromTheFuture { event_type: event_type.to_owned(), version, target });
        }
        while version < target {
            let step =
                self.steps.iter().find(|s| s.event_type() == event_type && s.source_version() == version).ok_or_else(
                    || UpcastError::MissingStep { event_type: event_type.to_owned(), from: version, target },
                )?;
            payload = step.upcast(payload).map_err(|reason| UpcastError::Failed {
                event_type: event_type.to_owned(),
                from: version,
                reason,
            })?;
            version += 1;
        }
        Ok(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn add_field(mut v: Value) -> Result<Value, String> {
        v.as_object_mut().ok_or("not an object")?.insert("added".into(), json!(true));
        Ok(v)
    }

    fn rename_field(mut v: Value) -> Result<Value, String> {
        let obj = v.as_object_mut().ok_or("not an object")?;
        let added = obj.remove("added").ok_or("no field `added`")?;
        obj.insert("renamed".into(), added);
        Ok(v)
    }

    #[test]
    fn steps_chain_in_version_order() {
        let ups = Upcasters::default()
            .with(FnUpcaster { event_type: "x.y", from_version: 2, step: rename_field })
            .with(FnUpcaster { event_type: "x.y", from_version: 1, step: add_field });
        let out = ups.upcast("x.y", 1, json!({"a": 1}), 3);
        assert_eq!(out, Ok(json!({"a": 1, "renamed": true})));
    }

    #[test]
    fn same_version_is_untouched_and_gaps_are_errors() {
        let ups = Upcasters::default().with(FnUpcaster { event_type: "x.y", from_version: 1, step: add_field });
        assert_eq!(ups.upcast("x.y", 2, json!({}), 2), Ok(json!({})));
        assert!(matches!(ups.upcast("x.y", 1, json!({}), 3), Err(UpcastError::MissingStep { from: 2, .. })));
        assert!(matches!(ups.upcast("x.y", 4, json!({}), 3), Err(UpcastError::FromTheFuture { .. })));
        assert!(matches!(ups.upcast("x.y", 1, json!([]), 2), Err(UpcastError::Failed { .. })));
    }
}

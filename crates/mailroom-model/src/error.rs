//! The model's error: a value an administrator typed was refused. (A send's failure is a
//! `TransportError`, beside the transport port in `transport.rs`.)

use std::fmt;

/// A value was refused. `Display` gives one line: the field, the problem and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError {
    /// The setting or argument that was refused, in the user's terms (`port`, `smtp user`).
    pub field: &'static str,
    /// What is wrong with the value.
    pub problem: String,
    /// What to do instead, in prose that names no program.
    pub fix: String,
    /// The action that fixes it, for a front end to offer, when there is one (boxed to
    /// keep `Result<_, ValidationError>` small).
    remedy: Option<Box<crate::Remedy>>,
}

impl ValidationError {
    /// A refusal of `field` with a problem and a fix.
    pub fn new(field: &'static str, problem: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            field,
            problem: problem.into(),
            fix: fix.into(),
            remedy: None,
        }
    }

    /// Adds the action that fixes it.
    #[must_use]
    pub fn with_remedy(mut self, remedy: crate::Remedy) -> Self {
        self.remedy = Some(Box::new(remedy));
        self
    }

    /// The action that fixes it, when there is one.
    pub fn remedy(&self) -> Option<&crate::Remedy> {
        self.remedy.as_deref()
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}; {}", self.field, self.problem, self.fix)
    }
}

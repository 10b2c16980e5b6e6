//! One finding of `kennel doctor`: ok, or the cause and the fix. Below
//! the checks themselves (doctor, doctor_net), which all make these.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok(String),
    /// Works, but something the user may want is missing.
    Warn {
        cause: String,
        fix: String,
    },
    Fail {
        cause: String,
        fix: String,
    },
}

pub(crate) fn ok(name: &'static str, what: impl Into<String>) -> Check {
    Check {
        name,
        outcome: Outcome::Ok(what.into()),
    }
}

pub(crate) fn fail(name: &'static str, cause: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        name,
        outcome: Outcome::Fail {
            cause: cause.into(),
            fix: fix.into(),
        },
    }
}

pub(crate) fn warn(name: &'static str, cause: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        name,
        outcome: Outcome::Warn {
            cause: cause.into(),
            fix: fix.into(),
        },
    }
}

//! Features: the parts of the host application that send mail, and which accounts each may
//! use.

use std::borrow::Cow;

use serde::Serialize;

use crate::ValidationError;

/// Which accounts a feature may send with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccountPolicy {
    /// The current user's bound account if there is one, else the company account.
    UserThenCompany,
    /// Only the company account.
    CompanyOnly,
}

/// A sending feature of the host application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Feature {
    /// Stable kebab-case name, e.g. `sales-document`.
    pub name: Cow<'static, str>,
    /// What the feature is, for lists and errors.
    pub description: Cow<'static, str>,
    /// Which accounts it may use.
    pub policy: AccountPolicy,
}

/// Sales Document Entry (the guide's example of a feature using the user's account).
pub const SALES_DOCUMENT: &str = "sales-document";
/// Smart printing (documents emailed as they are printed).
pub const SMART_PRINTING: &str = "smart-printing";
/// The headless automation agent.
pub const AUTOMATION_AGENT: &str = "automation-agent";

impl Feature {
    /// A feature with a validated name.
    pub fn new(
        name: impl Into<Cow<'static, str>>,
        description: impl Into<Cow<'static, str>>,
        policy: AccountPolicy,
    ) -> Result<Self, ValidationError> {
        let name = name.into();
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-');
        if !valid {
            return Err(ValidationError::new(
                "feature name",
                format!("`{}` is not a feature name", name.escape_debug()),
                "use 1 to 64 lowercase letters, digits and hyphens, e.g. purchase-orders",
            ));
        }
        Ok(Self {
            name,
            description: description.into(),
            policy,
        })
    }
}

/// The features a host application sends from: the guide's three by default, plus its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureCatalog {
    features: Vec<Feature>,
}

impl Default for FeatureCatalog {
    fn default() -> Self {
        Self::with_defaults()
    }
}

impl FeatureCatalog {
    /// The guide's features: sales document entry and smart printing may use the current
    /// user's account; the automation agent, which has no signed-in user, uses the company
    /// account only.
    pub fn with_defaults() -> Self {
        let builtin = |name: &'static str, description: &'static str, policy| Feature {
            name: Cow::Borrowed(name),
            description: Cow::Borrowed(description),
            policy,
        };
        Self {
            features: vec![
                builtin(
                    SALES_DOCUMENT,
                    "Sales Document Entry: order confirmations, invoices",
                    AccountPolicy::UserThenCompany,
                ),
                builtin(
                    SMART_PRINTING,
                    "Smart printing: documents emailed as they print",
                    AccountPolicy::UserThenCompany,
                ),
                builtin(
                    AUTOMATION_AGENT,
                    "Automation agent: unattended sends",
                    AccountPolicy::CompanyOnly,
                ),
            ],
        }
    }

    /// Adds a host application's feature; a name already present is refused.
    pub fn register(&mut self, feature: Feature) -> Result<(), ValidationError> {
        if self.features.iter().any(|known| known.name == feature.name) {
            return Err(ValidationError::new(
                "feature name",
                format!("`{}` is already registered", feature.name),
                "choose another name",
            ));
        }
        self.features.push(feature);
        Ok(())
    }

    /// The feature of that name, or an error listing the known ones.
    pub fn get(&self, name: &str) -> Result<&Feature, ValidationError> {
        let wanted = name.trim();
        self.features
            .iter()
            .find(|feature| feature.name.eq_ignore_ascii_case(wanted))
            .ok_or_else(|| {
                let known: Vec<&str> = self.features.iter().map(|f| f.name.as_ref()).collect();
                ValidationError::new(
                    "feature",
                    format!("`{}` is not a known feature", wanted.escape_debug()),
                    format!("use one of {}", known.join(", ")),
                )
            })
    }

    /// Every feature, defaults first.
    pub fn iter(&self) -> impl Iterator<Item = &Feature> {
        self.features.iter()
    }
}

//! Google Cloud publishers: a service account, and whether a token's claims name it (a
//! verified e-mail, and the subject when the publisher names one). Signing certificates are
//! matched in `signer`.

use super::{need_claim, Claims};

/// A Google Cloud publisher's constraints.
#[derive(Debug, Clone)]
pub(super) struct GoogleConstraints {
    /// The service account e-mail.
    pub(super) email: String,
    /// The subject, when the publisher names one.
    pub(super) subject: Option<String>,
}

impl GoogleConstraints {
    /// How specific the publisher is: a subject counts.
    pub(super) fn specificity(&self) -> u32 {
        1 + u32::from(self.subject.is_some())
    }

    /// Checks the claims of a Google token; `Err` says what differed.
    pub(super) fn check_claims(&self, claims: &dyn Claims) -> Result<(), String> {
        let need = |name: &str| need_claim(claims, name);
        let GoogleConstraints { email, subject } = self;
        if need("email")? != email {
            return Err(format!("the service account is not {email}"));
        }
        if claims.boolean("email_verified") != Some(true) {
            return Err("the email is not verified".into());
        }
        if let Some(sub) = subject {
            if need("sub")? != sub {
                return Err("the subject differs".into());
            }
        }
        Ok(())
    }
}

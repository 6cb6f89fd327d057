//! [`InferError`]: what can go wrong in a model call, in the kinds the server maps to status
//! codes (400 naming the field, 404, 503, a cancelled request, 500 with the cause logged).

/// An error of a model call.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    /// The request has a bad value; `field` is the request field (`prompt`, `max_tokens`,
    /// `input`, ...).
    #[error("invalid {field}: {message}")]
    BadRequest {
        field: &'static str,
        message: String,
    },
    /// The model does not have what was asked for (a feature it does not take, an unknown id).
    #[error("{0}")]
    NotFound(String),
    /// The model is at capacity (a full queue) or stopping; try again later.
    #[error("{0}")]
    Overloaded(String),
    /// The request was cancelled before it finished.
    #[error("the request was cancelled")]
    Cancelled,
    /// The model failed; `op` names the operation, the cause is in `source`.
    #[error("{op}")]
    Internal {
        op: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// `Result` with [`InferError`].
pub type Result<T, E = InferError> = std::result::Result<T, E>;

impl InferError {
    /// A bad value of the request field `field`.
    pub fn bad_request(field: &'static str, message: impl Into<String>) -> Self {
        InferError::BadRequest {
            field,
            message: message.into(),
        }
    }

    /// A failure of `op` caused by `source`.
    pub fn internal(
        op: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        InferError::Internal {
            op: op.into(),
            source: source.into(),
        }
    }

    /// This error and its causes on one line (`a: b: c`), for logs.
    pub fn chain(&self) -> String {
        let mut s = self.to_string();
        let mut cur = std::error::Error::source(self);
        while let Some(e) = cur {
            s.push_str(": ");
            s.push_str(&e.to_string());
            cur = e.source();
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_request_names_the_field_and_internal_keeps_the_cause() {
        let e = InferError::bad_request("top_p", "2 is not in (0, 1]");
        assert_eq!(e.to_string(), "invalid top_p: 2 is not in (0, 1]");
        let io = std::io::Error::other("disk gone");
        let e = InferError::internal("reading weights", io);
        assert!(std::error::Error::source(&e).is_some());
        assert_eq!(e.chain(), "reading weights: disk gone");
    }
}

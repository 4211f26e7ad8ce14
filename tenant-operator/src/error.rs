use kube::runtime::finalizer::Error as FinalizerError;

/// Everything the operator's reconcile can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API ({object}): {source}")]
    Kube {
        object: String,
        #[source]
        source: kube::Error,
    },

    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),

    #[error("serialising an object: {0}")]
    Serialize(#[from] serde_json::Error),

    #[error("the Tenant has no name")]
    Unnamed,

    #[error("the watches of the Tenants' children have not listed them yet")]
    CacheNotSynced,

    /// A held backup's deletion waits for the hold's release.
    #[error("backup {0} is held")]
    Held(String),

    /// A step runs (a Job) and its end wakes the reconcile.
    #[error("{0}")]
    Waiting(String),
}

impl Error {
    pub fn kube(object: impl Into<String>, source: kube::Error) -> Self {
        Self::Kube { object: object.into(), source }
    }

    /// A short, stable label for metrics and events.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Kube { source: kube::Error::Api(status), .. } if status.code == 409 => "Conflict",
            Self::Kube { source: kube::Error::Api(status), .. } if status.code == 422 => "Rejected",
            Self::Kube { source: kube::Error::Api(status), .. } if status.code == 403 => "Forbidden",
            Self::Kube { .. } => "ApiError",
            // What failed inside the finalizer's apply or cleanup is the reason worth reporting.
            Self::Finalizer(inner) => match inner.as_ref() {
                FinalizerError::ApplyFailed(e) | FinalizerError::CleanupFailed(e) => e.reason(),
                _ => "Finalizer",
            },
            Self::Serialize(_) => "Serialize",
            Self::Unnamed => "Unnamed",
            Self::CacheNotSynced => "CacheNotSynced",
            Self::Held(_) => "Held",
            Self::Waiting(_) => "Waiting",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

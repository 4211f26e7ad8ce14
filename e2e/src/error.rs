use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong while preparing or running the test environment.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error("`{command}` failed with {status}\n--- last lines of its output ---\n{tail}")]
    CommandFailed { command: String, status: String, tail: String },

    #[error("{name} exited unexpectedly ({status}); its log is {log}\n--- last lines of its log ---\n{tail}")]
    ChildExited { name: String, status: String, log: PathBuf, tail: String },

    #[error("{what} was not ready after {waited:?}: {last_error}\n--- last lines of {log} ---\n{tail}")]
    NotReady { what: String, waited: Duration, last_error: String, log: PathBuf, tail: String },

    #[error("missing prerequisite: {0}")]
    Prerequisite(String),

    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),

    #[error("kubeconfig: {0}")]
    KubeConfig(String),

    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),

    #[error("Tryton JSON-RPC {method}: {message}")]
    TrytonRpc { method: String, message: String },

    #[error("environment state file {path}: {message}")]
    State { path: PathBuf, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches a human context to an I/O error, since a bare `No such file or directory`
/// says nothing about which file.
pub trait IoContext<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io { context: context(), source })
    }
}

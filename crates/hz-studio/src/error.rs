//! The one error type of the studio. Every message names what is wrong and where (a path, a
//! gym, a revision), because the builder shows it to the person as it is.

use crate::analysis::{DiagnosticView, Severity};

/// Everything a studio call can refuse or fail with.
#[derive(Debug, thiserror::Error)]
pub enum StudioError {
    #[error("cannot {action} {path}: {source}")]
    Io { action: &'static str, path: String, source: std::io::Error },
    #[error("{what} {name:?} is not a valid name: {reason}")]
    InvalidName { what: &'static str, name: String, reason: String },
    #[error("{path} already exists; pick another name")]
    Exists { path: String },
    #[error("{what} not found: {path}")]
    NotFound { what: &'static str, path: String },
    #[error("no template {name:?} in {dir} (templates: {available})")]
    UnknownTemplate { name: String, dir: String, available: String },
    #[error("no templates folder is configured (set HZ_TEMPLATES_DIR)")]
    NoTemplates,
    #[error("{} is not a valid gym: {}", .file, summary(.problems))]
    NotAGym { file: String, problems: Vec<DiagnosticView> },
    #[error("the gym cannot run: {}", summary(.problems))]
    Invalid { problems: Vec<DiagnosticView> },
    #[error("no gym is being played: call play_reset first")]
    NoEpisode,
    #[error("{path} has uncommitted changes{}; commit them first or force the checkout to discard them", .gym_id.as_deref().map(|id| format!(" (gym id {})", &id[..id.len().min(12)])).unwrap_or_default())]
    Dirty { path: String, gym_id: Option<String> },
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Gym(#[from] hz_gym::GymError),
    #[error(transparent)]
    Storage(#[from] hz_storage::StorageError),
}

impl StudioError {
    pub(crate) fn io<'a>(action: &'static str, path: &'a std::path::Path) -> impl FnOnce(std::io::Error) -> Self + 'a {
        move |source| StudioError::Io { action, path: path.display().to_string(), source }
    }
}

/// The first problems, one per line after the count.
fn summary(problems: &[DiagnosticView]) -> String {
    let errors: Vec<&DiagnosticView> = problems.iter().filter(|d| d.severity == Severity::Error).collect();
    let shown: Vec<String> = errors.iter().take(5).map(|d| d.to_string()).collect();
    let more = errors.len().saturating_sub(shown.len());
    let mut s = format!("{} problem(s): {}", errors.len(), shown.join("; "));
    if more > 0 {
        s.push_str(&format!("; and {more} more"));
    }
    s
}

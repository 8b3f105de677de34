//! Chat templates, tool-call parsing and loss masks: the text layer between a gym and a
//! language model.
//!
//! - [`ChatTemplate`]: a model folder's Jinja chat template (or a [`Builtin`] one for the
//!   project's own models) rendered as `transformers.apply_chat_template` renders it.
//! - [`to_action`] / [`parse_tool_calls`]: a completion → the JSON action `hz_gym::Env::step`
//!   accepts, or an [`ActionError`] saying what is wrong and where, with the value to step
//!   the gym with so that it records an invalid action itself.
//! - [`ChatTokenizer`]: conversation → token ids and a loss mask that is 1 exactly on the
//!   tokens the policy generated; [`Episode`] does the same step by step for the
//!   trainer's generation loop.
//!
//! This crate does not run models, sample, or talk to gyms; it depends on neither.
//!
//! # Invalid actions
//!
//! A completion with no usable tool call still steps the gym: the trainer passes
//! [`ActionError::gym_action`] (the raw text, or the list of calls when there are several)
//! to `Env::step`, which rejects it with its own `invalid_action_penalty` and its own
//! message as the next observation — the same words the Python and HTTP faces of the gym
//! give, and a step that counts toward `max_steps`. Tool names and argument schemas are
//! likewise left to the gym's `ActionParser`. The [`ActionError`] (kind, byte offset,
//! snippet) is for logs and the completions table.
//!
//! # Masks
//!
//! Masks come from incremental rendering: each assistant turn's prompt (the conversation
//! before it, with the generation prompt) must be a prefix of the conversation with it,
//! or [`ChatError::NotPrefixStable`] says where they part. The policy's part of a turn is
//! its text and the end-of-turn token; segments are tokenized one by one, the way the
//! generation loop produces them. Record generated turns as their raw text
//! ([`Message::assistant`]), not as structured tool calls, so the template prints back the
//! tokens that were sampled.

mod action;
mod encode;
mod message;
mod template;

pub use action::{
    parse_tool_calls, strip_end_tokens, to_action, ActionError, ActionErrorKind, ActionMode, CallFormat, ParsedCall,
};
pub use encode::{ChatTokenizer, Encoded, Episode};
pub use message::{Message, Role, Tool, ToolCall};
pub use template::{Builtin, ChatTemplate};

/// Everything that can go wrong turning conversations into model input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatError {
    #[error("cannot read {path}: {reason}")]
    Io { path: String, reason: String },
    #[error("{file}: {reason}")]
    Config { file: String, reason: String },
    #[error("no chat template named {name:?} (available: {})", if available.is_empty() { "none".to_string() } else { available.join(", ") })]
    NoTemplate { name: String, available: Vec<String> },
    #[error("chat template does not parse (line {line}): {reason}")]
    TemplateSyntax { line: usize, reason: String },
    #[error("chat template failed: {reason}")]
    Render { reason: String },
    /// The template's own `raise_exception(...)`.
    #[error("chat template refused the conversation: {0}")]
    Raised(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// Rendering the conversation up to an assistant turn (with the generation prompt) is
    /// not a prefix of rendering it with that turn.
    #[error("chat template is not prefix-stable at assistant message {turn}: at byte {offset} the prompt has {expected:?} but the longer conversation renders {found:?}")]
    NotPrefixStable { turn: usize, offset: usize, expected: String, found: String },
    #[error("cannot find where an assistant turn ends: {0}")]
    NoEndOfTurn(String),
    #[error("{0}")]
    Conversation(String),
}

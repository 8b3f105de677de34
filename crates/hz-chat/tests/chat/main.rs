//! Integration tests: real template texts, a real (trained) tokenizer, the gym's own
//! action parser.

mod actions;
mod common;
mod masks;
mod templates;

//! Conversation → token ids + loss mask, by incremental rendering.
//!
//! For every assistant turn the template is rendered twice: the conversation before it
//! with the generation prompt (what the policy was prompted with), and with it. The first
//! must be a prefix of the second, or the tokens the policy saw would not be the tokens
//! trained on; a template that rewrites earlier turns (one that drops past reasoning, say)
//! fails with [`ChatError::NotPrefixStable`]. The policy's part of a turn is the text
//! between the generation prompt and the end-of-turn token, that token included; the
//! rest (headers, the newline after the end token, environment turns) is masked out.
//!
//! Segments are tokenized one by one, as the generation loop sees them (a prompt, then
//! sampled tokens, then the environment's reply), never as one string: BPE merges across
//! a segment boundary would otherwise change ids the policy sampled.

use crate::message::{Message, Role, Tool};
use crate::template::{token_text, Builtin, ChatTemplate};
use crate::ChatError;
use std::path::Path;
use tokenizers::Tokenizer;

/// Token ids of an episode and its loss mask (1 on tokens the policy generated).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Encoded {
    pub ids: Vec<u32>,
    pub mask: Vec<u8>,
}

impl Encoded {
    fn push(&mut self, ids: &[u32], generated: bool) {
        self.ids.extend_from_slice(ids);
        self.mask.extend(std::iter::repeat_n(u8::from(generated), ids.len()));
    }
}

/// A chat template bound to a tokenizer.
#[derive(Clone)]
pub struct ChatTokenizer {
    template: ChatTemplate,
    tokenizer: Tokenizer,
    end_of_turn: String,
    end_of_turn_id: u32,
}

impl std::fmt::Debug for ChatTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTokenizer")
            .field("template", &self.template)
            .field("end_of_turn", &self.end_of_turn)
            .field("end_of_turn_id", &self.end_of_turn_id)
            .finish()
    }
}

const PROBE: &str = "hzprobe";

impl ChatTokenizer {
    /// Bind a template to a tokenizer. The end-of-turn token is found by rendering a
    /// probe conversation: the first token after an assistant message's text, which must
    /// be a special token.
    pub fn new(template: ChatTemplate, tokenizer: Tokenizer) -> Result<Self, ChatError> {
        let user = [Message::user("hi")];
        let prompt = template.render(&user, &[], true)?;
        let full = template.render(&[Message::user("hi"), Message::assistant(PROBE)], &[], false)?;
        check_prefix(&prompt, &full, 1)?;
        let rest = &full[prompt.len()..];
        let Some(pos) = rest.find(PROBE) else {
            return Err(ChatError::NoEndOfTurn(format!("the probe assistant text is missing from {rest:?}")));
        };
        let suffix = &rest[pos + PROBE.len()..];
        let enc = tokenizer.encode(suffix, false).map_err(|e| ChatError::Tokenizer(e.to_string()))?;
        let added = tokenizer.get_added_tokens_decoder();
        let first = enc.get_ids().first().and_then(|id| added.get(id).filter(|t| t.special).map(|t| (*id, t)));
        let Some((id, token)) = first else {
            return Err(ChatError::NoEndOfTurn(format!(
                "an assistant turn ends with {suffix:?}, which does not start with a special token"
            )));
        };
        if !suffix.starts_with(&token.content) {
            return Err(ChatError::NoEndOfTurn(format!(
                "the end-of-turn token {:?} is not where the turn ends",
                token.content
            )));
        }
        let end_of_turn = token.content.clone();
        Ok(Self { template, tokenizer, end_of_turn, end_of_turn_id: id })
    }

    /// `tokenizer.json` and the folder's template; `fallback` names a built-in template
    /// for a folder that has none (the project's own small models).
    pub fn from_model_dir(dir: &Path, fallback: Option<Builtin>) -> Result<Self, ChatError> {
        let tok_path = dir.join("tokenizer.json");
        let tokenizer = Tokenizer::from_file(&tok_path)
            .map_err(|e| ChatError::Tokenizer(format!("{}: {e}", tok_path.display())))?;
        let template = match (ChatTemplate::from_model_dir(dir), fallback) {
            (Ok(t), _) => t,
            (Err(ChatError::NoTemplate { available, .. }), Some(b)) if available.is_empty() => {
                let (bos, eos) = read_config_tokens(dir)?;
                ChatTemplate::builtin(b)?.with_tokens(bos, eos)
            }
            (Err(e), _) => return Err(e),
        };
        Self::new(template, tokenizer)
    }

    /// A tokenizer and template carried inside one model file (a GGUF file keeps both in its
    /// metadata): the file's own `template`, else the built-in `fallback` with the file's
    /// special tokens.
    pub fn from_embedded(
        tokenizer: Tokenizer,
        template: Option<&str>,
        bos_token: Option<String>,
        eos_token: Option<String>,
        fallback: Option<Builtin>,
    ) -> Result<Self, ChatError> {
        let template = match (template, fallback) {
            (Some(source), _) => ChatTemplate::new(source, bos_token, eos_token)?,
            (None, Some(b)) => ChatTemplate::builtin(b)?.with_tokens(bos_token, eos_token),
            (None, None) => return Err(ChatError::NoTemplate { name: "default".into(), available: Vec::new() }),
        };
        Self::new(template, tokenizer)
    }

    pub fn template(&self) -> &ChatTemplate {
        &self.template
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The token that ends an assistant turn (`<|im_end|>`, `<|eot_id|>`, `<end_of_turn>`).
    pub fn end_of_turn(&self) -> &str {
        &self.end_of_turn
    }

    /// Ids generation stops on: the end-of-turn token, and the tokenizer's EOS when it
    /// is another token.
    pub fn stop_ids(&self) -> Vec<u32> {
        let mut ids = vec![self.end_of_turn_id];
        if let Some(eos) = self.template.eos_token().and_then(|e| self.tokenizer.token_to_id(e)) {
            if eos != self.end_of_turn_id {
                ids.push(eos);
            }
        }
        ids
    }

    /// The texts of [`ChatTokenizer::stop_ids`], for [`crate::to_action`]'s `end_tokens`.
    pub fn stop_strings(&self) -> Vec<String> {
        self.stop_ids().into_iter().filter_map(|id| self.tokenizer.id_to_token(id)).collect()
    }

    /// Tokenize text that already holds its special tokens (no BOS/EOS added: templates
    /// print them, and transformers tokenizes chat text with `add_special_tokens=False`).
    pub fn encode_text(&self, text: &str) -> Result<Vec<u32>, ChatError> {
        if text.is_empty() {
            return Ok(Vec::new());
        }
        let enc = self.tokenizer.encode(text, false).map_err(|e| ChatError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The prompt for the next assistant turn: the conversation rendered with the
    /// generation prompt, tokenized.
    pub fn prompt_ids(&self, messages: &[Message], tools: &[Tool]) -> Result<Vec<u32>, ChatError> {
        self.encode_text(&self.template.render(messages, tools, true)?)
    }

    /// Ids and loss mask of a whole conversation (for logged episodes, SFT or DPO data).
    /// Assistant turns with structured `tool_calls` are trained on as the template prints
    /// them.
    pub fn encode_conversation(&self, messages: &[Message], tools: &[Tool]) -> Result<Encoded, ChatError> {
        let full = self.template.render(messages, tools, false)?;
        let mut out = Encoded::default();
        let mut done = 0; // bytes of `full` already tokenized
        for (k, m) in messages.iter().enumerate() {
            if m.role != Role::Assistant {
                continue;
            }
            if m.content.contains(&self.end_of_turn) {
                return Err(ChatError::Conversation(format!(
                    "message {k}: assistant text holds the end-of-turn token {:?}",
                    self.end_of_turn
                )));
            }
            let prompt = self.template.render(&messages[..k], tools, true)?;
            check_prefix(&prompt, &full, k)?;
            if prompt.len() < done {
                return Err(ChatError::NotPrefixStable {
                    turn: k,
                    offset: prompt.len(),
                    expected: String::new(),
                    found: snippet(&full, prompt.len()),
                });
            }
            let rest = &full[prompt.len()..];
            let Some(i) = rest.find(&self.end_of_turn) else {
                return Err(ChatError::NoEndOfTurn(format!(
                    "assistant message {k} is not followed by {:?}",
                    self.end_of_turn
                )));
            };
            if m.tool_calls.is_empty() && rest[..i].trim() != m.content.trim() {
                return Err(ChatError::NotPrefixStable {
                    turn: k,
                    offset: prompt.len(),
                    expected: m.content.chars().take(60).collect(),
                    found: snippet(&full, prompt.len()),
                });
            }
            let end = prompt.len() + i + self.end_of_turn.len();
            out.push(&self.encode_text(&full[done..prompt.len()])?, false);
            out.push(&self.encode_text(&full[prompt.len()..end])?, true);
            done = end;
        }
        out.push(&self.encode_text(&full[done..])?, false);
        Ok(out)
    }

    /// The tokens to feed after a completion: `history` ends with the assistant turn just
    /// generated (its raw text as content), `env` holds what the environment answered.
    /// Gives the template's text after the completion's end token (`ended`: the policy
    /// sampled the end-of-turn token; otherwise, a truncated turn, the token is fed here)
    /// through the next generation prompt.
    pub fn append_env_turn(
        &self,
        history: &[Message],
        env: &[Message],
        tools: &[Tool],
        ended: bool,
    ) -> Result<Vec<u32>, ChatError> {
        let Some((last, before)) = history.split_last().filter(|(m, _)| m.role == Role::Assistant) else {
            return Err(ChatError::Conversation("append_env_turn: history must end with an assistant message".into()));
        };
        let k = before.len();
        let prompt = self.template.render(before, tools, true)?;
        let all: Vec<Message> = history.iter().chain(env).cloned().collect();
        let next = self.template.render(&all, tools, true)?;
        check_prefix(&prompt, &next, k)?;
        let rest = &next[prompt.len()..];
        let Some(i) = rest.find(&self.end_of_turn) else {
            return Err(ChatError::NoEndOfTurn(format!(
                "assistant message {k} is not followed by {:?}",
                self.end_of_turn
            )));
        };
        // The template may trim the text; anything more (dropping reasoning, reformatting a
        // call) means the next prompt is not the context the policy generated in.
        if last.tool_calls.is_empty() && rest[..i].trim() != last.content.trim() {
            return Err(ChatError::NotPrefixStable {
                turn: k,
                offset: prompt.len(),
                expected: last.content.chars().take(60).collect(),
                found: snippet(&next, prompt.len()),
            });
        }
        let start = if ended { i + self.end_of_turn.len() } else { i };
        self.encode_text(&rest[start..])
    }

    /// Start an episode for the generation loop from its opening messages (system, the
    /// first observation).
    pub fn episode(&self, messages: Vec<Message>, tools: Vec<Tool>) -> Result<Episode<'_>, ChatError> {
        let prompt = self.prompt_ids(&messages, &tools)?;
        let mut encoded = Encoded::default();
        encoded.push(&prompt, false);
        Ok(Episode { chat: self, messages, tools, encoded, last_ended: None })
    }
}

fn read_config_tokens(dir: &Path) -> Result<(Option<String>, Option<String>), ChatError> {
    let path = dir.join("tokenizer_config.json");
    if !path.exists() {
        return Ok((None, None));
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| ChatError::Io { path: path.display().to_string(), reason: e.to_string() })?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| ChatError::Config { file: "tokenizer_config.json".into(), reason: e.to_string() })?;
    Ok((token_text(v.get("bos_token")), token_text(v.get("eos_token"))))
}

fn check_prefix(prompt: &str, full: &str, turn: usize) -> Result<(), ChatError> {
    if full.starts_with(prompt) {
        return Ok(());
    }
    let offset = prompt.bytes().zip(full.bytes()).take_while(|(a, b)| a == b).count();
    let offset = (0..=offset).rev().find(|&i| prompt.is_char_boundary(i) && full.is_char_boundary(i)).unwrap_or(0);
    Err(ChatError::NotPrefixStable { turn, offset, expected: snippet(prompt, offset), found: snippet(full, offset) })
}

fn snippet(s: &str, at: usize) -> String {
    s.get(at..).unwrap_or("").chars().take(60).collect()
}

/// One episode in the trainer's generation loop: feed [`Episode::ids`] to the model, add
/// what it sampled with [`Episode::push_completion`], add the gym's answer with
/// [`Episode::push_env`], repeat; [`Episode::mask`] marks the sampled tokens.
#[derive(Debug)]
pub struct Episode<'a> {
    chat: &'a ChatTokenizer,
    messages: Vec<Message>,
    tools: Vec<Tool>,
    encoded: Encoded,
    /// After a completion: whether it ended with a stop token.
    last_ended: Option<bool>,
}

impl Episode<'_> {
    /// Every token so far (prompt, completions, environment turns).
    pub fn ids(&self) -> &[u32] {
        &self.encoded.ids
    }

    pub fn mask(&self) -> &[u8] {
        &self.encoded.mask
    }

    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    pub fn into_encoded(self) -> Encoded {
        self.encoded
    }

    /// Add the ids the policy sampled (its stop token included, if it stopped). Returns
    /// the completion text without the stop token: the input of [`crate::to_action`].
    pub fn push_completion(&mut self, ids: &[u32]) -> Result<String, ChatError> {
        if self.last_ended.is_some() {
            return Err(ChatError::Conversation("push_completion twice without push_env in between".into()));
        }
        let stops = self.chat.stop_ids();
        let ended = ids.last().is_some_and(|id| stops.contains(id));
        let body = if ended { &ids[..ids.len() - 1] } else { ids };
        let text = self.chat.tokenizer.decode(body, false).map_err(|e| ChatError::Tokenizer(e.to_string()))?;
        let content = text;
        self.encoded.push(ids, true);
        self.messages.push(Message::assistant(content.clone()));
        self.last_ended = Some(ended);
        Ok(content)
    }

    /// Add the environment's answer (a tool result or a user turn) and return the ids to
    /// feed the model next; they end with the next generation prompt.
    pub fn push_env(&mut self, env: Vec<Message>) -> Result<Vec<u32>, ChatError> {
        let Some(ended) = self.last_ended.take() else {
            return Err(ChatError::Conversation("push_env needs a completion first".into()));
        };
        let ids = self.chat.append_env_turn(&self.messages, &env, &self.tools, ended)?;
        self.encoded.push(&ids, false);
        self.messages.extend(env);
        Ok(ids)
    }
}

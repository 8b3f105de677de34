//! Chat templates: loaded from a Hugging Face model folder or built in, rendered with
//! minijinja configured the way `transformers.apply_chat_template` configures Jinja2.

use crate::message::{Message, Role, Tool};
use crate::ChatError;
use minijinja::value::{Enumerator, Kwargs, Object, ObjectRepr};
use minijinja::{Environment, Error, ErrorKind, Value};
use serde_json::Value as Json;
use std::path::Path;
use std::sync::Arc;

const TEMPLATE_NAME: &str = "chat_template";
/// Prefix that marks an error raised by the template itself (`raise_exception`).
const RAISED: &str = "raise_exception: ";

/// Templates this crate ships for models the project makes itself, which have none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    /// ChatML turns (`<|im_start|>role ... <|im_end|>`) with Hermes-style tools, as Qwen2 uses.
    ChatMl,
    /// Llama 3.x headers (`<|start_header_id|>role<|end_header_id|>`, `<|eot_id|>`), tool
    /// calls as `{"name", "parameters"}` JSON and tool results in the `ipython` role.
    Llama3,
    /// Gemma 3 turns (`<start_of_turn>user|model`, `<end_of_turn>`); the system prompt goes
    /// into the first user turn, tool calls are fenced ```tool_call JSON blocks and tool
    /// results fenced ```tool_output blocks in a user turn.
    Gemma3,
}

impl Builtin {
    fn source(self) -> &'static str {
        match self {
            Builtin::ChatMl => include_str!("templates/chatml.jinja"),
            Builtin::Llama3 => include_str!("templates/llama3.jinja"),
            Builtin::Gemma3 => include_str!("templates/gemma3.jinja"),
        }
    }

    fn tokens(self) -> (Option<&'static str>, &'static str) {
        match self {
            Builtin::ChatMl => (None, "<|im_end|>"),
            Builtin::Llama3 => (Some("<|begin_of_text|>"), "<|eot_id|>"),
            Builtin::Gemma3 => (Some("<bos>"), "<end_of_turn>"),
        }
    }
}

/// A compiled chat template with the special tokens it prints.
#[derive(Clone)]
pub struct ChatTemplate {
    source: String,
    env: Environment<'static>,
    bos_token: Option<String>,
    eos_token: Option<String>,
    /// Templates that never mention `tool` (Gemma 3's own) have no tool role; tool results
    /// go in as user turns there, or the template would refuse the conversation.
    tool_role: bool,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .field("tool_role", &self.tool_role)
            .field("source_len", &self.source.len())
            .finish()
    }
}

impl ChatTemplate {
    /// Compile a template source. `bos_token` / `eos_token` are what `{{ bos_token }}` and
    /// `{{ eos_token }}` print (left undefined, so printing nothing, when `None`).
    pub fn new(source: &str, bos_token: Option<String>, eos_token: Option<String>) -> Result<Self, ChatError> {
        let source = rewrite_generation_tags(source);
        let mut env = Environment::new();
        // Jinja2 as transformers sets it up: trim_blocks + lstrip_blocks, no autoescape,
        // the final newline of the source dropped (Jinja2's keep_trailing_newline=False).
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_keep_trailing_newline(false);
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_filter("tojson", py_tojson);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_template_owned(TEMPLATE_NAME, source.clone())
            .map_err(|e| ChatError::TemplateSyntax { line: e.line().unwrap_or(0), reason: error_text(&e) })?;
        let tool_role = source.contains("tool");
        Ok(Self { source, env, bos_token, eos_token, tool_role })
    }

    /// One of the built-in templates with its default special tokens.
    pub fn builtin(which: Builtin) -> Result<Self, ChatError> {
        let (bos, eos) = which.tokens();
        Self::new(which.source(), bos.map(String::from), Some(eos.to_string()))
    }

    /// The default template of a model folder (see [`ChatTemplate::from_model_dir_named`]).
    pub fn from_model_dir(dir: &Path) -> Result<Self, ChatError> {
        Self::from_model_dir_named(dir, "default")
    }

    /// A named template of a model folder. Looked up, first hit wins: `chat_template.jinja`
    /// (as `default`), `additional_chat_templates/<name>.jinja`, `chat_template.json`, then
    /// `chat_template` in `tokenizer_config.json` (a string, or a list of
    /// `{"name", "template"}`). Special tokens come from `tokenizer_config.json`.
    pub fn from_model_dir_named(dir: &Path, name: &str) -> Result<Self, ChatError> {
        let config = read_tokenizer_config(dir)?;
        let templates = collect_templates(dir, config.as_ref())?;
        let Some((_, source)) = templates.iter().find(|(n, _)| n == name) else {
            return Err(ChatError::NoTemplate {
                name: name.to_string(),
                available: templates.into_iter().map(|(n, _)| n).collect(),
            });
        };
        let token = |key: &str| config.as_ref().and_then(|c| token_text(c.get(key)));
        Self::new(source, token("bos_token"), token("eos_token"))
    }

    /// Names of the templates a model folder has.
    pub fn available(dir: &Path) -> Result<Vec<String>, ChatError> {
        let config = read_tokenizer_config(dir)?;
        Ok(collect_templates(dir, config.as_ref())?.into_iter().map(|(n, _)| n).collect())
    }

    /// Use the model's own special tokens where it names them, keeping the template's own
    /// otherwise (a built-in template on a model folder or file that lacks one).
    pub fn with_tokens(mut self, bos_token: Option<String>, eos_token: Option<String>) -> Self {
        self.bos_token = bos_token.or(self.bos_token);
        self.eos_token = eos_token.or(self.eos_token);
        self
    }

    pub fn bos_token(&self) -> Option<&str> {
        self.bos_token.as_deref()
    }

    pub fn eos_token(&self) -> Option<&str> {
        self.eos_token.as_deref()
    }

    /// The template source (after `{% generation %}` tags were made plain blocks).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Render a conversation. Empty `tools` renders as `tools=None`, as transformers does
    /// when no tools are passed (templates test `tools is not none`).
    pub fn render(
        &self,
        messages: &[Message],
        tools: &[Tool],
        add_generation_prompt: bool,
    ) -> Result<String, ChatError> {
        let msgs: Vec<Value> = messages
            .iter()
            .map(|m| {
                let role = if m.role == Role::Tool && !self.tool_role { Role::User } else { m.role };
                to_value(&m.to_template_json(role))
            })
            .collect();
        let tools_value = if tools.is_empty() {
            Value::from(())
        } else {
            Value::from(tools.iter().map(|t| to_value(&t.to_template_json())).collect::<Vec<_>>())
        };
        let mut ctx: Vec<(&str, Value)> = vec![
            ("messages", Value::from(msgs)),
            ("tools", tools_value),
            ("add_generation_prompt", Value::from(add_generation_prompt)),
        ];
        if let Some(b) = &self.bos_token {
            ctx.push(("bos_token", Value::from(b.as_str())));
        }
        if let Some(e) = &self.eos_token {
            ctx.push(("eos_token", Value::from(e.as_str())));
        }
        let tmpl = self.env.get_template(TEMPLATE_NAME).map_err(|e| ChatError::Render { reason: error_text(&e) })?;
        tmpl.render(Value::from_iter(ctx)).map_err(|e| {
            let reason = error_text(&e);
            match e.detail().and_then(|d| d.strip_prefix(RAISED)) {
                Some(msg) => ChatError::Raised(msg.to_string()),
                None => ChatError::Render { reason },
            }
        })
    }
}

fn error_text(e: &Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(&format!(": {inner}"));
        src = inner.source();
    }
    s
}

fn read_tokenizer_config(dir: &Path) -> Result<Option<Json>, ChatError> {
    let path = dir.join("tokenizer_config.json");
    if !path.exists() {
        return Ok(None);
    }
    let text = read(&path)?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| ChatError::Config { file: "tokenizer_config.json".into(), reason: e.to_string() })
}

fn read(path: &Path) -> Result<String, ChatError> {
    std::fs::read_to_string(path).map_err(|e| ChatError::Io { path: path.display().to_string(), reason: e.to_string() })
}

fn collect_templates(dir: &Path, config: Option<&Json>) -> Result<Vec<(String, String)>, ChatError> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut add = |name: String, source: String| {
        if !out.iter().any(|(n, _)| *n == name) {
            out.push((name, source));
        }
    };
    let jinja = dir.join("chat_template.jinja");
    if jinja.exists() {
        add("default".into(), read(&jinja)?);
    }
    let extra = dir.join("additional_chat_templates");
    if extra.is_dir() {
        let entries = std::fs::read_dir(&extra)
            .map_err(|e| ChatError::Io { path: extra.display().to_string(), reason: e.to_string() })?;
        let mut files: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
        files.sort();
        for f in files {
            if f.extension().and_then(|x| x.to_str()) == Some("jinja") {
                if let Some(stem) = f.file_stem().and_then(|s| s.to_str()) {
                    add(stem.to_string(), read(&f)?);
                }
            }
        }
    }
    let json_file = dir.join("chat_template.json");
    if json_file.exists() {
        let v: Json = serde_json::from_str(&read(&json_file)?)
            .map_err(|e| ChatError::Config { file: "chat_template.json".into(), reason: e.to_string() })?;
        if let Some(s) = v.get("chat_template").and_then(Json::as_str) {
            add("default".into(), s.to_string());
        }
    }
    match config.and_then(|c| c.get("chat_template")) {
        None | Some(Json::Null) => {}
        Some(Json::String(s)) => add("default".into(), s.clone()),
        Some(Json::Array(list)) => {
            for (i, item) in list.iter().enumerate() {
                let (Some(name), Some(template)) =
                    (item.get("name").and_then(Json::as_str), item.get("template").and_then(Json::as_str))
                else {
                    return Err(ChatError::Config {
                        file: "tokenizer_config.json".into(),
                        reason: format!("chat_template[{i}] needs string fields `name` and `template`"),
                    });
                };
                add(name.to_string(), template.to_string());
            }
        }
        Some(_) => {
            return Err(ChatError::Config {
                file: "tokenizer_config.json".into(),
                reason: "chat_template must be a string or a list of {name, template}".into(),
            })
        }
    }
    Ok(out)
}

/// A special token in `tokenizer_config.json`: a string or an AddedToken object.
pub(crate) fn token_text(v: Option<&Json>) -> Option<String> {
    match v? {
        Json::String(s) => Some(s.clone()),
        Json::Object(o) => o.get("content").and_then(Json::as_str).map(String::from),
        _ => None,
    }
}

/// transformers' `{% generation %}` blocks mark assistant text for its own masks; minijinja
/// has no such tag, and the blocks print their body unchanged, so they become `if true`
/// blocks, keeping every whitespace-control sign where it was.
fn rewrite_generation_tags(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut rest = src;
    while let Some(i) = rest.find("{%") {
        out.push_str(&rest[..i]);
        let tag = &rest[i + 2..];
        let (sign, body) = match tag.chars().next() {
            Some(c @ ('-' | '+')) => (Some(c), &tag[1..]),
            _ => (None, tag),
        };
        let trimmed = body.trim_start();
        let word_end = trimmed.find(|c: char| !c.is_ascii_alphanumeric() && c != '_').unwrap_or(trimmed.len());
        let replacement = match &trimmed[..word_end] {
            "generation" => Some("if true"),
            "endgeneration" => Some("endif"),
            _ => None,
        };
        match replacement {
            Some(r) => {
                out.push_str("{%");
                if let Some(c) = sign {
                    out.push(c);
                }
                out.push(' ');
                out.push_str(r);
                rest = &trimmed[word_end..];
            }
            None => {
                out.push_str("{%");
                rest = tag;
            }
        }
    }
    out.push_str(rest);
    out
}

fn raise_exception(msg: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, format!("{RAISED}{msg}")))
}

/// transformers' `strftime_now` prints today's date; a training run must render the same
/// text every time, so this prints a fixed date (26 July 2024, 00:00:00, a Friday: the
/// default Llama 3.1 templates fall back to).
fn strftime_now(format: String) -> Result<Value, Error> {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let (year, month, day, weekday) = (2024, 7usize, 26, "Friday");
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('e') => out.push_str(&format!("{day:>2}")),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('Y') => out.push_str(&year.to_string()),
            Some('y') => out.push_str(&format!("{:02}", year % 100)),
            Some('B') => out.push_str(MONTHS[month - 1]),
            Some('b') => out.push_str(&MONTHS[month - 1][..3]),
            Some('A') => out.push_str(weekday),
            Some('a') => out.push_str(&weekday[..3]),
            Some('H' | 'M' | 'S') => out.push_str("00"),
            Some('%') => out.push('%'),
            other => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("strftime_now: unsupported format %{}", other.map(String::from).unwrap_or_default()),
                ))
            }
        }
    }
    Ok(Value::from(out))
}

/// A JSON object as a template value that keeps key order (minijinja's own maps sort
/// keys unless a crate-wide feature is on, and Python dicts keep insertion order).
#[derive(Debug)]
struct JsonMap(Vec<(String, Value)>);

impl Object for JsonMap {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let k = key.as_str()?;
        self.0.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.0.iter().map(|(k, _)| Value::from(k.as_str())).collect())
    }
}

pub(crate) fn to_value(v: &Json) -> Value {
    match v {
        Json::Null => Value::from(()),
        Json::Bool(b) => Value::from(*b),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Json::String(s) => Value::from(s.as_str()),
        Json::Array(a) => Value::from(a.iter().map(to_value).collect::<Vec<_>>()),
        Json::Object(o) => Value::from_object(JsonMap(o.iter().map(|(k, v)| (k.clone(), to_value(v))).collect())),
    }
}

/// `tojson` as transformers defines it: Python's `json.dumps(x, ensure_ascii=False,
/// indent=indent, separators=separators, sort_keys=sort_keys)`, so `", "` and `": "`
/// between items and no HTML escaping (minijinja's own escapes `<` and `>`).
fn py_tojson(value: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    kwargs.assert_all_used()?;
    let json: Json = serde_json::to_value(&value)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("tojson: value is not JSON: {e}")))?;
    let (item_sep, key_sep) = match separators.as_deref() {
        Some([a, b]) => (a.clone(), b.clone()),
        Some(_) => return Err(Error::new(ErrorKind::InvalidOperation, "tojson: separators must be two strings")),
        None if indent.is_some() => (",".to_string(), ": ".to_string()),
        None => (", ".to_string(), ": ".to_string()),
    };
    let opts = PyJson {
        indent,
        item_sep,
        key_sep,
        sort_keys: sort_keys.unwrap_or(false),
        ascii: ensure_ascii.unwrap_or(false),
    };
    let mut out = String::new();
    opts.write(&json, 0, &mut out);
    Ok(Value::from(out))
}

struct PyJson {
    indent: Option<usize>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
    ascii: bool,
}

impl PyJson {
    fn newline(&self, depth: usize, out: &mut String) {
        if let Some(n) = self.indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * depth));
        }
    }

    fn write(&self, v: &Json, depth: usize, out: &mut String) {
        match v {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => out.push_str(&i.to_string()),
                (_, Some(u), _) => out.push_str(&u.to_string()),
                (_, _, Some(f)) => out.push_str(&py_float(f)),
                _ => out.push_str(&n.to_string()),
            },
            Json::String(s) => self.string(s, out),
            Json::Array(a) if a.is_empty() => out.push_str("[]"),
            Json::Array(a) => {
                out.push('[');
                for (i, item) in a.iter().enumerate() {
                    if i > 0 {
                        out.push_str(&self.item_sep);
                    }
                    self.newline(depth + 1, out);
                    self.write(item, depth + 1, out);
                }
                self.newline(depth, out);
                out.push(']');
            }
            Json::Object(o) if o.is_empty() => out.push_str("{}"),
            Json::Object(o) => {
                let mut entries: Vec<(&String, &Json)> = o.iter().collect();
                if self.sort_keys {
                    entries.sort_by(|a, b| a.0.cmp(b.0));
                }
                out.push('{');
                for (i, (k, item)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.push_str(&self.item_sep);
                    }
                    self.newline(depth + 1, out);
                    self.string(k, out);
                    out.push_str(&self.key_sep);
                    self.write(item, depth + 1, out);
                }
                self.newline(depth, out);
                out.push('}');
            }
        }
    }

    fn string(&self, s: &str, out: &mut String) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                c if (c as u32) < 0x20 || (self.ascii && !c.is_ascii()) => {
                    let mut buf = [0u16; 2];
                    for unit in c.encode_utf16(&mut buf) {
                        out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
}

/// Python's `repr(float)`: the shortest round-trip digits, positional for exponents in
/// [-4, 16), otherwise `1e+16` style with at least two exponent digits.
fn py_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    let sci = format!("{f:e}"); // e.g. "-1.2345e-5", shortest round-trip digits
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if (-4..16).contains(&exp) {
        let point = exp + 1; // digits before the decimal point
        let s = if point <= 0 {
            format!("0.{}{}", "0".repeat((-point) as usize), digits)
        } else if (point as usize) >= digits.len() {
            format!("{}{}.0", digits, "0".repeat(point as usize - digits.len()))
        } else {
            format!("{}.{}", &digits[..point as usize], &digits[point as usize..])
        };
        format!("{sign}{s}")
    } else {
        let m = if digits.len() > 1 { format!("{}.{}", &digits[..1], &digits[1..]) } else { digits };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{m}e{esign}{:02}", exp.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_float_repr() {
        for (f, want) in [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (1e16, "1e+16"),
            (1.5e-5, "1.5e-05"),
            (0.0001, "0.0001"),
            (123456.0, "123456.0"),
            (0.0, "0.0"),
        ] {
            assert_eq!(py_float(f), want, "{f}");
        }
    }

    #[test]
    fn generation_tags_become_plain_blocks() {
        assert_eq!(
            rewrite_generation_tags("a{%- generation -%}b{% endgeneration %}c{% if x %}"),
            "a{%- if true -%}b{% endif %}c{% if x %}"
        );
    }

    #[test]
    fn tojson_matches_python_json_dumps() {
        let t = ChatTemplate::new(
            "{{ x | tojson }}|{{ x | tojson(indent=2) }}|{{ [] | tojson }}|{{ 'é<' | tojson(ensure_ascii=true) }}",
            None,
            None,
        )
        .unwrap();
        let env = &t.env;
        let out = env
            .get_template(TEMPLATE_NAME)
            .unwrap()
            .render(Value::from_iter([("x", to_value(&serde_json::json!({"b": [1, 2.5], "a": "<x>\n"})))]))
            .unwrap();
        assert_eq!(
            out,
            "{\"b\": [1, 2.5], \"a\": \"<x>\\n\"}|{\n  \"b\": [\n    1,\n    2.5\n  ],\n  \"a\": \"<x>\\n\"\n}|[]|\"\\u00e9<\""
        );
    }

    #[test]
    fn python_string_methods_and_fixed_date() {
        let t = ChatTemplate::new(
            "{{ '  a b '.strip() }}|{{ 'x,y'.split(',') | length }}|{{ 'abc'.startswith('ab') }}|{{ strftime_now('%d %b %Y') }}",
            None,
            None,
        )
        .unwrap();
        assert_eq!(t.render(&[], &[], false).unwrap(), "a b|2|True|26 Jul 2024");
    }
}

//! Conversation messages and tool declarations, shaped the way Hugging Face chat templates
//! read them (`{"role", "content", "tool_calls": [{"type": "function", "function": ...}]}`).

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// Who speaks a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    System,
    User,
    Assistant,
    /// A tool result (in a gym: the observation after a tool-call action).
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// A tool call made by the assistant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub name: String,
    /// Always a JSON object.
    pub arguments: Value,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
    /// Structured tool calls of an assistant message. Turns the policy generated should
    /// instead keep the raw completion in `content`, so the tokens re-rendered are the
    /// tokens sampled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// Tool name of a tool result (some templates print it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Message {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self { role, content: content.into(), tool_calls: Vec::new(), name: None }
    }
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }
    pub fn tool(content: impl Into<String>) -> Self {
        Self::new(Role::Tool, content)
    }
    /// An assistant message holding one structured tool call and no text.
    pub fn tool_call(name: impl Into<String>, arguments: Value) -> Self {
        let mut m = Self::assistant("");
        m.tool_calls.push(ToolCall { name: name.into(), arguments });
        m
    }

    /// The JSON a template sees. Keys that HF leaves out stay out: templates test
    /// `'tool_calls' in message`, so an empty list would change the output.
    pub fn to_template_json(&self, role: Role) -> Value {
        let mut m = Map::new();
        m.insert("role".into(), json!(role.as_str()));
        m.insert("content".into(), json!(self.content));
        if !self.tool_calls.is_empty() {
            let calls: Vec<Value> = self
                .tool_calls
                .iter()
                .map(|c| json!({"type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
                .collect();
            m.insert("tool_calls".into(), Value::Array(calls));
        }
        if let Some(n) = &self.name {
            m.insert("name".into(), json!(n));
        }
        Value::Object(m)
    }
}

/// A tool the model may call: the gym's `ToolDef` (`name`, `description`, `parameters`),
/// which deserializes into this directly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// JSON Schema of the arguments object.
    #[serde(default = "empty_object_schema")]
    pub parameters: Value,
}

fn empty_object_schema() -> Value {
    json!({"type": "object", "properties": {}})
}

impl Tool {
    pub fn new(name: impl Into<String>, description: impl Into<String>, parameters: Value) -> Self {
        Self { name: name.into(), description: description.into(), parameters }
    }

    /// The OpenAI function shape that `apply_chat_template(tools=...)` passes to templates.
    pub fn to_template_json(&self) -> Value {
        json!({"type": "function", "function": {"name": self.name, "description": self.description, "parameters": self.parameters}})
    }
}

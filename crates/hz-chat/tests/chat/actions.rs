use hz_chat::{parse_tool_calls, to_action, ActionErrorKind, ActionMode, CallFormat};
use hz_gym::action::ActionParser;
use hz_gym::spec::NodeKind;
use serde_json::{json, Value};

const ENDS: &[&str] = &["<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<end_of_turn>"];

fn gym(mode: &str) -> ActionParser {
    let tools = if mode == "tool_call" {
        json!([{"name": "run_sql", "parameters": {"type": "object", "properties": {"sql": {"type": "string"}}, "required": ["sql"]}}])
    } else {
        json!([])
    };
    let kind: NodeKind = serde_json::from_value(json!({"kind": "action_space", "mode": mode, "tools": tools})).unwrap();
    ActionParser::new(&kind, 16_384).unwrap()
}

#[test]
fn every_call_format_becomes_the_action_the_gym_takes() {
    let parser = gym("tool_call");
    let want = json!({"name": "run_sql", "arguments": {"sql": "select 1"}});
    let cases = [
        ("Let me check.\n<tool_call>\n{\"name\": \"run_sql\", \"arguments\": {\"sql\": \"select 1\"}}\n</tool_call><|im_end|>", CallFormat::Hermes),
        // A `</tool_call>` stop string leaves the closing tag out; arguments as a JSON string.
        ("<tool_call>\n{\"name\": \"run_sql\", \"arguments\": \"{\\\"sql\\\": \\\"select 1\\\"}\"}", CallFormat::Hermes),
        ("<|python_tag|>{\"name\": \"run_sql\", \"parameters\": {\"sql\": \"select 1\"}}<|eom_id|>", CallFormat::PythonTag),
        ("{\"name\": \"run_sql\", \"parameters\": {\"sql\": \"select 1\"}}<|eot_id|>", CallFormat::Bare),
        ("I'll query.\n```tool_call\n{\"name\": \"run_sql\", \"arguments\": {\"sql\": \"select 1\"}}\n```<end_of_turn>", CallFormat::Fenced),
        ("```json\n{\"name\": \"run_sql\", \"arguments\": {\"sql\": \"select 1\"}}\n```", CallFormat::Fenced),
        ("Sure: {\"name\": \"run_sql\", \"arguments\": {\"sql\": \"select 1\"}} is the call", CallFormat::Bare),
        ("{\"type\": \"function\", \"function\": {\"name\": \"run_sql\", \"arguments\": \"{\\\"sql\\\":\\\"select 1\\\"}\"}}", CallFormat::Bare),
    ];
    for (text, format) in cases {
        let action = to_action(text, ActionMode::ToolCall, ENDS).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(action, want, "{text}");
        let stripped = hz_chat::strip_end_tokens(text, ENDS);
        assert_eq!(parse_tool_calls(stripped).unwrap()[0].format, format, "{text}");
        let parsed = parser.parse(&action).unwrap_or_else(|e| panic!("gym refused {action}: {e}"));
        assert_eq!((parsed.tool.as_str(), &parsed.arguments), ("run_sql", &json!({"sql": "select 1"})));
    }
    // Which tools exist is the gym's business, not the parser's.
    let unknown =
        to_action("<tool_call>{\"name\": \"drop_db\", \"arguments\": {}}</tool_call>", ActionMode::ToolCall, ENDS)
            .unwrap();
    assert!(parser.parse(&unknown).unwrap_err().starts_with("unknown tool \"drop_db\""));
}

#[test]
fn spans_point_at_the_json() {
    let text = "ok <tool_call> {\"name\": \"a\"} </tool_call>";
    let calls = parse_tool_calls(text).unwrap();
    assert_eq!((calls[0].start, calls[0].end), (15, 28));
    assert_eq!(&text[calls[0].start..calls[0].end], "{\"name\": \"a\"}");
    assert_eq!(calls[0].arguments, json!({}));
}

/// (completion, error text, what the gym says when stepped with `gym_action()`).
#[test]
fn malformed_calls_say_what_and_where_and_the_gym_rejects_them() {
    let parser = gym("tool_call");
    let cases: [(&str, &str, &str); 7] = [
        (
            "<tool_call>\n{\"name\": \"run_sql\", \"arguments\": {\"sql\": }}\n</tool_call>",
            "tool call is not valid JSON (expected value at line 1 column 42) at byte 53: \"}}\\n</tool_call>\"",
            "action is not a JSON tool call",
        ),
        (
            "I don't know.",
            "no tool call found (expected <tool_call>{...}</tool_call>, a ```tool_call block or a JSON object) at byte 0: \"I don't know.\"",
            "action is not a JSON tool call",
        ),
        ("Calling <tool_call>", "<tool_call> is never closed at byte 8: \"<tool_call>\"", "action is not a JSON tool call"),
        (
            "<tool_call>{\"name\": \"run_sql\", \"arguments\": {\"sql\": \"a\"}}</tool_call>\n<tool_call>{\"name\": \"run_sql\", \"arguments\": {\"sql\": \"b\"}}</tool_call>",
            "one tool call per step, got 2 at byte 81: \"{\\\"name\\\": \\\"run_sql\\\", \\\"arguments\\\": {\\\"sql\\\": \\\"b\\\"}}</tool_call>\"",
            "one tool call per step, got 2",
        ),
        (
            "{\"name\": \"run_sql\", \"arguments\": \"select 1\"}",
            "tool call arguments are a string that is not JSON (expected value at line 1 column 1) at byte 0: \"{\\\"name\\\": \\\"run_sql\\\", \\\"arguments\\\": \\\"select 1\\\"}\"",
            "`arguments` of run_sql is not valid JSON",
        ),
        ("{\"arguments\": {}}", "tool call has no string `name` at byte 0: \"{\\\"arguments\\\": {}}\"", "tool call has no `name`"),
        (
            "```json\n[1, 2]\n```",
            "tool call must be a JSON object {\"name\": ..., \"arguments\": {...}} at byte 8: \"[1, 2]\\n```\"",
            "action is not a JSON tool call",
        ),
    ];
    for (text, message, gym_says) in cases {
        let err = to_action(text, ActionMode::ToolCall, ENDS).unwrap_err();
        assert_eq!(err.to_string(), message, "{text}");
        let refused = parser.parse(&err.gym_action()).unwrap_err();
        assert!(refused.contains(gym_says), "{text}: gym said {refused:?}");
    }
    let err = to_action("<|im_end|>", ActionMode::ToolCall, ENDS).unwrap_err();
    assert_eq!(err.kind, ActionErrorKind::Empty);
}

#[test]
fn text_and_code_actions_are_the_completion_without_end_tokens() {
    let text = gym("text");
    let a = to_action("The answer is 42.<|im_end|>\n", ActionMode::Text, ENDS).unwrap();
    assert_eq!(a, json!("The answer is 42."));
    assert_eq!(text.parse(&a).unwrap().text, "The answer is 42.");
    let code = to_action("print(1)\n<|eot_id|><|eot_id|>", ActionMode::Code, ENDS).unwrap();
    assert_eq!(code, Value::String("print(1)".into()));
    let err = to_action(" <|im_end|>", ActionMode::Text, ENDS).unwrap_err();
    assert_eq!(err.kind, ActionErrorKind::Empty);
    assert_eq!(text.parse(&err.gym_action()).unwrap_err(), "empty text action");
}

#[test]
fn action_mode_names_match_the_gym_spec() {
    for (name, mode) in [("text", ActionMode::Text), ("tool_call", ActionMode::ToolCall), ("code", ActionMode::Code)] {
        let ours: ActionMode = serde_json::from_value(json!(name)).unwrap();
        assert_eq!(ours, mode);
        let theirs: hz_gym::spec::ActionMode = serde_json::from_value(json!(name)).unwrap();
        assert_eq!(serde_json::to_value(theirs).unwrap(), json!(name));
    }
}

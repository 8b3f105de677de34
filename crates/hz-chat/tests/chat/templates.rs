use crate::common::*;
use hz_chat::{Builtin, ChatError, ChatTemplate, ChatTokenizer, Message};
use serde_json::json;

fn qwen_expected(system: &str) -> String {
    format!(
        "<|im_start|>system\n{system}\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n\
You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{TOOL_JSON}\n</tools>\n\n\
For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n\
<tool_call>\n{{\"name\": <function-name>, \"arguments\": <args-json-object>}}\n</tool_call><|im_end|>\n\
<|im_start|>user\nHow many orders are there?<|im_end|>\n\
<|im_start|>assistant\n<tool_call>\n{{\"name\": \"run_sql\", \"arguments\": {{\"sql\": \"SELECT COUNT(*) FROM orders\"}}}}\n</tool_call><|im_end|>\n\
<|im_start|>user\n<tool_response>\n[[42]]\n</tool_response><|im_end|>\n\
<|im_start|>assistant\n"
    )
}

#[test]
fn qwen25_template_renders_like_transformers() {
    let t = ChatTemplate::new(QWEN25, None, Some("<|im_end|>".into())).unwrap();
    let out = t.render(&tool_conversation(), &[run_sql()], true).unwrap();
    assert_eq!(out, qwen_expected("You are a SQL analyst."));
    // No system message: Qwen's default one; no tools: plain ChatML.
    let plain = t.render(&[Message::user("hi")], &[], false).unwrap();
    assert_eq!(
        plain,
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
    );
}

#[test]
fn builtin_chatml_matches_qwen25_when_there_is_a_system_prompt() {
    let ours = ChatTemplate::builtin(Builtin::ChatMl).unwrap();
    let qwen = ChatTemplate::new(QWEN25, None, None).unwrap();
    let conv = tool_conversation();
    assert_eq!(ours.render(&conv, &[run_sql()], true).unwrap(), qwen_expected("You are a SQL analyst."));
    let mut two_tools = conv.clone();
    two_tools.push(Message::tool("done"));
    assert_eq!(
        ours.render(&two_tools, &[run_sql()], false).unwrap(),
        qwen.render(&two_tools, &[run_sql()], false).unwrap()
    );
    let chat = [Message::system("S"), Message::user("a"), Message::assistant("b")];
    assert_eq!(ours.render(&chat, &[], true).unwrap(), qwen.render(&chat, &[], true).unwrap());
    // Without a system prompt ours prints none (the project's models are not Qwen).
    assert_eq!(
        ours.render(&[Message::user("hi")], &[], true).unwrap(),
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn llama31_template_renders_like_transformers() {
    let t = ChatTemplate::new(LLAMA31, Some("<|begin_of_text|>".into()), Some("<|eot_id|>".into())).unwrap();
    let out = t.render(&tool_conversation(), &[run_sql()], true).unwrap();
    let want = format!(
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nEnvironment: ipython\n\
Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nYou are a SQL analyst.<|eot_id|>\
<|start_header_id|>user<|end_header_id|>\n\nGiven the following functions, please respond with a JSON for a function call \
with its proper arguments that best answers the given prompt.\n\n\
Respond in the format {{\"name\": function name, \"parameters\": dictionary of argument name and its value}}.Do not use variables.\n\n\
{TOOL_JSON_INDENT4}\n\nHow many orders are there?<|eot_id|>\
<|start_header_id|>assistant<|end_header_id|>\n\n{{\"name\": \"run_sql\", \"parameters\": {{\"sql\": \"SELECT COUNT(*) FROM orders\"}}}}<|eot_id|>\
<|start_header_id|>ipython<|end_header_id|>\n\n\"[[42]]\"<|eot_id|>\
<|start_header_id|>assistant<|end_header_id|>\n\n"
    );
    assert_eq!(out, want);
    // Its own refusal comes back as such.
    let two = Message {
        tool_calls: [Message::tool_call("a", json!({})).tool_calls, Message::tool_call("b", json!({})).tool_calls]
            .concat(),
        ..Message::assistant("")
    };
    let err = t.render(&[Message::user("q"), two], &[run_sql()], false).unwrap_err();
    assert_eq!(err, ChatError::Raised("This model only supports single tool-calls at once!".into()));
}

#[test]
fn builtin_llama3_renders_the_llama_layout() {
    let t = ChatTemplate::builtin(Builtin::Llama3).unwrap();
    let out = t.render(&tool_conversation(), &[run_sql()], true).unwrap();
    let want = format!(
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nEnvironment: ipython\n\n\
You have access to the following functions. To call a function, respond with only a JSON object in the format \
{{\"name\": function name, \"parameters\": dictionary of argument name and its value}}.\n\n{TOOL_JSON_INDENT4}\n\n\
You are a SQL analyst.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHow many orders are there?<|eot_id|>\
<|start_header_id|>assistant<|end_header_id|>\n\n{{\"name\": \"run_sql\", \"parameters\": {{\"sql\": \"SELECT COUNT(*) FROM orders\"}}}}<|eot_id|>\
<|start_header_id|>ipython<|end_header_id|>\n\n[[42]]<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    );
    assert_eq!(out, want);
    assert_eq!(
        t.render(&[Message::user("hi")], &[], true).unwrap(),
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    );
}

#[test]
fn gemma3_template_renders_like_transformers() {
    let t = ChatTemplate::new(GEMMA3, Some("<bos>".into()), Some("<eos>".into())).unwrap();
    let conv = [
        Message::system("You are a SQL analyst."),
        Message::user("How many orders are there?"),
        Message::assistant("There are 42 orders."),
        Message::user("Thanks!"),
    ];
    assert_eq!(
        t.render(&conv, &[], true).unwrap(),
        "<bos><start_of_turn>user\nYou are a SQL analyst.\n\nHow many orders are there?<end_of_turn>\n\
<start_of_turn>model\nThere are 42 orders.<end_of_turn>\n<start_of_turn>user\nThanks!<end_of_turn>\n<start_of_turn>model\n"
    );
    // Gemma's template has no tool role: a tool result goes in as a user turn instead of
    // tripping its alternation check.
    let tools = [
        Message::user("q"),
        Message::assistant("```tool_call\n{\"name\": \"run_sql\", \"arguments\": {}}\n```"),
        Message::tool("[[42]]"),
    ];
    assert_eq!(
        t.render(&tools, &[], true).unwrap(),
        "<bos><start_of_turn>user\nq<end_of_turn>\n<start_of_turn>model\n```tool_call\n{\"name\": \"run_sql\", \"arguments\": {}}\n```<end_of_turn>\n\
<start_of_turn>user\n[[42]]<end_of_turn>\n<start_of_turn>model\n"
    );
    let err = t.render(&[Message::user("a"), Message::user("b")], &[], true).unwrap_err();
    assert_eq!(err, ChatError::Raised("Conversation roles must alternate user/assistant/user/assistant/...".into()));
}

#[test]
fn builtin_gemma3_puts_tools_in_the_first_user_turn() {
    let t = ChatTemplate::builtin(Builtin::Gemma3).unwrap();
    let out = t.render(&tool_conversation(), &[run_sql()], true).unwrap();
    let want = format!(
        "<bos><start_of_turn>user\nYou are a SQL analyst.\n\nYou can call these functions:\n{TOOL_JSON}\n\n\
To call one, reply with a block:\n```tool_call\n{{\"name\": function name, \"arguments\": object of argument names and values}}\n```\n\n\
How many orders are there?<end_of_turn>\n<start_of_turn>model\n\
```tool_call\n{{\"name\": \"run_sql\", \"arguments\": {{\"sql\": \"SELECT COUNT(*) FROM orders\"}}}}\n```<end_of_turn>\n\
<start_of_turn>user\n```tool_output\n[[42]]\n```<end_of_turn>\n<start_of_turn>model\n"
    );
    assert_eq!(out, want);
}

#[test]
fn loads_templates_and_tokens_from_a_model_folder() {
    let dir = tempfile::tempdir().unwrap();
    write_tokenizer(dir.path());
    let config = json!({
        "bos_token": {"content": "<|begin_of_text|>", "lstrip": false, "normalized": false, "rstrip": false, "single_word": false, "special": true},
        "eos_token": "<|eot_id|>",
        "chat_template": [
            {"name": "default", "template": LLAMA31},
            {"name": "tool_use", "template": "{{ bos_token }}tools:{{ tools | length }}"}
        ]
    });
    std::fs::write(dir.path().join("tokenizer_config.json"), config.to_string()).unwrap();
    assert_eq!(ChatTemplate::available(dir.path()).unwrap(), vec!["default", "tool_use"]);
    let t = ChatTemplate::from_model_dir(dir.path()).unwrap();
    assert_eq!(t.bos_token(), Some("<|begin_of_text|>"));
    assert_eq!(t.eos_token(), Some("<|eot_id|>"));
    assert!(t
        .render(&[Message::user("hi")], &[], true)
        .unwrap()
        .starts_with("<|begin_of_text|><|start_header_id|>system"));
    let named = ChatTemplate::from_model_dir_named(dir.path(), "tool_use").unwrap();
    assert_eq!(named.render(&[], &[run_sql()], false).unwrap(), "<|begin_of_text|>tools:1");
    assert_eq!(
        ChatTemplate::from_model_dir_named(dir.path(), "rag").unwrap_err().to_string(),
        "no chat template named \"rag\" (available: default, tool_use)"
    );
    let chat = ChatTokenizer::from_model_dir(dir.path(), None).unwrap();
    assert_eq!(chat.end_of_turn(), "<|eot_id|>");

    // chat_template.jinja wins over tokenizer_config.json, as in transformers.
    std::fs::write(dir.path().join("chat_template.jinja"), "{{ bos_token }}file\n").unwrap();
    let t = ChatTemplate::from_model_dir(dir.path()).unwrap();
    assert_eq!(t.render(&[], &[], false).unwrap(), "<|begin_of_text|>file");
}

#[test]
fn a_folder_without_a_template_takes_the_fallback() {
    let dir = tempfile::tempdir().unwrap();
    write_tokenizer(dir.path());
    std::fs::write(dir.path().join("tokenizer_config.json"), r#"{"eos_token": "<|im_end|>", "bos_token": null}"#)
        .unwrap();
    assert_eq!(
        ChatTokenizer::from_model_dir(dir.path(), None).unwrap_err(),
        ChatError::NoTemplate { name: "default".into(), available: vec![] }
    );
    let chat = ChatTokenizer::from_model_dir(dir.path(), Some(Builtin::ChatMl)).unwrap();
    assert_eq!(chat.end_of_turn(), "<|im_end|>");
    assert_eq!(chat.template().bos_token(), None);
    let gemma = ChatTokenizer::from_model_dir(dir.path(), Some(Builtin::Gemma3)).unwrap();
    // The folder's eos (`<|im_end|>`) is not Gemma's turn end: the probe finds the real one.
    assert_eq!(gemma.end_of_turn(), "<end_of_turn>");
}

#[test]
fn syntax_errors_name_the_line() {
    let err = ChatTemplate::new("ok\n{% if %}", None, None).unwrap_err();
    match err {
        ChatError::TemplateSyntax { line, .. } => assert_eq!(line, 2),
        other => panic!("{other:?}"),
    }
}

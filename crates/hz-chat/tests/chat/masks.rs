use crate::common::*;
use hz_chat::{to_action, ActionMode, Builtin, ChatError, ChatTemplate, ChatTokenizer, Encoded, Message};
use serde_json::json;
use tokenizers::Tokenizer;

const CALL: &str =
    "<tool_call>\n{\"name\": \"run_sql\", \"arguments\": {\"sql\": \"SELECT COUNT(*) FROM orders\"}}\n</tool_call>";

fn setup(template: &str) -> (tempfile::TempDir, ChatTokenizer) {
    let dir = tempfile::tempdir().unwrap();
    write_tokenizer(dir.path());
    let config = json!({"eos_token": "<|im_end|>", "chat_template": template});
    std::fs::write(dir.path().join("tokenizer_config.json"), config.to_string()).unwrap();
    let chat = ChatTokenizer::from_model_dir(dir.path(), None).unwrap();
    (dir, chat)
}

fn ids(tok: &Tokenizer, text: &str) -> Vec<u32> {
    tok.encode(text, false).unwrap().get_ids().to_vec()
}

/// The expected encoding: each literal segment tokenized alone, masked as given.
fn expected(tok: &Tokenizer, segments: &[(&str, bool)]) -> Encoded {
    let mut e = Encoded::default();
    for (text, generated) in segments {
        let part = ids(tok, text);
        e.mask.extend(std::iter::repeat_n(u8::from(*generated), part.len()));
        e.ids.extend(part);
    }
    e
}

fn episode_messages() -> Vec<Message> {
    vec![
        Message::system("You are a SQL analyst."),
        Message::user("How many orders are there?"),
        Message::assistant(CALL),
        Message::tool("[[42]]"),
        Message::assistant("There are 42 orders."),
    ]
}

fn qwen_segments() -> Vec<(String, bool)> {
    let head = format!(
        "<|im_start|>system\nYou are a SQL analyst.\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n\
You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{TOOL_JSON}\n</tools>\n\n\
For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n\
<tool_call>\n{{\"name\": <function-name>, \"arguments\": <args-json-object>}}\n</tool_call><|im_end|>\n\
<|im_start|>user\nHow many orders are there?<|im_end|>\n<|im_start|>assistant\n"
    );
    vec![
        (head, false),
        (format!("{CALL}<|im_end|>"), true),
        (
            "\n<|im_start|>user\n<tool_response>\n[[42]]\n</tool_response><|im_end|>\n<|im_start|>assistant\n".into(),
            false,
        ),
        ("There are 42 orders.<|im_end|>".into(), true),
        ("\n".into(), false),
    ]
}

#[test]
fn mask_is_one_exactly_on_assistant_text_and_its_end_token() {
    let (_dir, chat) = setup(QWEN25);
    assert_eq!(chat.end_of_turn(), "<|im_end|>");
    let got = chat.encode_conversation(&episode_messages(), &[run_sql()]).unwrap();
    let segs = qwen_segments();
    let refs: Vec<(&str, bool)> = segs.iter().map(|(s, g)| (s.as_str(), *g)).collect();
    let want = expected(chat.tokenizer(), &refs);
    assert_eq!(got, want);
    // The masked tokens decode to exactly the policy's text.
    let tok = chat.tokenizer();
    let masked: Vec<u32> = got.ids.iter().zip(&got.mask).filter(|(_, m)| **m == 1).map(|(i, _)| *i).collect();
    assert_eq!(tok.decode(&masked, false).unwrap(), format!("{CALL}<|im_end|>There are 42 orders.<|im_end|>"));
    let im_end = tok.token_to_id("<|im_end|>").unwrap();
    let ends: Vec<u8> = got.ids.iter().zip(&got.mask).filter(|(i, _)| **i == im_end).map(|(_, m)| *m).collect();
    // system, user, call, tool result, answer: only the policy's two end tokens count.
    assert_eq!(ends, vec![0, 0, 1, 0, 1]);
}

#[test]
fn generation_loop_builds_the_same_ids_and_mask() {
    let (_dir, chat) = setup(QWEN25);
    let tok = chat.tokenizer().clone();
    let msgs = episode_messages();
    let mut ep = chat.episode(msgs[..2].to_vec(), vec![run_sql()]).unwrap();
    assert_eq!(ep.ids(), chat.prompt_ids(&msgs[..2], &[run_sql()]).unwrap().as_slice());
    let segs = qwen_segments();
    assert_eq!(ep.ids(), ids(&tok, &segs[0].0).as_slice());

    // The policy samples the call and stops on <|im_end|>.
    let text = ep.push_completion(&ids(&tok, &segs[1].0)).unwrap();
    assert_eq!(text, CALL);
    let stops = chat.stop_strings();
    let stop_refs: Vec<&str> = stops.iter().map(String::as_str).collect();
    let action = to_action(&text, ActionMode::ToolCall, &stop_refs).unwrap();
    assert_eq!(action, json!({"name": "run_sql", "arguments": {"sql": "SELECT COUNT(*) FROM orders"}}));
    let env = ep.push_env(vec![Message::tool("[[42]]")]).unwrap();
    assert_eq!(env, ids(&tok, &segs[2].0));
    ep.push_completion(&ids(&tok, &segs[3].0)).unwrap();
    assert_eq!(ep.messages(), &msgs[..]);

    let offline = chat.encode_conversation(&msgs, &[run_sql()]).unwrap();
    let tail = ids(&tok, "\n").len();
    let online = ep.into_encoded();
    assert_eq!(online.ids, offline.ids[..offline.ids.len() - tail]);
    assert_eq!(online.mask, offline.mask[..offline.mask.len() - tail]);
}

#[test]
fn a_truncated_completion_gets_the_end_token_from_the_environment() {
    let (_dir, chat) = setup(QWEN25);
    let tok = chat.tokenizer().clone();
    let mut ep = chat.episode(vec![Message::user("hi")], vec![]).unwrap();
    let start = ep.ids().len();
    let cut = ids(&tok, "There are");
    assert_eq!(ep.push_completion(&cut).unwrap(), "There are");
    let env = ep.push_env(vec![Message::user("go on")]).unwrap();
    assert_eq!(env, ids(&tok, "<|im_end|>\n<|im_start|>user\ngo on<|im_end|>\n<|im_start|>assistant\n"));
    let mask = &ep.mask()[start..];
    assert_eq!(mask, [vec![1u8; cut.len()], vec![0u8; env.len()]].concat().as_slice());
}

#[test]
fn llama_and_gemma_masks() {
    let dir = tempfile::tempdir().unwrap();
    write_tokenizer(dir.path());
    let tok = Tokenizer::from_file(dir.path().join("tokenizer.json")).unwrap();

    let llama = ChatTokenizer::new(ChatTemplate::builtin(Builtin::Llama3).unwrap(), tok.clone()).unwrap();
    assert_eq!(llama.end_of_turn(), "<|eot_id|>");
    let conv = [
        Message::user("q"),
        Message::assistant("{\"name\": \"f\", \"parameters\": {}}"),
        Message::tool("ok"),
        Message::assistant("done"),
    ];
    let got = llama.encode_conversation(&conv, &[]).unwrap();
    let want = expected(
        &tok,
        &[
            ("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nq<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", false),
            ("{\"name\": \"f\", \"parameters\": {}}<|eot_id|>", true),
            ("<|start_header_id|>ipython<|end_header_id|>\n\nok<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", false),
            ("done<|eot_id|>", true),
        ],
    );
    assert_eq!(got, want);

    let gemma =
        ChatTokenizer::new(ChatTemplate::new(GEMMA3, Some("<bos>".into()), Some("<eos>".into())).unwrap(), tok.clone())
            .unwrap();
    assert_eq!(gemma.end_of_turn(), "<end_of_turn>");
    assert_eq!(gemma.stop_ids(), vec![tok.token_to_id("<end_of_turn>").unwrap(), tok.token_to_id("<eos>").unwrap()]);
    let conv = [Message::user("q"), Message::assistant("a"), Message::tool("[[1]]"), Message::assistant("b")];
    let got = gemma.encode_conversation(&conv, &[]).unwrap();
    let want = expected(
        &tok,
        &[
            ("<bos><start_of_turn>user\nq<end_of_turn>\n<start_of_turn>model\n", false),
            ("a<end_of_turn>", true),
            ("\n<start_of_turn>user\n[[1]]<end_of_turn>\n<start_of_turn>model\n", false),
            ("b<end_of_turn>", true),
            ("\n", false),
        ],
    );
    assert_eq!(got, want);
}

#[test]
fn templates_that_rewrite_history_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_tokenizer(dir.path());
    let tok = Tokenizer::from_file(dir.path().join("tokenizer.json")).unwrap();
    // Drops what an assistant said before the last user turn (as reasoning templates do
    // with past thinking).
    let forgetful = "{%- set ns = namespace(last=0) %}{%- for m in messages %}{% if m.role == 'user' %}{% set ns.last = loop.index0 %}{% endif %}{% endfor %}\
{%- for m in messages %}{{ '<|im_start|>' + m.role + '\\n' }}{% if m.role == 'assistant' and loop.index0 < ns.last %}...{% else %}{{ m.content }}{% endif %}{{ '<|im_end|>\\n' }}{% endfor %}\
{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
    let chat = ChatTokenizer::new(ChatTemplate::new(forgetful, None, None).unwrap(), tok.clone()).unwrap();
    let conv = [Message::user("a"), Message::assistant("first answer"), Message::user("b"), Message::assistant("c")];
    let err = chat.encode_conversation(&conv, &[]).unwrap_err();
    assert_eq!(
        err,
        ChatError::NotPrefixStable {
            turn: 1,
            offset: 51,
            expected: "first answer".into(),
            found: "...<|im_end|>\n<|im_start|>user\nb<|im_end|>\n<|im_start|>assis".into()
        }
    );
    let err = chat.append_env_turn(&conv[..2], &[Message::user("b")], &[], true).unwrap_err();
    assert!(matches!(err, ChatError::NotPrefixStable { turn: 1, .. }), "{err:?}");

    // A generation prompt the assistant turn does not start with.
    let thinking =
        "{%- for m in messages %}{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{% endfor %}\
{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n<think>' }}{% endif %}";
    let err = ChatTokenizer::new(ChatTemplate::new(thinking, None, None).unwrap(), tok).unwrap_err();
    assert_eq!(
        err,
        ChatError::NotPrefixStable {
            turn: 1,
            offset: 52,
            expected: "<think>".into(),
            found: "hzprobe<|im_end|>\n".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "chat template is not prefix-stable at assistant message 1: at byte 52 the prompt has \"<think>\" but the longer conversation renders \"hzprobe<|im_end|>\\n\""
    );
}

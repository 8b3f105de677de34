//! Side panels: properties (forms from the spec's JSON Schema), code view, play-test,
//! versions, and the templates gallery.

use crate::api::{CommitView, DiffView, OpenedGym, PlayView, TemplateInfo, VersionInfo};
use crate::app::Ctx;
use crate::ipc::invoke;
use crate::monaco;
use leptos::html;
use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_flow::Command;
use serde_json::{json, Value};

#[component]
pub fn CodeView() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let which = RwSignal::new("json");
    let json_el: NodeRef<html::Div> = NodeRef::new();
    let py_el: NodeRef<html::Div> = NodeRef::new();
    json_el.on_load(move |el| {
        monaco::create("json", &el, &ctx.text.get_untracked(), "json", false);
        monaco::on_change("json", move |text| ctx.on_code_change(text));
    });
    py_el.on_load(move |el| {
        let py = ctx.analysis.with_untracked(|a| a.python.clone()).unwrap_or_default();
        monaco::create("python", &el, &py, "python", true);
    });
    let pick = move |w: &'static str| {
        which.set(w);
        request_animation_frame(move || monaco::layout(w));
    };
    view! {
        <div class="hz-code">
            <div class="hz-code-tabs">
                <button id="code-json" class:hz-tab-on=move || which.get() == "json" on:click=move |_| pick("json")>"gym.json"</button>
                <button id="code-python" class:hz-tab-on=move || which.get() == "python" on:click=move |_| pick("python")>"Python (read-only)"</button>
            </div>
            <div class="hz-editor" id="editor-json" node_ref=json_el class:hz-hidden=move || which.get() != "json"></div>
            <div class="hz-editor" id="editor-python" node_ref=py_el class:hz-hidden=move || which.get() != "python"></div>
        </div>
    }
}

/// Resolve a local `$ref` against the spec schema's `$defs`.
fn resolve<'a>(schema: &'a Value, root: &'a Value) -> &'a Value {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        if let Some(name) = r.strip_prefix("#/$defs/") {
            if let Some(d) = root.get("$defs").and_then(|d| d.get(name)) {
                return d;
            }
        }
    }
    schema
}

fn enum_values(schema: &Value, root: &Value) -> Option<Vec<String>> {
    let s = resolve(schema, root);
    if let Some(e) = s.get("enum").and_then(Value::as_array) {
        return Some(e.iter().filter_map(|v| v.as_str().map(str::to_string)).collect());
    }
    let alts = s.get("oneOf").or_else(|| s.get("anyOf")).and_then(Value::as_array)?;
    let vals: Vec<String> = alts
        .iter()
        .filter_map(|a| {
            a.get("const").or_else(|| a.get("enum").and_then(|e| e.get(0))).and_then(Value::as_str).map(str::to_string)
        })
        .collect();
    (vals.len() == alts.len() && !vals.is_empty()).then_some(vals)
}

fn schema_type(schema: &Value, root: &Value) -> String {
    let s = resolve(schema, root);
    match s.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => {
            ts.iter().filter_map(Value::as_str).find(|t| *t != "null").unwrap_or("string").to_string()
        }
        _ => {
            if s.get("anyOf").is_some() || s.get("oneOf").is_some() {
                // Option<T> comes out as anyOf [T, null].
                let alts =
                    s.get("anyOf").or_else(|| s.get("oneOf")).and_then(Value::as_array).cloned().unwrap_or_default();
                alts.iter().map(|a| schema_type(a, root)).find(|t| t != "null").unwrap_or_else(|| "json".to_string())
            } else {
                "json".to_string()
            }
        }
    }
}

/// Fields whose text is long (templates, expressions, SQL): a text area.
fn multiline(name: &str) -> bool {
    ["text", "template", "observation", "rubric", "query", "expr", "condition", "when", "url", "terminated", "params"]
        .contains(&name)
}

#[component]
pub fn PropertiesPanel() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let selected = Memo::new(move |_| {
        let sel = ctx.flow.selection.get();
        (sel.len() == 1).then(|| sel.into_iter().next()).flatten()
    });
    view! {
        <div class="hz-props" id="properties">
            {move || match selected.get() {
                None => {
                    let n = ctx.flow.selection.with(|s| s.len());
                    let msg = if n == 0 { "Select a node to edit its properties.".to_string() } else { format!("{n} nodes selected.") };
                    view! { <p class="hz-muted">{msg}</p> }.into_any()
                }
                Some(id) => view! { <NodeForm id /> }.into_any(),
            }}
        </div>
    }
}

#[component]
fn NodeForm(id: String) -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let Some(sig) = ctx.flow.nodes.with_untracked(|m| m.get(&id).copied()) else {
        return view! { <p class="hz-muted">"Node not found."</p> }.into_any();
    };
    let kind = sig.node.with_untracked(|n| n.kind.clone());
    let info = ctx.catalog.with_untracked(|c| c.kind(&kind).cloned()).unwrap_or_default();
    let root = ctx.catalog.with_untracked(|c| c.spec_schema.clone());
    let props: Vec<(String, Value, bool)> = {
        let required: Vec<String> = info
            .schema
            .get("required")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        info.schema
            .get("properties")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| k.as_str() != "kind")
                    .map(|(k, v)| (k.clone(), v.clone(), required.contains(k)))
                    .collect()
            })
            .unwrap_or_default()
    };
    // Commit one field: a single undo step.
    let commit = move |field: String, value: Option<Value>| {
        let Some(mut node) = ctx.flow.with_graph(|g| g.node(&sig.node.get_untracked().id).cloned()) else { return };
        let mut data = node.data.as_object().cloned().unwrap_or_default();
        match value {
            Some(v) => {
                data.insert(field, v);
            }
            None => {
                data.remove(&field);
            }
        }
        node.data = Value::Object(data);
        if let Ok(cmd) = ctx.flow.with_graph(|g| Command::set_node(g, node)) {
            let _ = ctx.flow.apply(cmd);
        }
    };
    let set_label = move |label: String| {
        let Some(mut node) = ctx.flow.with_graph(|g| g.node(&sig.node.get_untracked().id).cloned()) else { return };
        node.title = label;
        if let Ok(cmd) = ctx.flow.with_graph(|g| Command::set_node(g, node)) {
            let _ = ctx.flow.apply(cmd);
        }
    };
    let errors = move || sig.node.with(|n| n.errors.clone());
    let fields = props
        .into_iter()
        .map(|(name, schema, required)| {
            let ty = schema_type(&schema, &root);
            let choices = enum_values(&schema, &root);
            let desc = resolve(&schema, &root).get("description").or_else(|| schema.get("description")).and_then(Value::as_str).unwrap_or_default().to_string();
            let n1 = name.clone();
            let current = move || sig.node.with(|n| n.data.get(&n1).cloned());
            let field_id = format!("prop-{name}");
            let label = format!("{name}{}", if required { " *" } else { "" });
            let input = match (choices, ty.as_str()) {
                (Some(values), _) => {
                    let name = name.clone();
                    let cur = current.clone();
                    view! {
                        <select id=field_id.clone() on:change=move |ev| commit(name.clone(), Some(Value::String(event_target_value(&ev))))>
                            <option value="" selected=move || cur().is_none()>"—"</option>
                            {values.into_iter().map(|v| {
                                let c = current.clone();
                                let v2 = v.clone();
                                view! { <option value=v.clone() selected=move || c().and_then(|x| x.as_str().map(str::to_string)).as_deref() == Some(v2.as_str())>{v.clone()}</option> }
                            }).collect_view()}
                        </select>
                    }.into_any()
                }
                (None, "boolean") => {
                    let name = name.clone();
                    view! {
                        <input type="checkbox" id=field_id.clone()
                            prop:checked=move || current().and_then(|v| v.as_bool()).unwrap_or(false)
                            on:change=move |ev| commit(name.clone(), Some(Value::Bool(event_target_checked(&ev)))) />
                    }.into_any()
                }
                (None, "number") | (None, "integer") => {
                    let name = name.clone();
                    let int = ty == "integer";
                    view! {
                        <input type="number" id=field_id.clone() step=if int { "1" } else { "any" }
                            prop:value=move || current().map(|v| v.to_string()).unwrap_or_default()
                            on:change=move |ev| {
                                let t = event_target_value(&ev);
                                if t.trim().is_empty() {
                                    commit(name.clone(), None);
                                } else if let Ok(v) = serde_json::from_str::<Value>(t.trim()) {
                                    if v.is_number() { commit(name.clone(), Some(v)); }
                                }
                            } />
                    }.into_any()
                }
                (None, "string") => {
                    let name = name.clone();
                    let value = move || current().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
                    if multiline(&name) {
                        view! {
                            <textarea id=field_id.clone() rows="4" spellcheck="false" prop:value=value
                                on:change=move |ev| commit(name.clone(), Some(Value::String(event_target_value(&ev))))></textarea>
                        }.into_any()
                    } else {
                        view! {
                            <input type="text" id=field_id.clone() prop:value=value
                                on:change=move |ev| commit(name.clone(), Some(Value::String(event_target_value(&ev)))) />
                        }.into_any()
                    }
                }
                _ => {
                    // Lists and objects: JSON, checked before it is committed.
                    let name = name.clone();
                    let bad = RwSignal::new(None::<String>);
                    view! {
                        <textarea id=field_id.clone() rows="6" spellcheck="false" class="hz-json"
                            prop:value=move || current().map(|v| serde_json::to_string_pretty(&v).unwrap_or_default()).unwrap_or_default()
                            on:change=move |ev| {
                                let t = event_target_value(&ev);
                                if t.trim().is_empty() { bad.set(None); commit(name.clone(), None); return; }
                                match serde_json::from_str::<Value>(&t) {
                                    Ok(v) => { bad.set(None); commit(name.clone(), Some(v)); }
                                    Err(e) => bad.set(Some(format!("not valid JSON (line {}, column {}): {e}", e.line(), e.column()))),
                                }
                            }></textarea>
                        {move || bad.get().map(|b| view! { <div class="hz-field-error">{b}</div> })}
                    }.into_any()
                }
            };
            view! {
                <div class="hz-field">
                    <label for=field_id.clone()>{label}</label>
                    {input}
                    {(!desc.is_empty()).then(|| view! { <div class="hz-help">{desc.clone()}</div> })}
                </div>
            }
        })
        .collect_view();
    view! {
        <div class="hz-node-form" data-node=id.clone()>
            <h3>{info.title.clone()} <span class="hz-muted">{format!(" {}", id)}</span></h3>
            <p class="hz-muted">{info.description.clone()}</p>
            {move || {
                let e = errors();
                (!e.is_empty()).then(|| view! {
                    <ul class="hz-errors" id="node-errors">{e.into_iter().map(|m| view! { <li>{m}</li> }).collect_view()}</ul>
                })
            }}
            <div class="hz-field">
                <label for="prop-label">"label"</label>
                <input type="text" id="prop-label" prop:value=move || sig.node.with(|n| n.title.clone()) on:change=move |ev| set_label(event_target_value(&ev)) />
            </div>
            {fields}
        </div>
    }
    .into_any()
}

#[component]
pub fn PlayPanel() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let seed = RwSignal::new("1".to_string());
    let task = RwSignal::new(String::new());
    let action = RwSignal::new(String::new());
    let tool = RwSignal::new(String::new());
    let args = RwSignal::new("{}".to_string());
    let log = RwSignal::new(Vec::<(String, PlayView)>::new());
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let mode = Memo::new(move |_| {
        ctx.flow.nodes.with(|m| {
            m.values()
                .find_map(|s| s.node.with(|n| (n.kind == "action_space").then(|| n.data.clone())))
                .unwrap_or(Value::Null)
        })
    });
    let tools = Memo::new(move |_| {
        mode.with(|m| {
            m.get("tools")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|t| t.get("name").and_then(Value::as_str).map(str::to_string))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
    });
    let tool_mode = move || mode.with(|m| m.get("mode").and_then(Value::as_str) == Some("tool_call"));
    let tasks = Memo::new(move |_| {
        ctx.base.with(|b| {
            b.get("tasks")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter().filter_map(|t| t.get("id").and_then(Value::as_str).map(str::to_string)).collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
    });
    let reset = move |_| {
        let Ok(seed_n) = seed.get_untracked().trim().parse::<u64>() else {
            error.set(Some(format!("seed must be a whole number ≥ 0, not {:?}", seed.get_untracked())));
            return;
        };
        let t = task.get_untracked();
        let body = json!({"text": ctx.text.get_untracked(), "path": ctx.path.get_untracked(), "seed": seed_n, "task": if t.is_empty() { Value::Null } else { Value::String(t) }});
        busy.set(true);
        spawn_local(async move {
            match invoke::<_, PlayView>("play_reset", &body).await {
                Ok(v) => {
                    error.set(None);
                    log.set(vec![("reset".to_string(), v)]);
                }
                Err(e) => error.set(Some(e)),
            }
            busy.set(false);
        });
    };
    let send = move |_| {
        let text = if tool_mode() {
            let a = args.get_untracked();
            match serde_json::from_str::<Value>(&a) {
                Ok(v) => json!({"tool": tool.get_untracked(), "arguments": v}).to_string(),
                Err(e) => {
                    error.set(Some(format!("arguments are not valid JSON: {e}")));
                    return;
                }
            }
        } else {
            action.get_untracked()
        };
        busy.set(true);
        spawn_local(async move {
            match invoke::<_, PlayView>("play_step", &json!({"action": text.clone()})).await {
                Ok(v) => {
                    error.set(None);
                    log.update(|l| l.push((text, v)));
                }
                Err(e) => error.set(Some(e)),
            }
            busy.set(false);
        });
    };
    let over = move || log.with(|l| l.last().is_some_and(|(_, v)| v.terminated || v.truncated));
    view! {
        <div class="hz-play" id="play">
            <div class="hz-row">
                <label>"seed " <input id="play-seed" class="hz-narrow" prop:value=move || seed.get() on:input=move |ev| seed.set(event_target_value(&ev)) /></label>
                <label>"task "
                    <select id="play-task" on:change=move |ev| task.set(event_target_value(&ev))>
                        <option value="">"by seed"</option>
                        {move || tasks.get().into_iter().map(|t| view! { <option value=t.clone()>{t.clone()}</option> }).collect_view()}
                    </select>
                </label>
                <button id="play-reset" disabled=move || busy.get() on:click=reset>"Reset"</button>
            </div>
            {move || error.get().map(|e| view! { <div class="hz-field-error" id="play-error">{e}</div> })}
            <div class="hz-transcript" id="play-transcript">
                {move || log.get().into_iter().enumerate().map(|(i, (act, v))| view! {
                    <div class="hz-turn" data-step=v.step data-task=v.task_id.clone()>
                        <div class="hz-turn-meta hz-muted">{format!("task {} · step {}/{}", v.task_id, v.step, v.max_steps)}</div>
                        {(i > 0).then(|| view! { <div class="hz-action"><b>"action: "</b><code>{act.clone()}</code></div> })}
                        <pre class="hz-obs">{v.observation.clone()}</pre>
                        {(i > 0).then(|| view! {
                            <div class="hz-reward">
                                <b>{format!("reward {:+.3}", v.reward)}</b>
                                {v.terminated.then(|| view! { <span class="hz-tag">"terminated"</span> })}
                                {v.truncated.then(|| view! { <span class="hz-tag">"truncated"</span> })}
                                {v.invalid_action.clone().map(|e| view! { <span class="hz-tag hz-bad">{format!("invalid action: {e}")}</span> })}
                            </div>
                            <table class="hz-rewards">
                                {v.rewards.iter().map(|r| view! {
                                    <tr><td>{r.source.clone()}</td><td>{r.kind.clone()}</td><td class="hz-num">{format!("{:+.3}", r.value)}</td>
                                    <td class="hz-muted">{r.message.clone().or(r.rationale.clone()).unwrap_or_default()}{if r.skipped { " (skipped)" } else { "" }}</td></tr>
                                }).collect_view()}
                            </table>
                        })}
                    </div>
                }).collect_view()}
            </div>
            {move || (!log.with(Vec::is_empty) && !over()).then(|| if tool_mode() {
                view! {
                    <div class="hz-act">
                        <select id="play-tool" on:change=move |ev| tool.set(event_target_value(&ev))>
                            <option value="">"tool…"</option>
                            {move || tools.get().into_iter().map(|t| view! { <option value=t.clone()>{t.clone()}</option> }).collect_view()}
                        </select>
                        <textarea id="play-args" rows="3" spellcheck="false" prop:value=move || args.get() on:input=move |ev| args.set(event_target_value(&ev))></textarea>
                        <button id="play-send" disabled=move || busy.get() on:click=send>"Send"</button>
                    </div>
                }.into_any()
            } else {
                view! {
                    <div class="hz-act">
                        <textarea id="play-action" rows="3" placeholder="The agent's text" prop:value=move || action.get() on:input=move |ev| action.set(event_target_value(&ev))></textarea>
                        <button id="play-send" disabled=move || busy.get() on:click=send>"Send"</button>
                    </div>
                }.into_any()
            })}
        </div>
    }
}

#[component]
pub fn VersionsPanel() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let message = RwSignal::new(String::new());
    let versions = RwSignal::new(Vec::<VersionInfo>::new());
    let diff = RwSignal::new(None::<(String, DiffView)>);
    let confirm = RwSignal::new(None::<String>);
    let refresh = move || {
        let Some(path) = ctx.path.get_untracked() else { return };
        spawn_local(async move {
            match invoke::<_, Vec<VersionInfo>>("log", &json!({"path": path})).await {
                Ok(v) => versions.set(v),
                Err(e) => ctx.say(format!("History: {e}"), true),
            }
        });
    };
    Effect::new(move |_| {
        if ctx.tab.get() == crate::app::Tab::Versions {
            let _ = ctx.path.get();
            refresh();
        }
    });
    let commit = move |_| {
        let Some(path) = ctx.path.get_untracked() else {
            ctx.say("Save the gym before committing", true);
            return;
        };
        let msg = message.get_untracked();
        if msg.trim().is_empty() {
            ctx.say("Write a commit message first", true);
            return;
        }
        let text = ctx.text.get_untracked();
        spawn_local(async move {
            match invoke::<_, CommitView>("commit", &json!({"path": path, "text": text, "message": msg})).await {
                Ok(c) => {
                    ctx.flow.mark_saved();
                    message.set(String::new());
                    ctx.say(
                        if c.summary.is_empty() { format!("Committed {}", c.version.rev) } else { c.summary },
                        false,
                    );
                    refresh();
                }
                Err(e) => ctx.say(format!("Not committed: {e}"), true),
            }
        });
    };
    let show_diff = move |rev: String| {
        let Some(path) = ctx.path.get_untracked() else { return };
        let text = ctx.text.get_untracked();
        spawn_local(async move {
            match invoke::<_, DiffView>(
                "diff",
                &json!({"path": path, "from": rev.clone(), "to": Value::Null, "working_text": text}),
            )
            .await
            {
                Ok(d) => diff.set(Some((rev, d))),
                Err(e) => ctx.say(format!("Diff: {e}"), true),
            }
        });
    };
    let restore = move |rev: String, force: bool| {
        let Some(path) = ctx.path.get_untracked() else { return };
        if ctx.flow.dirty.get_untracked() && !force {
            confirm.set(Some(rev));
            return;
        }
        confirm.set(None);
        let text = ctx.text.get_untracked();
        spawn_local(async move {
            match invoke::<_, OpenedGym>("checkout", &json!({"path": path, "rev": rev.clone(), "working_text": text, "force": force || ctx.flow.dirty.get_untracked()})).await {
                Ok(g) => {
                    // A rollback is one undoable step; the file on disk is the restored version.
                    let base: Value = serde_json::from_str(&g.text).unwrap_or_else(|_| json!({}));
                    let graph = ctx.catalog.with_untracked(|c| crate::gymdoc::to_graph(&base, c, &g.analysis.ports));
                    ctx.base.set(base);
                    ctx.flow.replace(&format!("Restore {rev}"), graph);
                    ctx.text.set(g.text.clone());
                    monaco::set_value("json", &g.text);
                    ctx.flow.mark_saved();
                    ctx.schedule_analysis();
                    diff.set(None);
                    ctx.say(format!("Restored {rev}"), false);
                    refresh();
                }
                Err(e) => ctx.say(format!("Not restored: {e}"), true),
            }
        });
    };
    view! {
        <div class="hz-versions" id="versions">
            <div class="hz-row">
                <input id="commit-message" placeholder="What changed?" prop:value=move || message.get() on:input=move |ev| message.set(event_target_value(&ev)) />
                <button id="commit" on:click=commit>"Commit"</button>
            </div>
            {move || confirm.get().map(|rev| {
                let r2 = rev.clone();
                view! {
                    <div class="hz-warn" id="restore-confirm">
                        {format!("You have uncommitted changes. Restore {rev} and discard them?")}
                        <button id="restore-anyway" on:click=move |_| restore(r2.clone(), true)>"Restore anyway"</button>
                        <button on:click=move |_| confirm.set(None)>"Cancel"</button>
                    </div>
                }
            })}
            <ul class="hz-history" id="history">
                {move || versions.get().into_iter().map(|v| {
                    let r1 = v.rev.clone();
                    let r2 = v.rev.clone();
                    view! {
                        <li data-rev=v.rev.clone() class:hz-current=v.current>
                            <div><b>{v.rev.clone()}</b>" "<span>{v.message.clone()}</span></div>
                            <div class="hz-muted">{format!("{} · {}", v.time, v.short_id)}{if v.head { " · latest" } else { "" }}</div>
                            <button class="hz-diff" on:click=move |_| show_diff(r1.clone())>"Diff with working copy"</button>
                            <button class="hz-restore" on:click=move |_| restore(r2.clone(), false)>"Restore"</button>
                        </li>
                    }
                }).collect_view()}
            </ul>
            {move || diff.get().map(|(rev, d)| view! {
                <div class="hz-diffview" id="diff">
                    <h4>{format!("{rev} → working copy")}</h4>
                    {if d.empty { view! { <p class="hz-muted">"No changes."</p> }.into_any() } else {
                        view! { <pre>{d.lines.join("\n")}</pre> }.into_any()
                    }}
                </div>
            })}
        </div>
    }
}

#[component]
pub fn Gallery() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let templates = RwSignal::new(Vec::<TemplateInfo>::new());
    let name = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    spawn_local(async move {
        match invoke::<_, Vec<TemplateInfo>>("templates", &json!({})).await {
            Ok(t) => templates.set(t),
            Err(e) => error.set(Some(e)),
        }
    });
    let open_template = move |n: String| {
        spawn_local(async move {
            match invoke::<_, OpenedGym>("open_template", &json!({"name": n})).await {
                Ok(g) => ctx.open(g),
                Err(e) => error.set(Some(e)),
            }
        });
    };
    let new_gym = move |_| {
        let n = name.get_untracked();
        spawn_local(async move {
            match invoke::<_, OpenedGym>("new_gym", &json!({"name": n})).await {
                Ok(g) => ctx.open(g),
                Err(e) => error.set(Some(e)),
            }
        });
    };
    let open_path = RwSignal::new(String::new());
    let open_at = move |p: String| async move {
        match invoke::<_, OpenedGym>("open_gym", &json!({"path": p})).await {
            Ok(g) => ctx.open(g),
            Err(e) => error.set(Some(e)),
        }
    };
    let open_file = move |_| {
        spawn_local(open_at(open_path.get_untracked()));
    };
    // The system's Open dialog; a chosen file opens at once.
    // Disabled while its dialog is open: one dialog at a time.
    let picking = RwSignal::new(false);
    let browse = move |_| {
        picking.set(true);
        spawn_local(async move {
            let current = ctx.path.get_untracked();
            let picked = invoke::<_, Option<String>>("pick_open_path", &json!({"current": current})).await;
            picking.set(false);
            match picked {
                Ok(Some(p)) => {
                    open_path.set(p.clone());
                    open_at(p).await;
                }
                Ok(None) => {}
                Err(e) => error.set(Some(e)),
            }
        });
    };
    let has_gym = move || ctx.path.get().is_some();
    view! {
        <div class="hz-modal-back">
            <div class="hz-modal" id="gallery">
                <h2>"Open a gym"</h2>
                <div class="hz-row">
                    <input id="new-gym-name" placeholder="new-gym-name" prop:value=move || name.get() on:input=move |ev| name.set(event_target_value(&ev)) />
                    <button id="new-gym" on:click=new_gym>"New blank gym"</button>
                    {move || has_gym().then(|| view! { <button id="close-gallery" on:click=move |_| ctx.gallery.set(false)>"Close"</button> })}
                </div>
                <div class="hz-row">
                    <input id="open-path" class="hz-wide" placeholder="/path/to/name.gym.json" prop:value=move || open_path.get() on:input=move |ev| open_path.set(event_target_value(&ev)) />
                    <button id="open-path-go" on:click=open_file>"Open file"</button>
                    <button id="open-browse" on:click=browse prop:disabled=move || picking.get()>"Browse…"</button>
                </div>
                {move || error.get().map(|e| view! { <div class="hz-field-error" id="gallery-error">{e}</div> })}
                <h3>"Templates"</h3>
                <div class="hz-cards">
                    {move || templates.get().into_iter().map(|t| {
                        let n = t.name.clone();
                        view! {
                            <div class="hz-card" data-template=t.name.clone()>
                                <h4>{t.title.clone()}</h4>
                                <p>{t.description.clone()}</p>
                                <p class="hz-muted">{format!("{} nodes · {} tasks", t.node_count, t.task_count)}</p>
                                <button class="hz-open-template" on:click=move |_| open_template(n.clone())>"Open a copy"</button>
                            </div>
                        }
                    }).collect_view()}
                </div>
            </div>
        </div>
    }
}

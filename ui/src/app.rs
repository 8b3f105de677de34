//! The builder page and the state its panels share.

use crate::api::{Analysis, Catalog, OpenedGym, SavedGym};
use crate::gymdoc;
use crate::ipc::invoke;
use crate::monaco;
use crate::panels::{CodeView, Gallery, PlayPanel, PropertiesPanel, VersionsPanel};
use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_flow::view::{FlowCanvas, FlowState, Palette};
use leptos_flow::{Graph, WireRules};
use serde_json::{json, Value};
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Properties,
    Code,
    Play,
    Versions,
}

/// Everything the panels share. `Copy`: a bundle of signal handles.
#[derive(Clone, Copy)]
pub struct Ctx {
    pub catalog: RwSignal<Catalog>,
    pub flow: FlowState,
    /// The gym JSON as last parsed (fields other than nodes and edges live here).
    pub base: RwSignal<Value>,
    pub path: RwSignal<Option<String>>,
    /// The gym JSON text: what is saved, analysed and shown in the code view.
    pub text: RwSignal<String>,
    pub analysis: RwSignal<Analysis>,
    pub tab: RwSignal<Tab>,
    pub status: RwSignal<Option<(String, bool)>>,
    pub gallery: RwSignal<bool>,
    /// Set while the code view is the source of a change, so it is not written back.
    from_code: StoredValue<bool>,
    analyse_serial: StoredValue<u64>,
}

impl Ctx {
    pub fn say(&self, text: impl Into<String>, error: bool) {
        self.status.set(Some((text.into(), error)));
    }

    pub fn gym_name(&self) -> String {
        self.base.with(|b| b.get("name").and_then(Value::as_str).unwrap_or("untitled").to_string())
    }

    /// Open a gym into the editor: a fresh, clean history.
    pub fn open(&self, g: OpenedGym) {
        let base: Value = serde_json::from_str(&g.text).unwrap_or_else(|_| json!({}));
        let graph = self.catalog.with_untracked(|c| gymdoc::to_graph(&base, c, &g.analysis.ports));
        self.base.set(base);
        self.path.set(Some(g.path.clone()));
        self.from_code.set_value(false);
        self.flow.load(graph);
        self.flow.mark_saved();
        self.text.set(g.text.clone());
        monaco::set_value("json", &g.text);
        self.apply_analysis(g.analysis);
        self.gallery.set(false);
        self.flow.fit_view();
        self.say(format!("Opened {}", g.path), false);
    }

    /// The document changed on the canvas: regenerate the JSON and re-analyse.
    fn on_graph_change(&self) {
        if self.from_code.get_value() {
            self.from_code.set_value(false);
            self.schedule_analysis();
            return;
        }
        let graph = self.flow.graph();
        let spec = self.base.with_untracked(|b| gymdoc::to_spec(b, &graph));
        let text = gymdoc::pretty(&spec);
        if self.text.get_untracked() != text {
            self.base.set(spec);
            self.text.set(text.clone());
            monaco::set_value("json", &text);
        }
        self.schedule_analysis();
    }

    /// The JSON was edited in the code view: one undo step on the canvas when it parses.
    pub fn on_code_change(&self, text: String) {
        self.text.set(text.clone());
        match serde_json::from_str::<Value>(&text) {
            Ok(v) => {
                let ports =
                    self.flow.with_graph(|g| self.analysis.with_untracked(|a| gymdoc::known_ports(&v, g, &a.ports)));
                let graph: Graph = self.catalog.with_untracked(|c| gymdoc::to_graph(&v, c, &ports));
                self.base.set(v);
                if self.flow.with_graph(|g| g != &graph) {
                    self.from_code.set_value(true);
                    self.flow.replace("Edit JSON", graph);
                } else {
                    self.schedule_analysis();
                }
            }
            Err(_) => self.schedule_analysis(),
        }
    }

    /// Analyse the current text soon; later requests supersede earlier ones.
    pub fn schedule_analysis(&self) {
        let mut serial = 0;
        self.analyse_serial.update_value(|s| {
            *s += 1;
            serial = *s;
        });
        let ctx = *self;
        set_timeout(
            move || {
                if ctx.analyse_serial.get_value() != serial {
                    return;
                }
                let text = ctx.text.get_untracked();
                let path = ctx.path.get_untracked();
                spawn_local(async move {
                    match invoke::<_, Analysis>("analyze", &json!({"text": text, "path": path})).await {
                        Ok(a) => {
                            if ctx.analyse_serial.get_value() == serial {
                                ctx.apply_analysis(a);
                            }
                        }
                        Err(e) => ctx.say(format!("Analysis failed: {e}"), true),
                    }
                });
            },
            std::time::Duration::from_millis(150),
        );
    }

    /// Badges, derived ports, code-view markers and the Python preview from an analysis.
    fn apply_analysis(&self, a: Analysis) {
        let mut errors: HashMap<String, Vec<String>> = HashMap::new();
        for d in &a.diagnostics {
            if let Some(n) = &d.node {
                let field = if d.field.is_empty() { String::new() } else { format!("{}: ", d.field) };
                errors.entry(n.clone()).or_default().push(format!("{field}{}", d.message));
            }
        }
        for (id, p) in &a.ports {
            let (inputs, outputs) = gymdoc::ports(p);
            let same = self.flow.with_graph(|g| g.node(id).is_none_or(|n| n.inputs == inputs && n.outputs == outputs));
            if !same {
                self.flow.set_ports(id, inputs, outputs);
            }
        }
        self.flow.set_errors(&errors);
        let text = self.text.get_untracked();
        let markers: Vec<monaco::Marker> = a
            .diagnostics
            .iter()
            .map(|d| {
                let (line, column) = match (d.line, d.column) {
                    (Some(l), Some(c)) => (l, c),
                    _ => d.node.as_deref().map(|n| node_line(&text, n)).unwrap_or((1, 1)),
                };
                let at = match &d.node {
                    Some(n) => format!("node `{n}`, {}: ", d.field),
                    None if d.field.is_empty() => String::new(),
                    None => format!("{}: ", d.field),
                };
                monaco::Marker { line, column, message: format!("{at}{}", d.message), error: d.severity != "warning" }
            })
            .collect();
        monaco::set_markers("json", &markers);
        if let Some(py) = &a.python {
            monaco::set_value("python", py);
        }
        self.analysis.set(a);
    }

    pub fn save(&self, path: Option<String>) {
        let ctx = *self;
        let Some(path) = path.or_else(|| self.path.get_untracked()) else {
            self.say("Choose where to save first (Save as…)", true);
            return;
        };
        let text = self.text.get_untracked();
        spawn_local(async move {
            match invoke::<_, SavedGym>("save_gym", &json!({"path": path, "text": text})).await {
                Ok(s) => {
                    ctx.path.set(Some(s.path.clone()));
                    ctx.flow.mark_saved();
                    ctx.say(format!("Saved {}", s.path), false);
                }
                Err(e) => ctx.say(format!("Not saved: {e}"), true),
            }
        });
    }
}

/// Line and column of a node's `"id": "<id>"` in the JSON text, for markers.
fn node_line(text: &str, id: &str) -> (u32, u32) {
    let needle = format!("\"id\": \"{id}\"");
    for (i, line) in text.lines().enumerate() {
        if let Some(c) = line.find(&needle) {
            return (i as u32 + 1, c as u32 + 1);
        }
    }
    (1, 1)
}

#[component]
pub fn App() -> impl IntoView {
    let ctx = Ctx {
        catalog: RwSignal::new(Catalog::default()),
        flow: FlowState::new(Graph::new(), WireRules::default()),
        base: RwSignal::new(json!({})),
        path: RwSignal::new(None),
        text: RwSignal::new(String::new()),
        analysis: RwSignal::new(Analysis::default()),
        tab: RwSignal::new(Tab::Properties),
        status: RwSignal::new(None),
        gallery: RwSignal::new(true),
        from_code: StoredValue::new(false),
        analyse_serial: StoredValue::new(0),
    };
    provide_context(ctx);

    spawn_local(async move {
        match invoke::<_, Catalog>("catalog", &json!({})).await {
            Ok(c) => {
                ctx.flow.set_rules(gymdoc::rules(&c));
                ctx.flow.palette.set(gymdoc::palette(&c));
                ctx.catalog.set(c);
            }
            Err(e) => ctx.say(format!("Could not load node kinds: {e}"), true),
        }
    });

    // Native menu items the shell forwards.
    spawn_local(async move {
        let r = crate::ipc::listen("menu", move |id| match id.as_str().unwrap_or_default() {
            "save" => ctx.save(None),
            "commit" => ctx.tab.set(Tab::Versions),
            "undo" => ctx.flow.undo(),
            "redo" => ctx.flow.redo(),
            "fit_view" => ctx.flow.fit_view(),
            "new_gym" | "open_template" => ctx.gallery.set(true),
            _ => {}
        })
        .await;
        if let Err(e) = r {
            ctx.say(format!("Menu unavailable: {e}"), true);
        }
    });

    // Canvas changes regenerate the JSON. Reading `revision` only: one run per change.
    Effect::new(move |prev: Option<u64>| {
        let rev = ctx.flow.revision.get();
        if prev.is_some_and(|p| p != rev) {
            ctx.on_graph_change();
        }
        rev
    });

    let on_key = move |ev: leptos::ev::KeyboardEvent| {
        let ctrl = ev.ctrl_key() || ev.meta_key();
        if ctrl && (ev.key() == "s" || ev.key() == "S") {
            ev.prevent_default();
            ctx.save(None);
        }
    };
    let title = move || {
        ctx.base.with(|b| b.get("title").and_then(Value::as_str).map(str::to_string)).unwrap_or_else(|| ctx.gym_name())
    };
    let errors =
        Memo::new(move |_| ctx.analysis.with(|a| a.diagnostics.iter().filter(|d| d.severity != "warning").count()));
    let tab_button = move |t: Tab, label: &'static str, id: &'static str| {
        view! {
            <button class="hz-tab" id=id class:hz-tab-on=move || ctx.tab.get() == t on:click=move |_| {
                ctx.tab.set(t);
                if t == Tab::Code {
                    request_animation_frame(|| {
                        monaco::layout("json");
                        monaco::layout("python");
                    });
                }
            }>{label}</button>
        }
    };

    view! {
        <div class="hz-app" on:keydown=on_key>
            <header class="hz-header">
                <span class="hz-logo">"440hz"</span>
                <span class="hz-title" id="gym-title">{title}</span>
                <span class="hz-dirty" id="dirty" title="Unsaved changes" class:hz-hidden=move || !ctx.flow.dirty.get()>"●"</span>
                <span class="hz-path" id="gym-path" title=move || ctx.path.get().unwrap_or_default()>{move || ctx.path.get().unwrap_or_default()}</span>
                <span class="hz-spacer"></span>
                <button id="open-gallery" on:click=move |_| ctx.gallery.set(true)>"Open…"</button>
                <button id="save" on:click=move |_| ctx.save(None)>"Save"</button>
                <SaveAs />
                <button id="undo" disabled=move || !ctx.flow.can_undo.get() title=move || {
                    // The label lives in the command log, which is not a signal: track the revision.
                    ctx.flow.revision.track();
                    ctx.flow.undo_label().map(|l| format!("Undo {l}")).unwrap_or_default()
                } on:click=move |_| ctx.flow.undo()>"Undo"</button>
                <button id="redo" disabled=move || !ctx.flow.can_redo.get() on:click=move |_| ctx.flow.redo()>"Redo"</button>
                <button id="fit" on:click=move |_| ctx.flow.fit_view()>"Fit"</button>
                <button id="tidy" on:click=move |_| ctx.flow.tidy()>"Tidy up"</button>
                <button
                    id="group"
                    title="Put a group around the selection (Ctrl+G)"
                    disabled=move || ctx.flow.selection.with(|s| s.is_empty()) && ctx.flow.selected_annotations.with(|s| s.is_empty())
                    on:click=move |_| { ctx.flow.group_selection(); }
                >"Group"</button>
                <button id="note" title="Add a sticky note (N)" on:click=move |_| { ctx.flow.add_note_in_view(); }>"Note"</button>
                <GraphSearch />
                <button id="readonly" title="Read-only preview: no edits on the canvas" class:hz-tab-on=move || ctx.flow.readonly.get() on:click=move |_| ctx.flow.readonly.update(|r| *r = !*r)>
                    {move || if ctx.flow.readonly.get() { "Locked" } else { "Lock" }}
                </button>
                <button id="shortcuts" on:click=move |_| ctx.flow.show_shortcuts.update(|s| *s = !*s)>"?"</button>
            </header>
            <div class="hz-main">
                <aside class="hz-palette"><Palette state=ctx.flow /></aside>
                <section class="hz-canvas"><FlowCanvas state=ctx.flow /></section>
                <aside class="hz-side">
                    <nav class="hz-tabs">
                        {tab_button(Tab::Properties, "Properties", "tab-properties")}
                        {tab_button(Tab::Code, "Code", "tab-code")}
                        {tab_button(Tab::Play, "Play", "tab-play")}
                        {tab_button(Tab::Versions, "Versions", "tab-versions")}
                    </nav>
                    <div class="hz-panel" class:hz-hidden=move || ctx.tab.get() != Tab::Properties><PropertiesPanel /></div>
                    <div class="hz-panel hz-panel-code" class:hz-hidden=move || ctx.tab.get() != Tab::Code><CodeView /></div>
                    <div class="hz-panel" class:hz-hidden=move || ctx.tab.get() != Tab::Play><PlayPanel /></div>
                    <div class="hz-panel" class:hz-hidden=move || ctx.tab.get() != Tab::Versions><VersionsPanel /></div>
                </aside>
            </div>
            <footer class="hz-footer">
                <span id="problems" class:hz-bad=move || { errors.get() > 0 }>
                    {move || match errors.get() { 0 => "No problems".to_string(), 1 => "1 problem".to_string(), n => format!("{n} problems") }}
                </span>
                <span class="hz-gym-id" title="Content id (SHA-256 of the canonical gym)">
                    {move || ctx.analysis.with(|a| a.gym_id.clone().map(|g| format!("id {}", &g[..g.len().min(19)])).unwrap_or_default())}
                </span>
                <span id="status" class:hz-bad=move || ctx.status.get().is_some_and(|s| s.1)>
                    {move || ctx.status.get().map(|s| s.0).unwrap_or_default()}
                </span>
            </footer>
            {move || ctx.gallery.get().then(|| view! { <Gallery /> })}
        </div>
    }
}

/// Find nodes by id, title or kind, or `invalid` / `unused`: selects them and fits them.
#[component]
fn GraphSearch() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let query = RwSignal::new(String::new());
    let run = move || {
        let ids = ctx.flow.find(&query.get_untracked());
        let n = ids.len();
        ctx.flow.select_only(ids);
        if n > 0 {
            ctx.flow.fit_selection();
        }
        ctx.say(
            match n {
                0 => "No matching nodes".to_string(),
                1 => "1 matching node".to_string(),
                n => format!("{n} matching nodes"),
            },
            false,
        );
    };
    view! {
        <input id="graph-search" type="search" placeholder="Find in graph (invalid, unused…)"
            prop:value=move || query.get()
            on:input=move |ev| query.set(event_target_value(&ev))
            on:keydown=move |ev| if ev.key() == "Enter" { run() } />
    }
}

#[component]
fn SaveAs() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let open = RwSignal::new(false);
    let path = RwSignal::new(String::new());
    let picking = RwSignal::new(false);
    view! {
        <button id="save-as" on:click=move |_| {
            path.set(ctx.path.get_untracked().unwrap_or_default());
            open.set(true);
        }>"Save as…"</button>
        {move || open.get().then(|| view! {
            <div class="hz-popover">
                <label>"Save to (absolute path ending in .gym.json)"
                    <input id="save-as-path" prop:value=move || path.get() on:input=move |ev| path.set(event_target_value(&ev)) />
                </label>
                <button id="save-as-browse" prop:disabled=move || picking.get() on:click=move |_| {
                    // The system's Save dialog fills the path in; Save still confirms. The
                    // button is disabled while the dialog is open: one dialog at a time.
                    picking.set(true);
                    spawn_local(async move {
                        let picked = invoke::<_, Option<String>>("pick_save_path", &json!({"current": path.get_untracked()})).await;
                        picking.set(false);
                        match picked {
                            Ok(Some(p)) => path.set(p),
                            Ok(None) => {}
                            Err(e) => ctx.say(e, true),
                        }
                    });
                }>"Browse…"</button>
                <button id="save-as-ok" on:click=move |_| { open.set(false); ctx.save(Some(path.get_untracked())); }>"Save"</button>
                <button on:click=move |_| open.set(false)>"Cancel"</button>
            </div>
        })}
    }
}

//! The palette: node kinds grouped by category, with search. Items are dragged onto the
//! canvas with the pointer (not HTML drag and drop, which WebDriver cannot drive and which
//! behaves differently across webviews), or added at the centre of the view with Enter or a
//! double-click.

use super::state::{FlowState, PaletteItem};
use crate::model::Pos;
use leptos::prelude::*;

#[component]
pub fn Palette(state: FlowState) -> impl IntoView {
    let query = RwSignal::new(String::new());
    let items = Memo::new(move |_| {
        let q = query.get();
        state.palette.with(|items| items.iter().filter(|i| i.matches(&q)).cloned().collect::<Vec<_>>())
    });
    let add_centre = move |item: &PaletteItem| {
        let (w, h) = state.size.get_untracked();
        let at = state.to_world(Pos::new(w / 2.0 - 100.0, h / 2.0 - 40.0));
        state.add_from_palette(item, at);
    };
    view! {
        <div class="lf-palette">
            <input
                class="lf-palette-search"
                type="search"
                placeholder="Search nodes…"
                prop:value=move || query.get()
                on:input=move |ev| query.set(event_target_value(&ev))
                on:keydown=move |ev| {
                    if ev.key() == "Enter" {
                        if let Some(first) = items.get_untracked().first() {
                            add_centre(first);
                        }
                    }
                }
            />
            <div class="lf-palette-list">
                {move || {
                    let list = items.get();
                    let mut groups: Vec<(String, Vec<PaletteItem>)> = Vec::new();
                    for item in list {
                        match groups.iter_mut().find(|(c, _)| *c == item.category) {
                            Some((_, v)) => v.push(item),
                            None => groups.push((item.category.clone(), vec![item])),
                        }
                    }
                    groups
                        .into_iter()
                        .map(|(cat, items)| {
                            view! {
                                <div class="lf-palette-group">
                                    <div class="lf-palette-category">{cat}</div>
                                    {items
                                        .into_iter()
                                        .map(|item| {
                                            let for_drag = item.clone();
                                            let for_dbl = item.clone();
                                            view! {
                                                <div
                                                    class="lf-palette-item"
                                                    data-kind=item.kind.clone()
                                                    title=item.description.clone()
                                                    on:mousedown=move |ev| {
                                                        if ev.button() == 0 {
                                                            ev.prevent_default();
                                                            let p = Pos::new(ev.client_x() as f64, ev.client_y() as f64);
                                                            state.palette_drag.set(Some((for_drag.clone(), p)));
                                                        }
                                                    }
                                                    on:dblclick=move |_| add_centre(&for_dbl)
                                                >
                                                    <span class="lf-palette-title">{item.title.clone()}</span>
                                                    <span class="lf-palette-kind">{item.kind.clone()}</span>
                                                </div>
                                            }
                                        })
                                        .collect_view()}
                                </div>
                            }
                        })
                        .collect_view()
                }}
            </div>
        </div>
    }
}

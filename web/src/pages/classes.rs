//! Machine classes: list, create, edit with a live preview of the machines they match.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::api::{self, DeleteMachineClass, SaveMachineClass};
use crate::components::{action_error, connected_badge, field_error, loaded};
use crate::live::use_live;

#[component]
pub fn MachineClasses() -> impl IntoView {
    let save = ServerAction::<SaveMachineClass>::new();
    let delete = ServerAction::<DeleteMachineClass>::new();
    let classes = Resource::new(
        move || (save.version().get(), delete.version().get()),
        |_| api::machine_classes(),
    );
    let (name, set_name) = signal(String::new());
    let (selectors, set_selectors) = signal(String::new());
    let live = use_live();
    let preview = Resource::new(
        move || (selectors.get(), live.get()),
        |(selectors, _)| async move {
            if selectors.trim().is_empty() {
                Ok(Vec::new())
            } else {
                api::preview_selectors(selectors).await
            }
        },
    );
    view! {
        <Title text="Machine classes" />
        <h1>"Machine classes"</h1>
        <div class="columns">
            <section class="panel">
                <h2>"Create or edit"</h2>
                <ActionForm action=save attr:class="stack" attr:id="save-class">
                    <label for="class-name">"Name"</label>
                    <input id="class-name" name="name" required prop:value=name on:input=move |ev| set_name.set(event_target_value(&ev)) />
                    {field_error(save.value(), "name")}
                    <label for="class-selectors">"Selectors, one per line (a machine matches any one)"</label>
                    <textarea id="class-selectors" name="selectors" rows="4" placeholder="drover.dev/arch=amd64, drover.dev/cores>=4"
                        prop:value=selectors on:input=move |ev| set_selectors.set(event_target_value(&ev))></textarea>
                    {field_error(save.value(), "selectors")}
                    <button class="button primary" type="submit">"Save class"</button>
                </ActionForm>
                {action_error(save.value())}
            </section>
            <section class="panel" aria-live="polite">
                <h2>"Matching machines"</h2>
                <Transition fallback=|| view! { <p class="muted">"…"</p> }>
                    {move || Suspend::new(async move {
                        loaded(preview.await, |machines| view! {
                            <p id="class-preview-count">{machines.len()} " machines match"</p>
                            <ul class="plain">
                                {machines.into_iter().take(20).map(|m| view! {
                                    <li><a href=format!("/machines/{}", m.id)>{m.id.to_string()}</a> " " {connected_badge(m.connected)}</li>
                                }).collect_view()}
                            </ul>
                        }.into_any())
                    })}
                </Transition>
            </section>
        </div>
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                loaded(classes.await, |classes| view! {
                    <table class="list" id="machine-classes">
                        <thead><tr><th scope="col">"Name"</th><th scope="col">"Selectors"</th><th scope="col"><span class="sr-only">"Actions"</span></th></tr></thead>
                        <tbody>
                            {classes.into_iter().map(|c| {
                                let edit_name = c.name.clone();
                                let edit_selectors = c.selectors.join("\n");
                                view! {
                                    <tr>
                                        <td>{c.name.clone()}</td>
                                        <td class="mono">{c.selectors.join(" | ")}</td>
                                        <td class="actions">
                                            <button class="button small" type="button" on:click=move |_| {
                                                set_name.set(edit_name.clone());
                                                set_selectors.set(edit_selectors.clone());
                                            }>"Edit"</button>
                                            <ActionForm action=delete attr:class="inline">
                                                <input type="hidden" name="name" value=c.name.clone() />
                                                <button class="button small danger" type="submit">"Delete"</button>
                                            </ActionForm>
                                        </td>
                                    </tr>
                                }
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any())
            })}
        </Transition>
        {action_error(delete.value())}
    }
}

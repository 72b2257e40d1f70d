//! One machine: facts, labels, stage, logs (followed), lock and remove.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

use crate::api::{self, RemoveMachine, SetMachineLabels, SetMachineLocked};
use crate::components::{
    action_error, ago, badge, connected_badge, field_error, loaded, timestamp,
};
use crate::live::use_live;

#[component]
pub fn MachinePage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("id").unwrap_or_default();
    let live = use_live();
    let set_labels = ServerAction::<SetMachineLabels>::new();
    let set_locked = ServerAction::<SetMachineLocked>::new();
    let remove = ServerAction::<RemoveMachine>::new();
    let machine = Resource::new(
        move || {
            (
                id(),
                live.get(),
                set_labels.version().get(),
                set_locked.version().get(),
            )
        },
        |(id, ..)| api::get_machine(id),
    );
    view! {
        <Title text="Machine" />
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                loaded(machine.await, |detail| {
                    let m = detail.machine;
                    let locked = detail.locked;
                    let hostname = m.facts.as_ref().map(|f| f.hostname.clone()).filter(|h| !h.is_empty()).unwrap_or_else(|| m.id.to_string());
                    let id = m.id.to_string();
                    let labels_id = id.clone();
                    let lock_id = id.clone();
                    let remove_id = id.clone();
                    let logs_id = id.clone();
                    let user_labels: Vec<String> = m.labels.iter().filter(|(k, _)| !k.starts_with("drover.dev/")).map(|(k, v)| format!("{k}={v}")).collect();
                    let auto_labels: Vec<String> = m.labels.iter().filter(|(k, _)| k.starts_with("drover.dev/")).map(|(k, v)| if v.is_empty() { k.clone() } else { format!("{k}={v}") }).collect();
                    let facts = m.facts.clone();
                    let in_cluster = m.cluster.clone();
                    view! {
                        <h1>{hostname} " " {connected_badge(m.connected)}</h1>
                        <div class="columns">
                            <section class="panel">
                                <h2>"Facts"</h2>
                                <dl class="facts">
                                    <dt>"Id"</dt><dd class="mono">{id.clone()}</dd>
                                    <dt>"Tunnel address"</dt><dd class="mono">{m.address.clone()}</dd>
                                    <dt>"Talos"</dt><dd>{m.talos_version.clone()}</dd>
                                    <dt>"Stage"</dt><dd id="machine-stage">{m.stage.clone().unwrap_or_else(|| "unknown".into())} {if m.ready { badge("ready", "good").into_any() } else { badge("not ready", "warn").into_any() }}</dd>
                                    <dt>"Cluster"</dt><dd>{in_cluster.clone().map_or_else(|| "none (available)".to_owned().into_any(), |c| view! { <a href=format!("/clusters/{c}")>{c.clone()}</a> }.into_any())}</dd>
                                    <dt>"Last seen"</dt><dd>{ago(m.last_seen_at)}</dd>
                                    <dt>"Joined"</dt><dd>{timestamp(m.first_provisioned_at)}</dd>
                                    <dt>"Tunnel"</dt><dd>{if m.wireguard_over_grpc { "WireGuard over gRPC" } else { "WireGuard (UDP)" }}</dd>
                                    {facts.map(|f| view! {
                                        <dt>"Platform"</dt><dd>{format!("{} ({})", f.platform, f.platform_mode)}</dd>
                                        <dt>"Architecture"</dt><dd>{f.arch.clone()}</dd>
                                        <dt>"CPU / memory"</dt><dd>{format!("{} cores, {} MiB", f.cores.map_or("?".into(), |c| c.to_string()), f.memory_mib.map_or("?".into(), |m| m.to_string()))}</dd>
                                        <dt>"Disks"</dt>
                                        <dd>
                                            <ul class="plain">
                                                {f.disks.into_iter().map(|d| view! {
                                                    <li class="mono">{format!("{} {} GB {}{}", d.device_name, d.size / 1_000_000_000, d.model, if d.system_disk { " (system)" } else { "" })}</li>
                                                }).collect_view()}
                                            </ul>
                                        </dd>
                                    })}
                                </dl>
                                {m.last_error.clone().map(|e| view! { <p class="error">"Last error: " {e}</p> })}
                                {(!m.unmet_conditions.is_empty()).then(|| view! {
                                    <ul class="plain warn">
                                        {m.unmet_conditions.iter().map(|c| view! { <li>{format!("{}: {}", c.name, c.reason)}</li> }).collect_view()}
                                    </ul>
                                })}
                            </section>
                            <section class="panel">
                                <h2>"Labels"</h2>
                                <p class="muted">{auto_labels.join(", ")}</p>
                                <ActionForm action=set_labels attr:class="stack">
                                    <input type="hidden" name="id" value=labels_id />
                                    <label for="labels">"Labels (key=value, one per line)"</label>
                                    <textarea id="labels" name="labels" rows="4">{user_labels.join("\n")}</textarea>
                                    {field_error(set_labels.value(), "labels")}
                                    <button class="button" type="submit">"Save labels"</button>
                                </ActionForm>
                                <h2>"Actions"</h2>
                                {in_cluster.map(|_| {
                                    view! {
                                        <ActionForm action=set_locked>
                                            <input type="hidden" name="id" value=lock_id.clone() />
                                            <input type="hidden" name="locked" value=(!locked).to_string() />
                                            <button class="button" type="submit">{if locked { "Unlock" } else { "Lock" }}</button>
                                            <span class="muted">" A locked machine keeps its config and version."</span>
                                        </ActionForm>
                                    }
                                })}
                                {action_error(set_locked.value())}
                                <ActionForm action=remove attr:class="inline">
                                    <input type="hidden" name="id" value=remove_id />
                                    <button class="button danger" type="submit">"Remove from inventory"</button>
                                </ActionForm>
                                {action_error(remove.value())}
                            </section>
                        </div>
                        <Logs id=logs_id />
                    }
                        .into_any()
                })
            })}
        </Transition>
    }
}

/// The machine's kernel log, followed while "Follow" is on.
#[component]
fn Logs(id: String) -> impl IntoView {
    let (follow, set_follow) = signal(false);
    let (tick, set_tick) = signal(0u32);
    #[cfg(feature = "hydrate")]
    {
        let handle = set_interval_with_handle(
            move || {
                if follow.get_untracked() {
                    set_tick.update(|t| *t += 1);
                }
            },
            std::time::Duration::from_secs(2),
        );
        on_cleanup(move || {
            if let Ok(handle) = handle {
                handle.clear();
            }
        });
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = (follow, set_tick);
    let logs = Resource::new(
        move || (id.clone(), tick.get()),
        |(id, _)| api::machine_logs(id, 0),
    );
    view! {
        <section class="panel">
            <h2>
                "Logs "
                <label class="toggle">
                    <input type="checkbox" on:change=move |ev| set_follow.set(event_target_checked(&ev)) />
                    " Follow"
                </label>
            </h2>
            <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    loaded(logs.await, |page| {
                        let keep = page.lines.len().saturating_sub(200);
                        let text: Vec<String> = page.lines[keep..].iter().map(|l| l.message.clone()).collect();
                        view! { <pre class="logs" id="machine-logs">{text.join("\n")}</pre> }.into_any()
                    })
                })}
            </Transition>
        </section>
    }
}

//! One cluster: machine sets and machines, health, patches, scale, upgrades with live per-node
//! progress, downloads, delete.

use drover_model::{CONTROL_PLANE_SET, ClusterMachinePhase, UpgradeState};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

use crate::api::{
    self, ClusterDetail, DeleteCluster, ScaleMachineSet, SetClusterPatches, SetUpgradeState,
    UpgradeCluster,
};
use crate::components::{action_error, badge, field_error, loaded, timestamp};
use crate::live::use_live;
use crate::pages::clusters::phase_badge;

#[component]
pub fn ClusterPage() -> impl IntoView {
    let params = use_params_map();
    let name = move || params.read().get("name").unwrap_or_default();
    let live = use_live();
    let scale = ServerAction::<ScaleMachineSet>::new();
    let patches = ServerAction::<SetClusterPatches>::new();
    let upgrade = ServerAction::<UpgradeCluster>::new();
    let upgrade_state = ServerAction::<SetUpgradeState>::new();
    let delete = ServerAction::<DeleteCluster>::new();
    let detail = Resource::new(
        move || {
            (
                name(),
                live.get(),
                scale.version().get(),
                patches.version().get(),
                upgrade.version().get(),
                upgrade_state.version().get(),
            )
        },
        |(name, ..)| api::get_cluster(name),
    );
    view! {
        <Title text="Cluster" />
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                loaded(detail.await, |detail| view! {
                    <Overview detail=detail.clone() scale patches delete />
                    <Upgrades detail upgrade upgrade_state />
                }.into_any())
            })}
        </Transition>
    }
}

#[component]
fn Overview(
    detail: ClusterDetail,
    scale: ServerAction<ScaleMachineSet>,
    patches: ServerAction<SetClusterPatches>,
    delete: ServerAction<DeleteCluster>,
) -> impl IntoView {
    let cluster = detail.cluster;
    let name = cluster.spec.name.clone();
    let status = cluster.status.clone();
    let mut sets = vec![cluster.spec.control_plane.clone()];
    sets.extend(cluster.spec.workers.clone());
    let patches_text = serde_yaml_text(&cluster.spec.patches);
    let patches_name = name.clone();
    let delete_name = name.clone();
    let confirm_name = name.clone();
    view! {
        <h1>
            {name.clone()} " " {phase_badge(status.phase)}
            <span class="header-actions">
                <a class="button small" href=format!("/ui/clusters/{name}/kubeconfig") rel="external" download id="download-kubeconfig">"Download kubeconfig"</a>
                <form method="post" action=format!("/ui/clusters/{name}/talosconfig") class="inline">
                    <button class="button small" type="submit" id="download-talosconfig">"Download talosconfig"</button>
                </form>
            </span>
        </h1>
        <section class="cards" aria-label="Health">
            <div class="card"><span class="number" id="cluster-ready">{status.machines_ready} " / " {status.machines_total}</span><span>"machines ready"</span></div>
            <div class="card"><span class="number">{status.etcd_members}</span><span>"etcd members"</span></div>
            <div class=if status.kubernetes_api_ready { "card good" } else { "card warn" }>
                <span class="number">{if status.kubernetes_api_ready { "up" } else { "down" }}</span><span>"Kubernetes API"</span>
            </div>
            <div class="card"><span class="number">{cluster.spec.talos_version.clone()}</span><span>"Talos"</span></div>
            <div class="card"><span class="number">{cluster.spec.kubernetes_version.clone()}</span><span>"Kubernetes"</span></div>
        </section>
        {status.last_error.clone().map(|e| view! { <p class="error" role="alert">{e}</p> })}
        <section class="panel">
            <h2>"Machine sets"</h2>
            {sets.into_iter().map(|set| {
                let set_name = set.name.clone();
                let members: Vec<_> = status.machines.iter().filter(|m| m.machine_set == set_name).cloned().collect();
                let class = set.machine_class.clone();
                let cluster_name = name.clone();
                let form_id = format!("scale-{set_name}");
                view! {
                    <h3>{if set_name == CONTROL_PLANE_SET { "Control planes".to_owned() } else { format!("Workers: {set_name}") }}</h3>
                    {class.map(|class| view! {
                        <ActionForm action=scale attr:class="row-form" attr:id=form_id.clone()>
                            <input type="hidden" name="cluster" value=cluster_name.clone() />
                            <input type="hidden" name="set" value=set_name.clone() />
                            <span>"From class " <strong>{class.name.clone()}</strong></span>
                            <label>"Size " <input name="size" value=class.size.to_string() size="8" /></label>
                            <button class="button small" type="submit">"Scale"</button>
                        </ActionForm>
                    })}
                    <table class="list">
                        <thead><tr><th scope="col">"Machine"</th><th scope="col">"Phase"</th><th scope="col">"Stage"</th><th scope="col">"Ready"</th><th scope="col">"Config"</th><th scope="col">"etcd"</th></tr></thead>
                        <tbody>
                            {members.into_iter().map(|m| {
                                let tone = match m.phase { ClusterMachinePhase::Running => "good", _ => "warn" };
                                view! {
                                    <tr data-machine=m.id.to_string()>
                                        <td><a href=format!("/machines/{}", m.id)>{m.id.to_string()}</a> {m.locked.then(|| badge("locked", "warn"))}</td>
                                        <td>{badge(drover_model::variant_name(m.phase), tone)}</td>
                                        <td>{m.stage.clone().unwrap_or_default()}</td>
                                        <td>{if m.ready { badge("ready", "good") } else { badge("not ready", "warn") }}</td>
                                        <td>{if m.config_up_to_date { "up to date" } else { "pending" }}</td>
                                        <td class="mono">{m.etcd_member_id.clone().unwrap_or_default()}</td>
                                    </tr>
                                }
                            }).collect_view()}
                        </tbody>
                    </table>
                }
            }).collect_view()}
            {action_error(scale.value())}
        </section>
        <div class="columns">
            <section class="panel">
                <h2>"Cluster config patches"</h2>
                <ActionForm action=patches attr:class="stack">
                    <input type="hidden" name="cluster" value=patches_name />
                    <label for="patches">"A list of patches: name, weight, content (strategic merge YAML)"</label>
                    <textarea id="patches" name="patches" rows="10" class="mono">{patches_text}</textarea>
                    {field_error(patches.value(), "patches")}
                    <button class="button" type="submit">"Save patches"</button>
                </ActionForm>
                {action_error(patches.value())}
            </section>
            <section class="panel">
                <h2>"Template"</h2>
                <pre class="mono scroll">{detail.template.clone()}</pre>
                <h2>"Delete"</h2>
                <ActionForm action=delete attr:class="stack" attr:id="delete-cluster">
                    <input type="hidden" name="name" value=delete_name />
                    <label for="confirm">"Type " <strong>{confirm_name}</strong> " to delete the cluster; its machines are wiped and return to the pool."</label>
                    <input id="confirm" name="confirm" autocomplete="off" />
                    {field_error(delete.value(), "confirm")}
                    <button class="button danger" type="submit">"Delete cluster"</button>
                </ActionForm>
                {action_error(delete.value())}
            </section>
        </div>
        <section class="panel">
            <h2>"Events"</h2>
            <ul class="plain events">
                {detail.events.into_iter().map(|e| view! { <li><span class="muted">{timestamp(e.at)}</span> " " {e.message}</li> }).collect_view()}
            </ul>
        </section>
    }
}

fn serde_yaml_text(patches: &[drover_model::ConfigPatch]) -> String {
    if patches.is_empty() {
        return String::new();
    }
    // YAML by hand: the model has no YAML in the browser bundle.
    patches
        .iter()
        .map(|p| {
            let content: Vec<String> = p.content.lines().map(|l| format!("    {l}")).collect();
            format!(
                "- name: {}\n  weight: {}\n  content: |\n{}",
                p.name,
                p.weight,
                content.join("\n")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[component]
fn Upgrades(
    detail: ClusterDetail,
    upgrade: ServerAction<UpgradeCluster>,
    upgrade_state: ServerAction<SetUpgradeState>,
) -> impl IntoView {
    let name = detail.cluster.spec.name.clone();
    let current = detail.upgrade.clone();
    let plan = move || match upgrade.value().get() {
        Some(Ok(u)) if u.id.is_none() => Some(view! {
            <div class="panel" id="upgrade-plan">
                <h3>"Plan: " {u.from_version.clone()} " → " {u.to_version.clone()}</h3>
                <pre class="mono">{u.plan.clone()}</pre>
            </div>
        }),
        _ => None,
    };
    let progress = current.map(|u| {
        let active = u.state.is_active();
        let state = drover_model::variant_name(u.state);
        let kind = drover_model::variant_name(u.kind);
        let done = u.nodes.iter().filter(|n| n.state == "done").count();
        let total = u.nodes.len();
        let control = |label: &'static str, to: UpgradeState, name: String| view! {
            <ActionForm action=upgrade_state attr:class="inline">
                <input type="hidden" name="cluster" value=name />
                <input type="hidden" name="action" value=drover_model::variant_name(to) />
                <button class="button small" type="submit">{label}</button>
            </ActionForm>
        };
        view! {
            <div id="upgrade-progress">
                <h3>
                    {kind} " upgrade " {u.from_version.clone()} " → " {u.to_version.clone()} " "
                    {badge(state, match u.state { UpgradeState::Done => "good", UpgradeState::Failed => "bad", _ => "warn" })}
                </h3>
                <p><progress max=total.max(1) value=done></progress> " " {done} " of " {total} " steps done"</p>
                {u.error.clone().map(|e| view! { <p class="error">{e}</p> })}
                {active.then(|| view! {
                    <div class="row">
                        {if u.state == UpgradeState::Paused { control("Resume", UpgradeState::Running, name.clone()) } else { control("Pause", UpgradeState::Paused, name.clone()) }}
                        {control("Cancel", UpgradeState::Cancelled, name.clone())}
                    </div>
                })}
                <table class="list" id="upgrade-nodes">
                    <thead><tr><th scope="col">"Machine"</th><th scope="col">"Step"</th><th scope="col">"State"</th><th scope="col">"Error"</th></tr></thead>
                    <tbody>
                        {u.nodes.into_iter().map(|n| view! {
                            <tr data-machine=n.machine.to_string()>
                                <td class="mono">{n.machine.to_string()}</td>
                                <td>{n.step.clone()}</td>
                                <td>{badge(n.state.clone(), if n.state == "done" { "good" } else if n.state == "failed" { "bad" } else { "warn" })}</td>
                                <td>{n.error.clone().unwrap_or_default()}</td>
                            </tr>
                        }).collect_view()}
                    </tbody>
                </table>
            </div>
        }
    });
    view! {
        <section class="panel">
            <h2>"Upgrade"</h2>
            {progress}
            <ActionForm action=upgrade attr:class="row-form" attr:id="upgrade-form">
                <input type="hidden" name="cluster" value=name.clone() />
                <label>"Kind "
                    <select name="kind">
                        <option value="talos">"Talos"</option>
                        <option value="kubernetes">"Kubernetes"</option>
                    </select>
                </label>
                <label>"To version " <input name="version" required placeholder="v1.13.1" /></label>
                <label class="toggle"><input type="checkbox" name="dry_run" value="true" /> " Only show the plan"</label>
                <button class="button primary" type="submit">"Upgrade"</button>
            </ActionForm>
            {action_error(upgrade.value())}
            {plan}
        </section>
    }
}

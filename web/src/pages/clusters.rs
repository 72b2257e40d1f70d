//! The cluster list, and creating a cluster by form or from a pasted template.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::api::{self, ApplyTemplate, CreateCluster};
use crate::components::{action_error, badge, field_error, loaded};
use crate::live::use_live;

pub fn phase_badge(phase: drover_model::ClusterPhase) -> impl IntoView {
    use drover_model::ClusterPhase as P;
    let tone = match phase {
        P::Running => "good",
        P::Failed => "bad",
        _ => "warn",
    };
    badge(drover_model::variant_name(phase), tone)
}

#[component]
pub fn Clusters() -> impl IntoView {
    let live = use_live();
    let clusters = Resource::new(move || live.get(), |_| api::clusters());
    view! {
        <Title text="Clusters" />
        <h1>"Clusters " <a class="button primary" href="/clusters/new">"New cluster"</a></h1>
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                loaded(clusters.await, |clusters| {
                    if clusters.is_empty() {
                        return view! { <p class="muted">"No clusters yet."</p> }.into_any();
                    }
                    view! {
                        <div class="table-wrap">
                            <table class="list" id="clusters">
                                <thead><tr><th scope="col">"Name"</th><th scope="col">"Phase"</th><th scope="col">"Machines ready"</th><th scope="col">"Talos"</th><th scope="col">"Kubernetes"</th></tr></thead>
                                <tbody>
                                    {clusters.into_iter().map(|c| view! {
                                        <tr data-cluster=c.spec.name.clone()>
                                            <td><a href=format!("/clusters/{}", c.spec.name)>{c.spec.name.clone()}</a></td>
                                            <td>{phase_badge(c.status.phase)}</td>
                                            <td>{c.status.machines_ready} " / " {c.status.machines_total}</td>
                                            <td>{c.spec.talos_version.clone()}</td>
                                            <td>{c.spec.kubernetes_version.clone()}</td>
                                        </tr>
                                    }).collect_view()}
                                </tbody>
                            </table>
                        </div>
                    }
                        .into_any()
                })
            })}
        </Transition>
    }
}

#[component]
pub fn NewCluster() -> impl IntoView {
    let create = ServerAction::<CreateCluster>::new();
    let apply = ServerAction::<ApplyTemplate>::new();
    let classes = Resource::new(|| (), |_| api::machine_classes());
    let class_options = move || {
        Suspend::new(async move {
            classes
                .await
                .unwrap_or_default()
                .into_iter()
                .map(|c| view! { <option value=c.name.clone()>{c.name.clone()}</option> })
                .collect_view()
        })
    };
    let changes = move || match apply.value().get() {
        Some(Ok(changes)) => Some(view! {
            <div class="panel" aria-live="polite" id="template-changes">
                <h3>{if changes.changes.is_empty() { "No changes" } else { "Changes" }}</h3>
                <ul class="plain mono">{changes.changes.iter().map(|c| view! { <li>{c.clone()}</li> }).collect_view()}</ul>
            </div>
        }),
        _ => None,
    };
    view! {
        <Title text="New cluster" />
        <h1>"New cluster"</h1>
        <div class="columns">
            <section class="panel">
                <h2>"With a form"</h2>
                <ActionForm action=create attr:class="stack" attr:id="new-cluster">
                    <label for="name">"Name"</label>
                    <input id="name" name="name" required placeholder="prod" />
                    {field_error(create.value(), "name")}
                    <label for="talos_version">"Talos version"</label>
                    <input id="talos_version" name="talos_version" required placeholder="v1.13.0" />
                    {field_error(create.value(), "talosVersion")}
                    <label for="kubernetes_version">"Kubernetes version"</label>
                    <input id="kubernetes_version" name="kubernetes_version" required placeholder="1.34.1" />
                    {field_error(create.value(), "kubernetesVersion")}
                    <label for="control_plane_class">"Control planes from class"</label>
                    <select id="control_plane_class" name="control_plane_class">
                        <Suspense fallback=|| ()>{class_options}</Suspense>
                    </select>
                    {field_error(create.value(), "controlPlane.machineClass.name")}
                    <label for="control_planes">"Control planes"</label>
                    <input id="control_planes" name="control_planes" value="1" />
                    {field_error(create.value(), "controlPlane.machineClass.size")}
                    <label for="worker_class">"Workers from class (optional)"</label>
                    <select id="worker_class" name="worker_class">
                        <option value="">"No workers"</option>
                        <Suspense fallback=|| ()>{class_options}</Suspense>
                    </select>
                    {field_error(create.value(), "workers[0].machineClass.name")}
                    <label for="workers">"Workers (a number or unlimited)"</label>
                    <input id="workers" name="workers" value="0" />
                    {field_error(create.value(), "workers[0].machineClass.size")}
                    <button class="button primary" type="submit">"Create cluster"</button>
                </ActionForm>
                {action_error(create.value())}
            </section>
            <section class="panel">
                <h2>"From a template"</h2>
                <ActionForm action=apply attr:class="stack" attr:id="apply-template">
                    <label for="template">"Cluster template (YAML documents)"</label>
                    <textarea id="template" name="template" rows="16" class="mono" placeholder="kind: Cluster\nname: prod\n..."></textarea>
                    <label class="toggle"><input type="checkbox" name="preview" value="true" /> " Only validate and preview the changes"</label>
                    <button class="button primary" type="submit">"Apply template"</button>
                </ActionForm>
                {action_error(apply.value())}
                {changes}
            </section>
        </div>
    }
}

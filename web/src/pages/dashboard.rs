//! The dashboard: machines, clusters by phase, upgrades under way, plan usage.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::api;
use crate::components::loaded;
use crate::live::use_live;

#[component]
pub fn Dashboard() -> impl IntoView {
    let live = use_live();
    let data = Resource::new(move || live.get(), |_| api::get_dashboard());
    view! {
        <Title text="Dashboard" />
        <h1>"Dashboard"</h1>
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                loaded(data.await, |d| {
                    let disconnected = d.machines - d.connected;
                    view! {
                        <section class="cards" aria-label="Machines">
                            <a class="card" href="/machines">
                                <span class="number" id="machines-total">{d.machines}</span>
                                <span>"machines"</span>
                            </a>
                            <a class="card good" href="/machines?connected=true">
                                <span class="number" id="machines-connected">{d.connected}</span>
                                <span>"connected"</span>
                            </a>
                            <a class="card bad" href="/machines?connected=false">
                                <span class="number" id="machines-disconnected">{disconnected}</span>
                                <span>"disconnected"</span>
                            </a>
                            <a class="card" href="/machines?available=true">
                                <span class="number" id="machines-available">{d.available}</span>
                                <span>"available"</span>
                            </a>
                        </section>
                        <div class="columns">
                            <section class="panel">
                                <h2>"Clusters"</h2>
                                <p>{d.clusters} " in all"</p>
                                <ul class="plain">
                                    {d.clusters_by_phase
                                        .into_iter()
                                        .map(|(phase, n)| view! { <li><span class="badge">{phase}</span> " " {n}</li> })
                                        .collect_view()}
                                </ul>
                            </section>
                            <section class="panel">
                                <h2>"Upgrades under way"</h2>
                                {if d.upgrades.is_empty() {
                                    view! { <p class="muted">"None."</p> }.into_any()
                                } else {
                                    view! {
                                        <ul class="plain">
                                            {d.upgrades
                                                .into_iter()
                                                .map(|u| {
                                                    let done = u.nodes.iter().filter(|n| n.state == "done").count();
                                                    let href = format!("/clusters/{}", u.cluster);
                                                    let kind = drover_model::variant_name(u.kind);
                                                    view! {
                                                        <li>
                                                            <a href=href>{u.cluster.clone()}</a>
                                                            " " {kind} " → " {u.to_version.clone()}
                                                            " · " {done} " steps done"
                                                        </li>
                                                    }
                                                })
                                                .collect_view()}
                                        </ul>
                                    }
                                        .into_any()
                                }}
                            </section>
                            <section class="panel">
                                <h2>"Plan: " {d.usage.plan.clone()}</h2>
                                <table class="usage">
                                    <tbody>
                                        {d.usage
                                            .usage
                                            .into_iter()
                                            .map(|item| {
                                                let resource = drover_model::variant_name(item.resource);
                                                let limit = item.limit.map_or("unlimited".to_owned(), |l| l.to_string());
                                                let percent = item.limit.filter(|l| *l > 0).map_or(0, |l| (item.used * 100 / l).min(100));
                                                view! {
                                                    <tr>
                                                        <th scope="row">{resource}</th>
                                                        <td>{item.used} " / " {limit}</td>
                                                        <td class="meter-cell"><meter min="0" max="100" value=percent></meter></td>
                                                    </tr>
                                                }
                                            })
                                            .collect_view()}
                                    </tbody>
                                </table>
                            </section>
                        </div>
                    }
                        .into_any()
                })
            })}
        </Transition>
    }
}

//! The machine inventory: search, filters, sorting and server-side pagination, live.

use drover_model::{MachineSearch, MachineSort};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::Form;
use leptos_router::hooks::use_query_map;
use leptos_router::params::ParamsMap;

use crate::api;
use crate::components::{ago, badge, connected_badge, loaded, url_encode};
use crate::live::use_live;

const PAGE_SIZE: u32 = 50;

fn flag(text: Option<String>) -> Option<bool> {
    match text.as_deref() {
        Some("true") => Some(true),
        Some("false") => Some(false),
        _ => None,
    }
}

/// The search the page's query string describes.
fn search(params: &ParamsMap) -> MachineSearch {
    let page: u32 = params
        .get("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1)
        .max(1);
    MachineSearch {
        text: params.get("q"),
        connected: flag(params.get("connected")),
        available: flag(params.get("available")),
        cluster: params.get("cluster"),
        labels: params
            .get("label")
            .map(|l| api::lines(&l.replace(',', "\n")))
            .unwrap_or_default(),
        sort: params
            .get("sort")
            .and_then(|s| drover_model::parse_variant(&s))
            .unwrap_or_default(),
        descending: params.get("desc").is_some_and(|d| d == "1"),
        offset: (page - 1) * PAGE_SIZE,
        limit: PAGE_SIZE,
    }
}

/// This page's URL with `changes` applied to its query string.
fn link(params: &ParamsMap, changes: &[(&str, String)]) -> String {
    let mut pairs: Vec<(String, String)> = [
        "q",
        "connected",
        "available",
        "cluster",
        "label",
        "sort",
        "desc",
        "page",
    ]
    .iter()
    .filter_map(|k| params.get(k).map(|v| ((*k).to_owned(), v)))
    .filter(|(k, _)| !changes.iter().any(|(c, _)| c == k))
    .collect();
    pairs.extend(changes.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    let query: Vec<String> = pairs
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", url_encode(&v)))
        .collect();
    if query.is_empty() {
        "/machines".into()
    } else {
        format!("/machines?{}", query.join("&"))
    }
}

#[component]
pub fn Machines() -> impl IntoView {
    let query = use_query_map();
    let live = use_live();
    let page = Resource::new(
        move || (live.get(), search(&query.read())),
        |(_, search)| api::search_machines(search),
    );
    let value = move |key: &'static str| query.read().get(key).unwrap_or_default();
    let sort_header = move |label: &'static str, sort: MachineSort| {
        let params = query.read();
        let current = search(&params);
        let active = current.sort == sort;
        let descending = active && !current.descending;
        let href = link(
            &params,
            &[
                ("sort", drover_model::variant_name(sort)),
                (
                    "desc",
                    if descending {
                        "1".into()
                    } else {
                        String::new()
                    },
                ),
                ("page", String::new()),
            ],
        );
        let arrow = match (active, current.descending) {
            (false, _) => "",
            (true, false) => " ▲",
            (true, true) => " ▼",
        };
        let sorted = match (active, current.descending) {
            (false, _) => "none",
            (true, false) => "ascending",
            (true, true) => "descending",
        };
        view! { <th scope="col" aria-sort=sorted><a href=href>{label}{arrow}</a></th> }
    };
    view! {
        <Title text="Machines" />
        <h1>"Machines"</h1>
        <Form method="GET" action="/machines" attr:class="filters" attr:role="search">
            <input type="search" name="q" placeholder="Search id, address, hostname" aria-label="Search" prop:value=move || value("q") />
            <select name="connected" aria-label="Connection">
                <option value="" selected=move || value("connected").is_empty()>"Any connection"</option>
                <option value="true" selected=move || value("connected") == "true">"Connected"</option>
                <option value="false" selected=move || value("connected") == "false">"Disconnected"</option>
            </select>
            <select name="available" aria-label="Availability">
                <option value="" selected=move || value("available").is_empty()>"In a cluster or not"</option>
                <option value="true" selected=move || value("available") == "true">"Available"</option>
                <option value="false" selected=move || value("available") == "false">"In a cluster"</option>
            </select>
            <input type="text" name="cluster" placeholder="Cluster" aria-label="Cluster" prop:value=move || value("cluster") />
            <input type="text" name="label" placeholder="Labels: zone=a, ssd" aria-label="Labels" prop:value=move || value("label") />
            <input type="hidden" name="sort" prop:value=move || value("sort") />
            <input type="hidden" name="desc" prop:value=move || value("desc") />
            <button class="button" type="submit">"Filter"</button>
        </Form>
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                loaded(page.await, |page| {
                    let params = query.get_untracked();
                    let current = (page.offset / PAGE_SIZE) + 1;
                    let last = page.total.div_ceil(u64::from(PAGE_SIZE)).max(1);
                    let first_shown = if page.total == 0 { 0 } else { u64::from(page.offset) + 1 };
                    let last_shown = u64::from(page.offset) + page.items.len() as u64;
                    let previous = (current > 1).then(|| link(&params, &[("page", (current - 1).to_string())]));
                    let next = (u64::from(current) < last).then(|| link(&params, &[("page", (current + 1).to_string())]));
                    view! {
                        <p class="muted" id="machines-count">
                            {format!("{first_shown}–{last_shown} of {} machines", page.total)}
                        </p>
                        <div class="table-wrap">
                            <table class="list" id="machines-table">
                                <thead>
                                    <tr>
                                        {sort_header("Machine", MachineSort::Hostname)}
                                        {sort_header("Id", MachineSort::Id)}
                                        <th scope="col">"Status"</th>
                                        {sort_header("Stage", MachineSort::Stage)}
                                        {sort_header("Talos", MachineSort::TalosVersion)}
                                        <th scope="col">"Cluster"</th>
                                        <th scope="col">"Labels"</th>
                                        {sort_header("Last seen", MachineSort::LastSeen)}
                                    </tr>
                                </thead>
                                <tbody>
                                    {page
                                        .items
                                        .into_iter()
                                        .map(|m| {
                                            let href = format!("/machines/{}", m.id);
                                            let hostname = m.facts.as_ref().map(|f| f.hostname.clone()).filter(|h| !h.is_empty()).unwrap_or_else(|| m.address.clone());
                                            let labels: Vec<String> = m.labels.iter().filter(|(k, _)| !k.starts_with("drover.dev/")).map(|(k, v)| if v.is_empty() { k.clone() } else { format!("{k}={v}") }).collect();
                                            view! {
                                                <tr data-machine=m.id.to_string()>
                                                    <td><a href=href>{hostname}</a></td>
                                                    <td class="mono">{m.id.to_string()}</td>
                                                    <td>{connected_badge(m.connected)}</td>
                                                    <td>{m.stage.clone().unwrap_or_default()}</td>
                                                    <td>{m.talos_version.clone()}</td>
                                                    <td>{m.cluster.clone().map_or_else(|| badge("available", "").into_any(), |c| view! { <a href=format!("/clusters/{c}")>{c.clone()}</a> }.into_any())}</td>
                                                    <td class="labels">{labels.join(", ")}</td>
                                                    <td>{ago(m.last_seen_at)}</td>
                                                </tr>
                                            }
                                        })
                                        .collect_view()}
                                </tbody>
                            </table>
                        </div>
                        <nav class="pager" aria-label="Pages">
                            {previous.map(|href| view! { <a class="button small" href=href rel="prev">"← Previous"</a> })}
                            <span>{format!("Page {current} of {last}")}</span>
                            {next.map(|href| view! { <a class="button small" href=href rel="next">"Next →"</a> })}
                        </nav>
                    }
                        .into_any()
                })
            })}
        </Transition>
    }
}

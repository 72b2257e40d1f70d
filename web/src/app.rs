//! The document shell, the routes and the frame around every page.

use leptos::prelude::*;
use leptos_meta::{MetaTags, Title, provide_meta_context};
use leptos_router::components::{A, Route, Router, Routes};
use leptos_router::path;

use crate::api;
use crate::live::provide_live;
use crate::pages;

/// The HTML document droverd sends; `<App/>` renders into its body.
pub fn shell(options: leptos::config::LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <link rel="stylesheet" href="/ui/style.css" />
                <HydrationScripts options />
                <MetaTags />
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    provide_live();
    view! {
        <Title formatter=|page: String| format!("{page} · Drover") />
        <Router>
            <a class="skip" href="#main">"Skip to content"</a>
            <Header />
            <main id="main">
                <Routes fallback=|| view! { <h1>"Not found"</h1> <p>"There is no such page."</p> }>
                    <Route path=path!("/") view=pages::dashboard::Dashboard />
                    <Route path=path!("/login") view=pages::login::Login />
                    <Route path=path!("/machines") view=pages::machines::Machines />
                    <Route path=path!("/machines/:id") view=pages::machine::MachinePage />
                    <Route path=path!("/join-tokens") view=pages::join_tokens::JoinTokens />
                    <Route path=path!("/machine-classes") view=pages::classes::MachineClasses />
                    <Route path=path!("/clusters") view=pages::clusters::Clusters />
                    <Route path=path!("/clusters/new") view=pages::clusters::NewCluster />
                    <Route path=path!("/clusters/:name") view=pages::cluster::ClusterPage />
                    <Route path=path!("/settings") view=pages::settings::Settings />
                    <Route path=path!("/settings/audit-log") view=pages::settings::AuditLog />
                </Routes>
            </main>
        </Router>
    }
}

#[component]
fn Header() -> impl IntoView {
    let viewer = Resource::new(|| (), |_| api::get_viewer());
    view! {
        <header class="top">
            <a class="brand" href="/">"Drover"</a>
            <nav aria-label="Main">
                <A href="/">"Dashboard"</A>
                <A href="/machines">"Machines"</A>
                <A href="/join-tokens">"Join tokens"</A>
                <A href="/machine-classes">"Machine classes"</A>
                <A href="/clusters">"Clusters"</A>
                <A href="/settings">"Settings"</A>
            </nav>
            <div class="who">
                <Suspense fallback=|| ()>
                    {move || Suspend::new(async move {
                        match viewer.await {
                            Ok(Some(viewer)) => {
                                let role = drover_model::variant_name(viewer.role);
                                let current = viewer.tenant.clone();
                                let switcher = (!viewer.tenants.is_empty()).then(|| view! {
                                    <form method="post" action="/ui/switch-tenant" class="inline" id="switch-tenant">
                                        <select name="tenant" aria-label="Tenant">
                                            {viewer.tenants.iter().map(|(id, name)| view! {
                                                <option value=id.clone() selected=*name == current>{name.clone()}</option>
                                            }).collect_view()}
                                        </select>
                                        <button class="button small" type="submit">"Switch"</button>
                                    </form>
                                });
                                view! {
                                    <span class="viewer" title=viewer.actor.clone()>
                                        {viewer.display_name}
                                        " · "
                                        {viewer.tenant}
                                        " · "
                                        {role}
                                    </span>
                                    {switcher}
                                    <form method="post" action="/ui/sign-out">
                                        <button class="button small" type="submit">"Sign out"</button>
                                    </form>
                                }
                                    .into_any()
                            }
                            _ => view! { <a class="button small" href="/login" rel="external">"Sign in"</a> }.into_any(),
                        }
                    })}
                </Suspense>
            </div>
        </header>
    }
}

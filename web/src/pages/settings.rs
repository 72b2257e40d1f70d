//! Settings: users and roles, invitations, service accounts; the audit log.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::Form;
use leptos_router::hooks::use_query_map;

use crate::api::{
    self, CancelInvitation, CreateServiceAccount, DeleteServiceAccount, InviteUser, RemoveUser,
    SetUserRole,
};
use crate::components::{Copyable, action_error, ago, field_error, loaded, timestamp};
use crate::live::use_live;

fn role_options(selected: drover_model::Role) -> impl IntoView {
    use drover_model::Role;
    [Role::Reader, Role::Operator, Role::Admin]
        .into_iter()
        .map(|role| {
            let name = drover_model::variant_name(role);
            view! { <option value=name.clone() selected=role == selected>{name.clone()}</option> }
        })
        .collect_view()
}

#[component]
pub fn Settings() -> impl IntoView {
    let invite = ServerAction::<InviteUser>::new();
    let cancel = ServerAction::<CancelInvitation>::new();
    let set_role = ServerAction::<SetUserRole>::new();
    let remove = ServerAction::<RemoveUser>::new();
    let create_account = ServerAction::<CreateServiceAccount>::new();
    let delete_account = ServerAction::<DeleteServiceAccount>::new();
    let data = Resource::new(
        move || {
            (
                invite.version().get(),
                cancel.version().get(),
                set_role.version().get(),
                remove.version().get(),
                create_account.version().get(),
                delete_account.version().get(),
            )
        },
        |_| api::get_settings(),
    );
    let issued = move || match create_account.value().get() {
        Some(Ok(issued)) => Some(view! {
            <div class="panel created" aria-live="polite">
                <p>"Service account " {issued.service_account.name.clone()} " created. Its key is shown only now:"</p>
                <Copyable label="Key" text=issued.secret.clone() />
            </div>
        }),
        _ => None,
    };
    view! {
        <Title text="Settings" />
        <h1>"Settings " <a class="button small" href="/settings/audit-log">"Audit log"</a></h1>
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                loaded(data.await, |data| view! {
                    <section class="panel">
                        <h2>"Users"</h2>
                        <table class="list" id="users">
                            <thead><tr><th scope="col">"User"</th><th scope="col">"Role"</th><th scope="col">"Last login"</th><th scope="col"><span class="sr-only">"Actions"</span></th></tr></thead>
                            <tbody>
                                {data.users.into_iter().map(|u| {
                                    let role_email = u.email.clone();
                                    let remove_email = u.email.clone();
                                    view! {
                                    <tr>
                                        <td>{u.name.clone()} " " <span class="muted">{u.email.clone()}</span></td>
                                        <td>
                                            <ActionForm action=set_role attr:class="inline">
                                                <input type="hidden" name="email" value=role_email />
                                                <select name="role" aria-label="Role">{role_options(u.role)}</select>
                                                <button class="button small" type="submit">"Set"</button>
                                            </ActionForm>
                                        </td>
                                        <td>{ago(u.last_login_at)}</td>
                                        <td class="actions">
                                            <ActionForm action=remove attr:class="inline">
                                                <input type="hidden" name="email" value=remove_email />
                                                <button class="button small danger" type="submit">"Remove"</button>
                                            </ActionForm>
                                        </td>
                                    </tr>
                                }}).collect_view()}
                            </tbody>
                        </table>
                        {action_error(set_role.value())}
                        {action_error(remove.value())}
                    </section>
                    <div class="columns">
                        <section class="panel">
                            <h2>"Invitations"</h2>
                            <ActionForm action=invite attr:class="row-form">
                                <label>"E-mail " <input name="email" type="email" required /></label>
                                {field_error(invite.value(), "email")}
                                <label>"Role " <select name="role">{role_options(drover_model::Role::Reader)}</select></label>
                                <button class="button primary" type="submit">"Invite"</button>
                            </ActionForm>
                            {action_error(invite.value())}
                            <ul class="plain">
                                {data.invitations.into_iter().map(|u| view! {
                                    <li>
                                        {u.email.clone()} " (" {drover_model::variant_name(u.role)} ") "
                                        <ActionForm action=cancel attr:class="inline">
                                            <input type="hidden" name="email" value=u.email.clone() />
                                            <button class="button small" type="submit">"Cancel"</button>
                                        </ActionForm>
                                    </li>
                                }).collect_view()}
                            </ul>
                        </section>
                        <section class="panel">
                            <h2>"Service accounts"</h2>
                            <ActionForm action=create_account attr:class="row-form">
                                <label>"Name " <input name="name" required /></label>
                                {field_error(create_account.value(), "name")}
                                <label>"Role " <select name="role">{role_options(drover_model::Role::Reader)}</select></label>
                                <label>"Expires in " <input name="expires_in" placeholder="never, or 90d" /></label>
                                {field_error(create_account.value(), "expires_in")}
                                <button class="button primary" type="submit">"Create"</button>
                            </ActionForm>
                            {action_error(create_account.value())}
                            {issued}
                            <ul class="plain">
                                {data.service_accounts.into_iter().map(|a| view! {
                                    <li>
                                        {a.name.clone()} " (" {drover_model::variant_name(a.role)} ") "
                                        <ActionForm action=delete_account attr:class="inline">
                                            <input type="hidden" name="name" value=a.name.clone() />
                                            <button class="button small danger" type="submit">"Delete"</button>
                                        </ActionForm>
                                    </li>
                                }).collect_view()}
                            </ul>
                            {action_error(delete_account.value())}
                        </section>
                    </div>
                }.into_any())
            })}
        </Transition>
    }
}

#[component]
pub fn AuditLog() -> impl IntoView {
    let query = use_query_map();
    let live = use_live();
    let value = move |key: &'static str| query.read().get(key).unwrap_or_default();
    let entries = Resource::new(
        move || (value("action"), value("actor"), live.get()),
        |(action, actor, _)| api::audit_log(action, actor, 0),
    );
    view! {
        <Title text="Audit log" />
        <h1>"Audit log"</h1>
        <Form method="GET" action="/settings/audit-log" attr:class="filters" attr:role="search">
            <input name="action" placeholder="Action prefix, e.g. cluster." aria-label="Action" prop:value=move || value("action") />
            <input name="actor" placeholder="Actor, e.g. user:ana@example.com" aria-label="Actor" prop:value=move || value("actor") />
            <button class="button" type="submit">"Filter"</button>
            <span class="muted">"New entries appear as they happen."</span>
        </Form>
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                loaded(entries.await, |mut entries| {
                    entries.reverse();
                    view! {
                        <table class="list" id="audit-log">
                            <thead><tr><th scope="col">"Time"</th><th scope="col">"Actor"</th><th scope="col">"Action"</th><th scope="col">"Target"</th><th scope="col">"Result"</th></tr></thead>
                            <tbody>
                                {entries.into_iter().map(|e| view! {
                                    <tr>
                                        <td>{timestamp(e.at)}</td>
                                        <td>{e.actor}</td>
                                        <td class="mono">{e.action}</td>
                                        <td>{e.target}</td>
                                        <td>{e.result}</td>
                                    </tr>
                                }).collect_view()}
                            </tbody>
                        </table>
                    }.into_any()
                })
            })}
        </Transition>
    }
}

//! Join tokens: create (the secret shown once, with kernel arguments and join config), list,
//! revoke, make default.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::api::{self, CreateJoinToken, MakeDefaultJoinToken, RevokeJoinToken};
use crate::components::{Copyable, action_error, ago, badge, field_error, loaded};

#[component]
pub fn JoinTokens() -> impl IntoView {
    let create = ServerAction::<CreateJoinToken>::new();
    let revoke = ServerAction::<RevokeJoinToken>::new();
    let make_default = ServerAction::<MakeDefaultJoinToken>::new();
    let tokens = Resource::new(
        move || {
            (
                create.version().get(),
                revoke.version().get(),
                make_default.version().get(),
            )
        },
        |_| api::join_tokens(),
    );
    let created = move || match create.value().get() {
        Some(Ok(created)) => Some(view! {
            <section class="panel created" id="created-token" aria-live="polite">
                <h2>"Join token " {created.token.name.clone()} " created"</h2>
                <p>"Its secret is shown only now. Boot machines with these kernel arguments, or apply the join config."</p>
                <Copyable label="Secret" text=created.secret.clone() />
                <Copyable label="Kernel arguments" text=created.join.kernel_args.join(" ") />
                <Copyable label="Join config" text=created.join.join_config.clone() />
            </section>
        }),
        _ => None,
    };
    view! {
        <Title text="Join tokens" />
        <h1>"Join tokens"</h1>
        <section class="panel">
            <h2>"New join token"</h2>
            <ActionForm action=create attr:class="row-form" attr:id="create-join-token">
                <label>"Name" <input name="name" required placeholder="lab" /></label>
                {field_error(create.value(), "name")}
                <label>"Expires in" <input name="expires_in" placeholder="never, or 30d" /></label>
                {field_error(create.value(), "expires_in")}
                <label class="toggle"><input type="checkbox" name="make_default" /> " Default"</label>
                <button class="button primary" type="submit">"Create"</button>
            </ActionForm>
            {action_error(create.value())}
        </section>
        {created}
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                loaded(tokens.await, |tokens| view! {
                    <div class="table-wrap">
                        <table class="list" id="join-tokens">
                            <thead><tr><th scope="col">"Name"</th><th scope="col">"State"</th><th scope="col">"Uses"</th><th scope="col">"Last used"</th><th scope="col">"Expires"</th><th scope="col"><span class="sr-only">"Actions"</span></th></tr></thead>
                            <tbody>
                                {tokens.into_iter().map(|t| {
                                    let state = drover_model::variant_name(t.state);
                                    let active = t.state == drover_model::JoinTokenState::Active;
                                    let id = t.id.to_string();
                                    let revoke_id = id.clone();
                                    view! {
                                        <tr>
                                            <td>{t.name.clone()} " " {t.is_default.then(|| badge("default", "good"))}</td>
                                            <td>{badge(state, if active { "good" } else { "bad" })}</td>
                                            <td>{t.use_count}</td>
                                            <td>{ago(t.last_used_at)}</td>
                                            <td>{t.expires_at.map_or("never".to_owned(), crate::components::timestamp)}</td>
                                            <td class="actions">
                                                {(active && !t.is_default).then(|| view! {
                                                    <ActionForm action=make_default attr:class="inline">
                                                        <input type="hidden" name="id" value=id.clone() />
                                                        <button class="button small" type="submit">"Make default"</button>
                                                    </ActionForm>
                                                })}
                                                {active.then(|| view! {
                                                    <ActionForm action=revoke attr:class="inline">
                                                        <input type="hidden" name="id" value=revoke_id.clone() />
                                                        <button class="button small danger" type="submit">"Revoke"</button>
                                                    </ActionForm>
                                                })}
                                            </td>
                                        </tr>
                                    }
                                }).collect_view()}
                            </tbody>
                        </table>
                    </div>
                }.into_any())
            })}
        </Transition>
        {action_error(revoke.value())}
        {action_error(make_default.value())}
    }
}

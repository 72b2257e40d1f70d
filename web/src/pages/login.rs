//! Sign in: through the OpenID provider, or with an API token.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

#[component]
pub fn Login() -> impl IntoView {
    let query = use_query_map();
    let error = move || query.read().get("error");
    view! {
        <Title text="Sign in" />
        <section class="panel narrow">
            <h1>"Sign in to Drover"</h1>
            {move || error().map(|e| view! { <p class="error" role="alert">{e}</p> })}
            <p>
                <a class="button primary" href="/auth/login" rel="external" id="sign-in-oidc">
                    "Sign in with your identity provider"
                </a>
            </p>
            <details>
                <summary>"Sign in with an API token"</summary>
                <form method="post" action="/ui/sign-in/token" class="stack">
                    <label for="token">"API token or service-account key"</label>
                    <input id="token" name="token" type="password" autocomplete="off" required />
                    <button class="button" type="submit">"Sign in"</button>
                </form>
            </details>
        </section>
    }
}

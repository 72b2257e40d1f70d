//! Pieces every page uses: loading and error states, badges, times, copyable text.

use chrono::{DateTime, Utc};
use leptos::prelude::*;

use crate::api::{UiError, UiErrorKind};

/// Shows a loaded value with `view`, or what went wrong (with a sign-in link when signed out).
pub fn loaded<T>(result: Result<T, UiError>, view: impl FnOnce(T) -> AnyView) -> AnyView {
    match result {
        Ok(value) => view(value),
        Err(error) => error_view(&error),
    }
}

pub fn error_view(error: &UiError) -> AnyView {
    if error.kind == UiErrorKind::SignedOut {
        return view! {
            <div class="panel notice" role="alert">
                <p>"You are not signed in."</p>
                <a class="button primary" href="/login" rel="external">"Sign in"</a>
            </div>
        }
        .into_any();
    }
    let message = error.message.clone();
    view! { <p class="error" role="alert">{message}</p> }.into_any()
}

/// The error of an action's last run, if it failed.
pub fn action_error<T, S>(value: S) -> impl IntoView
where
    T: Clone + Send + Sync + 'static,
    S: Get<Value = Option<Result<T, UiError>>> + Send + Sync + 'static,
{
    move || match value.get() {
        Some(Err(error)) if error.fields.is_empty() || error.kind != UiErrorKind::Invalid => {
            Some(error_view(&error))
        }
        Some(Err(error)) => Some(
            view! {
                <ul class="error" role="alert">
                    {error
                        .fields
                        .iter()
                        .map(|(field, message)| {
                            let text = format!("{field}: {message}");
                            view! { <li>{text}</li> }
                        })
                        .collect_view()}
                </ul>
            }
            .into_any(),
        ),
        _ => None,
    }
}

/// The message for `field` of an action's last failure, shown under the field.
pub fn field_error<T, S>(value: S, field: &'static str) -> impl IntoView
where
    T: Clone + Send + Sync + 'static,
    S: Get<Value = Option<Result<T, UiError>>> + Send + Sync + 'static,
{
    move || {
        value
            .get()
            .and_then(|r| r.err())
            .and_then(|e| e.field(field))
            .map(|message| view! { <span class="field-error">{message}</span> })
    }
}

pub fn badge(text: impl Into<String>, tone: &'static str) -> impl IntoView {
    let text = text.into();
    view! { <span class=format!("badge {tone}")>{text}</span> }
}

pub fn connected_badge(connected: bool) -> impl IntoView {
    if connected {
        badge("connected", "good")
    } else {
        badge("disconnected", "bad")
    }
}

/// `3m ago`, `2h ago`; `never` for none.
pub fn ago(at: Option<DateTime<Utc>>) -> String {
    let Some(at) = at else {
        return "never".into();
    };
    let seconds = (Utc::now() - at).num_seconds().max(0);
    match seconds {
        0..=59 => format!("{seconds}s ago"),
        60..=3599 => format!("{}m ago", seconds / 60),
        3600..=86_399 => format!("{}h ago", seconds / 3600),
        _ => format!("{}d ago", seconds / 86_400),
    }
}

pub fn timestamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// Text in a `<pre>` with a button that copies it.
#[component]
pub fn Copyable(#[prop(into)] label: String, #[prop(into)] text: String) -> impl IntoView {
    let copy_text = text.clone();
    let (copied, set_copied) = signal(false);
    let copy = move |_| {
        #[cfg(feature = "hydrate")]
        if let Some(window) = web_sys::window() {
            let _ = window.navigator().clipboard().write_text(&copy_text);
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = &copy_text;
        set_copied.set(true);
    };
    view! {
        <div class="copyable">
            <div class="copyable-head">
                <span>{label.clone()}</span>
                <button type="button" class="button small" on:click=copy aria-label=format!("Copy {label}")>
                    {move || if copied.get() { "Copied" } else { "Copy" }}
                </button>
            </div>
            <pre>{text}</pre>
        </div>
    }
}

/// `text` percent-encoded for a URL's query string.
pub fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

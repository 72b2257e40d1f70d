//! Live updates: the page listens to droverd's `/ui/events` (server-sent events) and bumps a
//! counter on every change; resources that read the counter fetch again.

use leptos::prelude::*;

/// The number of changes seen since the page loaded (always 0 on the server).
#[derive(Clone, Copy)]
pub struct Live(ReadSignal<u64>);

impl Live {
    /// The counter, tracked: read it in a resource's source to refetch on changes.
    pub fn get(self) -> u64 {
        self.0.get()
    }
}

/// Provides [`Live`] to the app and, in the browser, connects it to the event stream.
pub fn provide_live() {
    let (changes, set_changes) = signal(0u64);
    provide_context(Live(changes));
    #[cfg(feature = "hydrate")]
    Effect::new(move |_| connect(set_changes));
    #[cfg(not(feature = "hydrate"))]
    let _ = set_changes;
}

pub fn use_live() -> Live {
    expect_context::<Live>()
}

#[cfg(feature = "hydrate")]
fn connect(set_changes: WriteSignal<u64>) {
    use wasm_bindgen::JsCast as _;
    use wasm_bindgen::closure::Closure;
    // EventSource reconnects by itself when droverd restarts.
    let Ok(source) = web_sys::EventSource::new("/ui/events") else {
        return;
    };
    let on_change = Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |_| {
        set_changes.update(|n| *n += 1);
    });
    let _ = source.add_event_listener_with_callback("change", on_change.as_ref().unchecked_ref());
    // Both live as long as the page.
    on_change.forget();
    std::mem::forget(source);
}

//! `-o table|json|yaml`.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

/// Prints `value` as JSON or YAML, or as a table of `rows` under `headers`.
pub fn print<T: Serialize + ?Sized>(
    format: Format,
    value: &T,
    headers: &[&str],
    rows: Vec<Vec<String>>,
) -> anyhow::Result<()> {
    print!("{}", render(format, value, headers, rows)?);
    Ok(())
}

/// What [`print`] prints.
pub fn render<T: Serialize + ?Sized>(
    format: Format,
    value: &T,
    headers: &[&str],
    rows: Vec<Vec<String>>,
) -> anyhow::Result<String> {
    Ok(match format {
        Format::Json => format!("{}\n", serde_json::to_string_pretty(value)?),
        Format::Yaml => serde_yaml_ng::to_string(value)?,
        Format::Table => table(headers, &rows),
    })
}

/// Prints what `render` gives; with `watch`, renders again every two seconds and prints it
/// again whenever it changed, until interrupted.
/// Fetches a list and prints it in `format` (a table of `rows`), again and again with `watch`.
pub async fn watch_list<T, E, F, Fut, R>(
    watching: bool,
    format: Format,
    headers: &[&str],
    mut fetch: F,
    rows: R,
) -> anyhow::Result<()>
where
    T: Serialize,
    E: Into<anyhow::Error>,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Vec<T>, E>>,
    R: Fn(&[T]) -> Vec<Vec<String>>,
{
    watch(watching, || {
        let fetched = fetch();
        let rows = &rows;
        async move {
            let list = fetched.await.map_err(Into::into)?;
            render(format, &list, headers, rows(&list))
        }
    })
    .await
}

pub async fn watch<F, Fut>(watch: bool, mut render: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<String>>,
{
    let mut last = None;
    loop {
        let text = render().await?;
        if last.as_ref() != Some(&text) {
            if last.is_some() {
                println!();
            }
            print!("{text}");
            use std::io::Write as _;
            std::io::stdout().flush()?;
            last = Some(text);
        }
        if !watch {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
}

/// Left-aligned columns separated by three spaces, like kubectl.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}   "));
            }
        }
        out.push('\n');
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_line_up() {
        let t = super::table(
            &["ID", "ADDRESS"],
            &[
                vec!["a".into(), "x".into()],
                vec!["long-id".into(), "y".into()],
            ],
        );
        assert_eq!(t, "ID        ADDRESS\na         x\nlong-id   y\n");
    }
}

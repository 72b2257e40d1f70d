//! The configuration reference (`droverd config-reference`, committed as
//! `deploy/CONFIGURATION.md`), generated from the command line's own definition, so it lists
//! every setting with its flag, environment variable, settings-file key, default and meaning.

use std::fmt::Write as _;

use clap::CommandFactory as _;

use crate::settings::Args;

/// The reference as Markdown.
pub fn markdown() -> String {
    let command = Args::command();
    let mut out = String::from(
        "# droverd configuration reference\n\n\
         Generated from droverd's settings by `droverd config-reference`; do not edit (the test \
         `reference::tests::the_committed_reference_is_current` fails when it is stale; \
         `UPDATE_SNAPSHOTS=1 cargo test -p droverd reference` rewrites it).\n\n\
         Every setting is a flag, an environment variable and a key of the TOML file given with \
         `--config`; flags win over the environment, which wins over the file. Durations are \
         written like `90s`, `15m`, `12h`, `30days`; lists repeat the flag or separate by commas \
         (a TOML array in the file).\n\n\
         | Flag | Environment | TOML key | Default | What |\n|---|---|---|---|---|\n",
    );
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if matches!(long, "help" | "version") {
            continue;
        }
        let (what, default) = split_default(&help(arg));
        let value = match arg.get_value_names() {
            Some(names) if arg.get_action().takes_values() => format!(" {}", names.join(" ")),
            _ => String::new(),
        };
        let choices: Vec<String> = arg
            .get_value_parser()
            .possible_values()
            .filter(|_| arg.get_action().takes_values())
            .into_iter()
            .flatten()
            .filter(|v| !v.is_hide_set())
            .map(|v| format!("`{}`", v.get_name()))
            .collect();
        let what = if choices.is_empty() {
            what
        } else {
            format!("{what} One of {}.", choices.join(", "))
        };
        let env = arg
            .get_env()
            .map(|e| format!("`{}`", e.to_string_lossy()))
            .unwrap_or_default();
        let key = if long == "config" {
            String::new()
        } else {
            format!("`{long}`")
        };
        let _ = writeln!(
            out,
            "| `--{long}{value}` | {env} | {key} | {} | {} |",
            cell(&default),
            cell(&what)
        );
    }
    out.push_str("\n## Commands\n\nWithout a command, droverd serves. Maintenance commands take the same settings:\n\n");
    for sub in command.get_subcommands() {
        list_commands(&mut out, "droverd", sub);
    }
    out
}

/// Lists `command` and its subcommands (`droverd keys rotate`, ...) with what each does.
fn list_commands(out: &mut String, parent: &str, command: &clap::Command) {
    let path = format!("{parent} {}", command.get_name());
    if command.has_subcommands() {
        for sub in command.get_subcommands() {
            list_commands(out, &path, sub);
        }
        return;
    }
    let usage: String = command
        .get_arguments()
        .filter(|a| !matches!(a.get_id().as_str(), "help"))
        .map(|a| {
            let shown = match (a.get_long(), a.get_value_names()) {
                (Some(long), Some(names)) => format!("--{long} {}", names.join(" ")),
                (Some(long), None) => format!("--{long} VALUE"),
                (None, _) => a.get_id().as_str().to_uppercase(),
            };
            if a.is_required_set() || a.get_long().is_none() {
                format!(" {shown}")
            } else {
                format!(" [{shown}]")
            }
        })
        .collect();
    let about = command
        .get_long_about()
        .or(command.get_about())
        .map(|a| a.to_string())
        .unwrap_or_default();
    let _ = writeln!(out, "- `{path}{usage}`: {}", cell(&one_line(&about)));
}

fn help(arg: &clap::Arg) -> String {
    arg.get_long_help()
        .or(arg.get_help())
        .map(|h| one_line(&h.to_string()))
        .unwrap_or_default()
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The help text without its trailing `[default: ...]`, and that default.
fn split_default(help: &str) -> (String, String) {
    match help.rfind("[default: ") {
        Some(start) if help.ends_with(']') => (
            help[..start].trim_end().to_owned(),
            help[start + "[default: ".len()..help.len() - 1].to_owned(),
        ),
        _ => (help.to_owned(), String::new()),
    }
}

/// Text made safe for Markdown: `|` does not end a table cell, and `<data-dir>` outside code
/// spans is no HTML tag.
fn cell(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_code = false;
    for c in text.chars() {
        match c {
            '`' => in_code = !in_code,
            '|' => out.push('\\'),
            '<' if !in_code => out.push('\\'),
            _ => {}
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_reference_is_current() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/CONFIGURATION.md");
        let generated = markdown();
        if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{} is stale: run `UPDATE_SNAPSHOTS=1 cargo test -p droverd reference` and commit it",
            path.display()
        );
    }

    #[test]
    fn every_setting_is_in_the_reference_with_its_environment_variable() {
        let reference = markdown();
        for (flag, env) in [
            ("--http-tls", "DROVER_HTTP_TLS"),
            ("--metrics-addr", "DROVER_METRICS_ADDR"),
            ("--database-url", "DROVER_DATABASE_URL"),
            ("--allow-break-glass", "DROVER_ALLOW_BREAK_GLASS"),
        ] {
            let row = reference
                .lines()
                .find(|l| l.starts_with(&format!("| `{flag}")))
                .unwrap_or_else(|| panic!("{flag} is missing"));
            assert!(row.contains(env), "{row}");
        }
        assert!(
            reference
                .contains("| `--data-dir DIR` | `DROVER_DATA_DIR` | `data-dir` | ./drover-data |")
        );
        assert!(
            reference.contains("`droverd backup --out FILE`"),
            "{reference}"
        );
        assert!(reference.contains("`droverd keys rotate`"), "{reference}");
    }
}

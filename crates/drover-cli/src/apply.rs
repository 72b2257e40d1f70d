//! `drover apply -f FILE` and `drover delete -f FILE`: one YAML stream of `MachineClass`
//! documents and a cluster template (`Cluster`, `ControlPlane`, `Workers`, `Machine`), made so
//! (or removed) in one go, as kept in git.

use std::path::Path;

use anyhow::{Context as _, Result, bail};
use drover_client::Client;
use drover_model::{ClusterSpec, MachineClassSpec};
use serde::Deserialize;

/// What a manifest file holds.
pub struct Manifest {
    pub classes: Vec<MachineClassSpec>,
    pub cluster: Option<ClusterSpec>,
}

/// A `MachineClass` document.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassDocument {
    /// `MachineClass`, as the caller checked.
    #[serde(rename = "kind")]
    _kind: String,
    name: String,
    #[serde(default)]
    selectors: Vec<String>,
}

/// Reads `file`: its `MachineClass` documents, and the rest as one cluster template.
pub fn load(file: &Path) -> Result<Manifest> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut classes = Vec::new();
    let mut template = Vec::new();
    for (i, chunk) in documents(&text).into_iter().enumerate() {
        let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(&chunk)
            .with_context(|| format!("{}: document {} is not YAML", file.display(), i + 1))?;
        if value.is_null() {
            continue;
        }
        if value["kind"].as_str() == Some("MachineClass") {
            let class: ClassDocument = serde_yaml_ng::from_value(value).with_context(|| {
                format!(
                    "{}: document {} (kind: MachineClass)",
                    file.display(),
                    i + 1
                )
            })?;
            classes.push(MachineClassSpec {
                name: class.name,
                selectors: class.selectors,
            });
        } else {
            template.push(chunk);
        }
    }
    let cluster = if template.is_empty() {
        None
    } else {
        Some(crate::clusters::parse_template(
            file,
            &template.join("---\n"),
        )?)
    };
    if classes.is_empty() && cluster.is_none() {
        bail!(
            "{} holds no MachineClass and no cluster template",
            file.display()
        );
    }
    Ok(Manifest { classes, cluster })
}

/// The documents of a YAML stream, as text (split at `---` lines).
fn documents(text: &str) -> Vec<String> {
    let mut docs = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "---" || line.starts_with("--- ") {
            docs.push(String::new());
        } else if let Some(doc) = docs.last_mut() {
            doc.push_str(line);
            doc.push('\n');
        }
    }
    docs.retain(|d| !d.trim().is_empty());
    docs
}

/// Makes the cluster and the classes what the file says; with `dry_run`, only says what would
/// change.
pub async fn apply(client: &Client, file: &Path, dry_run: bool) -> Result<()> {
    let manifest = load(file)?;
    let current = client.list_machine_classes().await?;
    for class in &manifest.classes {
        match current.iter().find(|c| c.name == class.name) {
            Some(c) if c.selectors == class.selectors => {
                println!("machineclass {}: unchanged", class.name);
            }
            found => {
                let verb = if found.is_some() {
                    "updated"
                } else {
                    "created"
                };
                if dry_run {
                    println!("machineclass {}: would be {verb}", class.name);
                } else {
                    client.put_machine_class(class).await?;
                    println!("machineclass {}: {verb}", class.name);
                }
            }
        }
    }
    if let Some(spec) = &manifest.cluster {
        let planned = client.sync_cluster(spec, true).await?;
        crate::clusters::print_changes(&planned.changes, &spec.name);
        if !dry_run && !planned.changes.is_empty() {
            client.sync_cluster(spec, false).await?;
            println!("cluster {} synced", spec.name);
        }
    }
    Ok(())
}

/// Deletes the cluster (first: it may use the classes) and the classes the file names.
pub async fn delete(client: &Client, file: &Path) -> Result<()> {
    let manifest = load(file)?;
    if let Some(spec) = &manifest.cluster {
        client.delete_cluster(&spec.name).await?;
        println!("cluster {} is being deleted", spec.name);
    }
    for class in &manifest.classes {
        client.delete_machine_class(&class.name).await?;
        println!("machineclass {} deleted", class.name);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_and_the_template_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("lab.yaml");
        std::fs::write(
            &file,
            "kind: MachineClass\nname: small\nselectors: [\"drover.dev/cores<=4\"]\n---\n\
             kind: Cluster\nname: lab\ntalos: { version: v1.13.0 }\nkubernetes: { version: v1.33.1 }\n\
             ---\nkind: ControlPlane\nmachineClass: { name: small, size: 1 }\n",
        )
        .unwrap();
        let manifest = load(&file).unwrap();
        assert_eq!(manifest.classes[0].name, "small");
        assert_eq!(manifest.cluster.unwrap().name, "lab");

        std::fs::write(&file, "kind: MachineClass\nname: x\nselector: []\n").unwrap();
        let err = format!("{:#}", load(&file).err().unwrap());
        assert!(
            err.contains("document 1 (kind: MachineClass)") && err.contains("selector"),
            "{err}"
        );
        std::fs::write(&file, "---\n").unwrap();
        assert!(load(&file).is_err());
    }
}

//! A pod template in the layout of `kubectl describe` / `kubectl rollout
//! history --revision`.

use std::collections::BTreeMap;
use std::fmt::Write;

use k8s_openapi::api::core::v1::{Container, PodTemplateSpec};

fn map_lines(out: &mut String, label: &str, map: Option<&BTreeMap<String, String>>, sep: &str) {
    let width = 16;
    match map.filter(|m| !m.is_empty()) {
        None => writeln!(out, "  {:<width$}<none>", format!("{label}:")).unwrap(),
        Some(m) => {
            for (i, (k, v)) in m.iter().enumerate() {
                let head = if i == 0 {
                    format!("{label}:")
                } else {
                    String::new()
                };
                writeln!(out, "  {head:<width$}{k}{sep}{v}").unwrap();
            }
        }
    }
}

fn container(out: &mut String, c: &Container) {
    writeln!(out, "   {}:", c.name).unwrap();
    writeln!(
        out,
        "    {:<14}{}",
        "Image:",
        c.image.as_deref().unwrap_or("<none>")
    )
    .unwrap();
    let ports: Vec<String> = c
        .ports
        .iter()
        .flatten()
        .map(|p| {
            format!(
                "{}/{}",
                p.container_port,
                p.protocol.as_deref().unwrap_or("TCP")
            )
        })
        .collect();
    writeln!(
        out,
        "    {:<14}{}",
        "Port:",
        if ports.is_empty() {
            "<none>".into()
        } else {
            ports.join(", ")
        }
    )
    .unwrap();
    if let Some(args) = c.command.as_ref().filter(|a| !a.is_empty()) {
        writeln!(
            out,
            "    Command:\n{}",
            args.iter()
                .map(|a| format!("      {a}"))
                .collect::<Vec<_>>()
                .join("\n")
        )
        .unwrap();
    }
    if let Some(args) = c.args.as_ref().filter(|a| !a.is_empty()) {
        writeln!(
            out,
            "    Args:\n{}",
            args.iter()
                .map(|a| format!("      {a}"))
                .collect::<Vec<_>>()
                .join("\n")
        )
        .unwrap();
    }
    let requests = c
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .filter(|r| !r.is_empty());
    if let Some(r) = c
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .filter(|r| !r.is_empty())
    {
        writeln!(out, "    Limits:").unwrap();
        for (k, v) in r {
            writeln!(out, "      {k}:  {}", v.0).unwrap();
        }
    }
    if let Some(r) = requests {
        writeln!(out, "    Requests:").unwrap();
        for (k, v) in r {
            writeln!(out, "      {k}:  {}", v.0).unwrap();
        }
    }
    let env: Vec<String> = c
        .env
        .iter()
        .flatten()
        .map(|e| match &e.value {
            Some(v) => format!("{}:  {v}", e.name),
            None => format!("{}:  <set to a reference>", e.name),
        })
        .collect();
    if env.is_empty() {
        writeln!(out, "    {:<14}<none>", "Environment:").unwrap();
    } else {
        writeln!(out, "    Environment:").unwrap();
        for e in env {
            writeln!(out, "      {e}").unwrap();
        }
    }
    let mounts: Vec<String> = c
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| format!("{} from {}", m.mount_path, m.name))
        .collect();
    writeln!(
        out,
        "    {:<14}{}",
        "Mounts:",
        if mounts.is_empty() {
            "<none>".into()
        } else {
            mounts.join(", ")
        }
    )
    .unwrap();
}

/// Renders the template under a "Pod Template:" heading.
pub fn describe(t: &PodTemplateSpec) -> String {
    let mut out = String::from("Pod Template:\n");
    let meta = t.metadata.clone().unwrap_or_default();
    map_lines(&mut out, "Labels", meta.labels.as_ref(), "=");
    map_lines(&mut out, "Annotations", meta.annotations.as_ref(), ": ");
    let spec = t.spec.clone().unwrap_or_default();
    if let Some(init) = spec.init_containers.as_ref().filter(|i| !i.is_empty()) {
        out.push_str("  Init Containers:\n");
        for c in init {
            container(&mut out, c);
        }
    }
    out.push_str("  Containers:\n");
    for c in &spec.containers {
        container(&mut out, c);
    }
    let volumes: Vec<String> = spec
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.clone())
        .collect();
    writeln!(
        out,
        "  {:<16}{}",
        "Volumes:",
        if volumes.is_empty() {
            "<none>".into()
        } else {
            volumes.join(", ")
        }
    )
    .unwrap();
    map_lines(&mut out, "Node-Selectors", spec.node_selector.as_ref(), "=");
    let tolerations: Vec<String> = spec
        .tolerations
        .iter()
        .flatten()
        .map(|t| {
            let mut s = t.key.clone().unwrap_or_default();
            if let Some(v) = &t.value {
                s.push_str(&format!("={v}"));
            }
            if let Some(e) = &t.effect {
                s.push_str(&format!(":{e}"));
            }
            s
        })
        .collect();
    writeln!(
        out,
        "  {:<16}{}",
        "Tolerations:",
        if tolerations.is_empty() {
            "<none>".into()
        } else {
            tolerations.join(", ")
        }
    )
    .unwrap();
    out
}

//! `kubectl dlite describe NAME`: a DeploymentLite in the layout and
//! wording of kubectl's Deployment describer (k8s.io/kubectl
//! pkg/describe), so users who follow a rollout with `kubectl describe
//! deployment/x` read the same thing. tests/describe.rs compares the two
//! line by line on the real control plane.
//!
//! Like kubectl, the text is first written with tab-separated cells and then
//! aligned by [`align`], which lays out columns the way Go's text/tabwriter
//! does with kubectl's settings (padding 2, spaces).
//!
//! Where the API server would default a field of a native Deployment (the
//! strategy, a port's protocol, probe periods), the describer prints the
//! value the controller or the kubelet will use, because a DeploymentLite's
//! CRD does not default pod fields: the two describe the same behaviour.

use std::collections::BTreeMap;
use std::fmt::Write;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Event, PodTemplateSpec, Probe, Toleration, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{Timestamp, tz::TimeZone};
use kube::ResourceExt;

use crate::api::{DeploymentLite, StrategyType};
use crate::controller::hash::equal_ignore_hash;

/// kubectl leaves this annotation out of every description.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// Longer annotations are folded onto their own lines, as in kubectl.
const MAX_ANNOTATION_LEN: usize = 140;

/// Everything the description shows besides the object: its ReplicaSets
/// and the (core/v1) Events about it, read at `now`. Without events (they
/// could not be listed) the Events section is left out, as kubectl does.
pub struct Related<'a> {
    pub replica_sets: &'a [ReplicaSet],
    /// The object's pod template as the API server defaults it (a dry run
    /// of the ReplicaSet, as the controller asks): the NewReplicaSet is the
    /// one whose template equals it. `None`: the template as written.
    pub template: Option<&'a PodTemplateSpec>,
    pub events: Option<&'a [Event]>,
    pub now: Timestamp,
    pub tz: &'a TimeZone,
}

/// The description, aligned.
pub fn describe(dl: &DeploymentLite, related: &Related<'_>) -> String {
    align(&raw(dl, related))
}

/// The description with kubectl's tab-separated cells, before alignment.
fn raw(dl: &DeploymentLite, r: &Related<'_>) -> String {
    let mut w = String::new();
    let status = dl.status.clone().unwrap_or_default();
    let _ = writeln!(w, "Name:\t{}", dl.name_any());
    let _ = writeln!(w, "Namespace:\t{}", dl.namespace().unwrap_or_default());
    let created = dl
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| rfc1123z(t.0, r.tz))
        .unwrap_or_else(|| rfc1123z(Timestamp::UNIX_EPOCH, r.tz));
    let _ = writeln!(w, "CreationTimestamp:\t{created}");
    labels_multiline(&mut w, "", "Labels", dl.metadata.labels.as_ref());
    annotations_multiline(&mut w, "Annotations", dl.metadata.annotations.as_ref());
    let _ = writeln!(w, "Selector:\t{}", selector_string(&dl.spec.selector));
    let _ = writeln!(
        w,
        "Replicas:\t{} desired | {} updated | {} total | {} available | {} unavailable",
        dl.spec.replicas,
        status.updated_replicas,
        status.replicas,
        status.available_replicas,
        status.unavailable_replicas
    );
    let strategy = &dl.spec.strategy;
    let type_ = match strategy.type_ {
        StrategyType::Recreate => "Recreate",
        StrategyType::RollingUpdate => "RollingUpdate",
    };
    let _ = writeln!(w, "StrategyType:\t{type_}");
    let _ = writeln!(w, "MinReadySeconds:\t{}", dl.spec.min_ready_seconds);
    if strategy.type_ == StrategyType::RollingUpdate {
        // The controller's defaults, which apps/v1 writes into the object.
        let ru = strategy.rolling_update.clone().unwrap_or_default();
        let quarter = IntOrString::String("25%".into());
        let _ = writeln!(
            w,
            "RollingUpdateStrategy:\t{} max unavailable, {} max surge",
            int_or_string(ru.max_unavailable.as_ref().unwrap_or(&quarter)),
            int_or_string(ru.max_surge.as_ref().unwrap_or(&quarter)),
        );
    }
    pod_template(&mut w, &dl.spec.template);
    if !status.conditions.is_empty() {
        w.push_str("Conditions:\n  Type\tStatus\tReason\n");
        w.push_str("  ----\t------\t------\n");
        for c in &status.conditions {
            let _ = writeln!(
                w,
                "  {} \t{}\t{}",
                c.type_,
                c.status,
                c.reason.as_deref().unwrap_or("")
            );
        }
    }
    let (old, new) =
        split_replica_sets(dl, r.template.unwrap_or(&dl.spec.template), r.replica_sets);
    if !old.is_empty() || !new.is_empty() {
        let _ = writeln!(w, "OldReplicaSets:\t{}", replica_sets_line(&old));
        let _ = writeln!(w, "NewReplicaSet:\t{}", replica_sets_line(&new));
    }
    if let Some(list) = r.events {
        events(&mut w, list, r.now);
    }
    w
}

/// The new ReplicaSet (the oldest whose template is the object's, as
/// upstream picks it) and all the others the object controls.
fn split_replica_sets<'a>(
    dl: &DeploymentLite,
    template: &PodTemplateSpec,
    rses: &'a [ReplicaSet],
) -> (Vec<&'a ReplicaSet>, Vec<&'a ReplicaSet>) {
    let uid = dl.uid();
    let owned: Vec<&ReplicaSet> = rses
        .iter()
        .filter(|rs| {
            rs.owner_references()
                .iter()
                .any(|o| o.controller == Some(true) && Some(&o.uid) == uid.as_ref())
        })
        .collect();
    let mut matching: Vec<&ReplicaSet> = owned
        .iter()
        .copied()
        .filter(|rs| {
            rs.spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|t| equal_ignore_hash(template, t))
        })
        .collect();
    matching.sort_by(|a, b| {
        let created = |rs: &ReplicaSet| rs.metadata.creation_timestamp.clone().map(|t| t.0);
        created(a)
            .cmp(&created(b))
            .then_with(|| a.name_any().cmp(&b.name_any()))
    });
    let new = matching.first().copied();
    let old = owned
        .into_iter()
        .filter(|rs| new.is_none_or(|n| n.uid() != rs.uid() || n.name_any() != rs.name_any()))
        .collect();
    (old, new.into_iter().collect())
}

fn replica_sets_line(rses: &[&ReplicaSet]) -> String {
    if rses.is_empty() {
        return "<none>".into();
    }
    rses.iter()
        .map(|rs| {
            format!(
                "{} ({}/{} replicas created)",
                rs.name_any(),
                rs.status.as_ref().map(|s| s.replicas).unwrap_or(0),
                rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Go's `time.RFC1123Z` in the local zone, as kubectl prints timestamps.
pub fn rfc1123z(t: Timestamp, tz: &TimeZone) -> String {
    t.to_zoned(tz.clone())
        .strftime("%a, %d %b %Y %H:%M:%S %z")
        .to_string()
}

fn int_or_string(v: &IntOrString) -> String {
    match v {
        IntOrString::Int(i) => i.to_string(),
        IntOrString::String(s) => s.clone(),
    }
}

/// A label selector as `labels.Selector.String()` prints it: requirements
/// sorted by key, joined by commas.
pub fn selector_string(sel: &LabelSelector) -> String {
    let mut reqs: Vec<(String, String)> = Vec::new();
    for (k, v) in sel.match_labels.iter().flatten() {
        reqs.push((k.clone(), format!("{k}={v}")));
    }
    for e in sel.match_expressions.iter().flatten() {
        let mut values = e.values.clone().unwrap_or_default();
        values.sort();
        let text = match e.operator.as_str() {
            "In" => format!("{} in ({})", e.key, values.join(",")),
            "NotIn" => format!("{} notin ({})", e.key, values.join(",")),
            "Exists" => e.key.clone(),
            "DoesNotExist" => format!("!{}", e.key),
            other => format!("{} {other} ({})", e.key, values.join(",")),
        };
        reqs.push((e.key.clone(), text));
    }
    if reqs.is_empty() {
        return "<none>".into();
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    reqs.into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join(",")
}

fn labels_multiline(
    w: &mut String,
    indent: &str,
    title: &str,
    labels: Option<&BTreeMap<String, String>>,
) {
    let _ = write!(w, "{indent}{title}:\t");
    match labels.filter(|l| !l.is_empty()) {
        None => w.push_str("<none>\n"),
        Some(labels) => {
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    let _ = write!(w, "{indent}\t");
                }
                let _ = writeln!(w, "{k}={v}");
            }
        }
    }
}

fn annotations_multiline(
    w: &mut String,
    title: &str,
    annotations: Option<&BTreeMap<String, String>>,
) {
    let _ = write!(w, "{title}:\t");
    let shown: Vec<(&String, &String)> = annotations
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.as_str() != LAST_APPLIED)
        .collect();
    if shown.is_empty() {
        w.push_str("<none>\n");
        return;
    }
    for (i, (k, v)) in shown.into_iter().enumerate() {
        if i > 0 {
            w.push('\t');
        }
        let value = v.strip_suffix('\n').unwrap_or(v);
        if value.len() + k.len() + 2 > MAX_ANNOTATION_LEN || value.contains('\n') {
            let _ = writeln!(w, "{k}:");
            for line in value.split('\n') {
                let _ = writeln!(w, "\t  {}", shorten(line, MAX_ANNOTATION_LEN - 2));
            }
        } else {
            let _ = writeln!(w, "{k}: {value}");
        }
    }
}

fn shorten(s: &str, max: usize) -> String {
    if s.len() > max {
        // Byte-based as in Go, but never inside a character.
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &s[..end])
    } else {
        s.to_string()
    }
}

/// kubectl's DescribePodTemplate.
pub fn pod_template(w: &mut String, t: &PodTemplateSpec) {
    w.push_str("Pod Template:\n");
    let meta = t.metadata.clone().unwrap_or_default();
    labels_multiline(w, "", "  Labels", meta.labels.as_ref());
    if meta.annotations.as_ref().is_some_and(|a| !a.is_empty()) {
        annotations_multiline(w, "  Annotations", meta.annotations.as_ref());
    }
    let spec = t.spec.clone().unwrap_or_default();
    if let Some(sa) = spec.service_account_name.as_ref().filter(|s| !s.is_empty()) {
        let _ = writeln!(w, "  Service Account:\t{sa}");
    }
    if let Some(init) = spec.init_containers.as_ref().filter(|c| !c.is_empty()) {
        containers(w, "Init Containers", init);
    }
    containers(w, "Containers", &spec.containers);
    volumes(w, spec.volumes.as_deref().unwrap_or_default());
    if let Some(tscs) = spec
        .topology_spread_constraints
        .as_ref()
        .filter(|c| !c.is_empty())
    {
        let mut tscs = tscs.clone();
        tscs.sort_by(|a, b| a.topology_key.cmp(&b.topology_key));
        w.push_str("  Topology Spread Constraints:\t");
        for (i, c) in tscs.iter().enumerate() {
            if i > 0 {
                w.push_str("  \t");
            }
            let _ = write!(
                w,
                "{}:{} when max skew {} is exceeded",
                c.topology_key, c.when_unsatisfiable, c.max_skew
            );
            if let Some(sel) = &c.label_selector {
                let _ = write!(w, " for selector {}", selector_string(sel));
            }
            w.push('\n');
        }
    }
    if let Some(pc) = spec.priority_class_name.as_ref().filter(|s| !s.is_empty()) {
        let _ = writeln!(w, "  Priority Class Name:\t{pc}");
    }
    labels_multiline(w, "", "  Node-Selectors", spec.node_selector.as_ref());
    tolerations(w, spec.tolerations.as_deref().unwrap_or_default());
}

fn containers(w: &mut String, label: &str, cs: &[Container]) {
    let none = if cs.is_empty() { " <none>" } else { "" };
    let _ = writeln!(w, "  {label}:{none}");
    for c in cs {
        let _ = writeln!(w, "   {}:", c.name);
        let _ = writeln!(w, "    Image:\t{}", c.image.as_deref().unwrap_or(""));
        let ports = c.ports.as_deref().unwrap_or_default();
        let port = |p: &ContainerPort, n: i32| {
            // The API server defaults the protocol to TCP.
            let mut s = format!("{n}/{}", p.protocol.as_deref().unwrap_or("TCP"));
            if let Some(name) = p.name.as_ref().filter(|n| !n.is_empty()) {
                s = format!("{s} ({name})");
            }
            s
        };
        let list = |f: &dyn Fn(&ContainerPort) -> String| {
            ports.iter().map(f).collect::<Vec<_>>().join(", ")
        };
        let container_ports = list(&|p| port(p, p.container_port));
        let host_ports = list(&|p| port(p, p.host_port.unwrap_or(0)));
        for (one, many, value) in [
            ("Port", "Ports", container_ports),
            ("Host Port", "Host Ports", host_ports),
        ] {
            if value.contains(',') {
                let _ = writeln!(w, "    {many}:\t{value}");
            } else {
                let value = if value.is_empty() {
                    "<none>".into()
                } else {
                    value
                };
                let _ = writeln!(w, "    {one}:\t{value}");
            }
        }
        if let Some(sp) = c
            .security_context
            .as_ref()
            .and_then(|s| s.seccomp_profile.as_ref())
        {
            let _ = writeln!(w, "    SeccompProfile:\t{}", sp.type_);
            if sp.type_ == "Localhost" {
                let _ = writeln!(
                    w,
                    "      LocalhostProfile:\t{}",
                    sp.localhost_profile.as_deref().unwrap_or("")
                );
            }
        }
        for (title, items) in [("Command", &c.command), ("Args", &c.args)] {
            if let Some(items) = items.as_ref().filter(|i| !i.is_empty()) {
                let _ = writeln!(w, "    {title}:");
                for line in items.iter().flat_map(|i| i.split('\n')) {
                    let _ = writeln!(w, "      {line}");
                }
            }
        }
        if let Some(res) = &c.resources {
            for (title, map) in [("Limits", &res.limits), ("Requests", &res.requests)] {
                if let Some(map) = map.as_ref().filter(|m| !m.is_empty()) {
                    let _ = writeln!(w, "    {title}:");
                    for (name, q) in map {
                        // Quantities as written: the CRD keeps the user's
                        // spelling where the API server canonicalizes.
                        let _ = writeln!(w, "      {name}:\t{}", q.0);
                    }
                }
            }
        }
        for (title, probe) in [
            ("Liveness", &c.liveness_probe),
            ("Readiness", &c.readiness_probe),
            ("Startup", &c.startup_probe),
        ] {
            if let Some(p) = probe {
                let _ = writeln!(w, "    {title}:\t{}", describe_probe(p));
            }
        }
        if let Some(env_from) = c.env_from.as_ref().filter(|e| !e.is_empty()) {
            w.push_str("    Environment Variables from:\n");
            for e in env_from {
                let (from, name, optional) = if let Some(r) = &e.config_map_ref {
                    ("ConfigMap", r.name.clone(), r.optional.unwrap_or(false))
                } else if let Some(r) = &e.secret_ref {
                    ("Secret", r.name.clone(), r.optional.unwrap_or(false))
                } else {
                    ("", String::new(), false)
                };
                match e.prefix.as_ref().filter(|p| !p.is_empty()) {
                    None => {
                        let _ = writeln!(w, "      {name}\t{from}\tOptional: {optional}");
                    }
                    Some(p) => {
                        let _ = writeln!(
                            w,
                            "      {name}\t{from} with prefix '{p}'\tOptional: {optional}"
                        );
                    }
                }
            }
        }
        let env = c.env.as_deref().unwrap_or_default();
        let none = if env.is_empty() { "\t<none>" } else { "" };
        let _ = writeln!(w, "    Environment:{none}");
        for e in env {
            match &e.value_from {
                None => {
                    for (i, line) in e.value.as_deref().unwrap_or("").split('\n').enumerate() {
                        if i == 0 {
                            let _ = writeln!(w, "      {}:\t{line}", e.name);
                        } else {
                            let _ = writeln!(w, "      \t{line}");
                        }
                    }
                }
                Some(from) => {
                    if let Some(f) = &from.field_ref {
                        // kubectl resolves field paths only against a pod.
                        let _ = writeln!(
                            w,
                            "      {}:\t ({}:{})",
                            e.name,
                            f.api_version.as_deref().unwrap_or("v1"),
                            f.field_path
                        );
                    } else if let Some(f) = &from.resource_field_ref {
                        let _ = writeln!(w, "      {}:\t ({})", e.name, f.resource);
                    } else if let Some(s) = &from.secret_key_ref {
                        let _ = writeln!(
                            w,
                            "      {}:\t<set to the key '{}' in secret '{}'>\tOptional: {}",
                            e.name,
                            s.key,
                            s.name,
                            s.optional.unwrap_or(false)
                        );
                    } else if let Some(c) = &from.config_map_key_ref {
                        let _ = writeln!(
                            w,
                            "      {}:\t<set to the key '{}' of config map '{}'>\tOptional: {}",
                            e.name,
                            c.key,
                            c.name,
                            c.optional.unwrap_or(false)
                        );
                    }
                }
            }
        }
        let mut mounts = c.volume_mounts.clone().unwrap_or_default();
        let none = if mounts.is_empty() { "\t<none>" } else { "" };
        let _ = writeln!(w, "    Mounts:{none}");
        mounts.sort_by(|a, b| a.mount_path.cmp(&b.mount_path));
        for m in &mounts {
            let mut flags = vec![
                if m.read_only == Some(true) {
                    "ro"
                } else {
                    "rw"
                }
                .to_string(),
            ];
            if let Some(sub) = m.sub_path.as_ref().filter(|s| !s.is_empty()) {
                flags.push(format!("path={sub:?}"));
            }
            let _ = writeln!(
                w,
                "      {} from {} ({})",
                m.mount_path,
                m.name,
                flags.join(",")
            );
        }
        if let Some(devices) = c.volume_devices.as_ref().filter(|d| !d.is_empty()) {
            w.push_str("    Devices:\n");
            let mut devices = devices.clone();
            devices.sort_by(|a, b| a.device_path.cmp(&b.device_path));
            for d in devices {
                let _ = writeln!(w, "      {} from {}", d.device_path, d.name);
            }
        }
    }
}

/// kubectl's DescribeProbe, with the kubelet's defaults where the field is
/// unset (the API server writes them into a native template).
fn describe_probe(p: &Probe) -> String {
    let attrs = format!(
        "delay={}s timeout={}s period={}s #success={} #failure={}",
        p.initial_delay_seconds.unwrap_or(0),
        p.timeout_seconds.unwrap_or(1),
        p.period_seconds.unwrap_or(10),
        p.success_threshold.unwrap_or(1),
        p.failure_threshold.unwrap_or(3)
    );
    if let Some(e) = &p.exec {
        return format!(
            "exec [{}] {attrs}",
            e.command.clone().unwrap_or_default().join(" ")
        );
    }
    if let Some(h) = &p.http_get {
        let scheme = h.scheme.as_deref().unwrap_or("HTTP").to_ascii_lowercase();
        let port = int_or_string(&h.port);
        let host = h.host.clone().unwrap_or_default();
        let host = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        return format!(
            "http-get {scheme}://{host}{} {attrs}",
            h.path.as_deref().unwrap_or("")
        );
    }
    if let Some(t) = &p.tcp_socket {
        return format!(
            "tcp-socket {}:{} {attrs}",
            t.host.as_deref().unwrap_or(""),
            int_or_string(&t.port)
        );
    }
    if let Some(g) = &p.grpc {
        return format!(
            "grpc <pod>:{} {} {attrs}",
            g.port,
            g.service.as_deref().unwrap_or("")
        );
    }
    format!("unknown {attrs}")
}

fn volumes(w: &mut String, vols: &[Volume]) {
    if vols.is_empty() {
        w.push_str("  Volumes:\t<none>\n");
        return;
    }
    w.push_str("  Volumes:\n");
    for v in vols {
        let _ = writeln!(w, "   {}:", v.name);
        if let Some(e) = &v.empty_dir {
            let size = e
                .size_limit
                .as_ref()
                .map(|q| q.0.clone())
                .filter(|q| !q.is_empty() && q != "0")
                .unwrap_or_else(|| "<unset>".into());
            let _ = write!(
                w,
                "    Type:\tEmptyDir (a temporary directory that shares a pod's lifetime)\n    Medium:\t{}\n    SizeLimit:\t{size}\n",
                e.medium.as_deref().unwrap_or("")
            );
        } else if let Some(c) = &v.config_map {
            let _ = write!(
                w,
                "    Type:\tConfigMap (a volume populated by a ConfigMap)\n    Name:\t{}\n    Optional:\t{}\n",
                c.name,
                c.optional.unwrap_or(false)
            );
        } else if let Some(s) = &v.secret {
            let _ = write!(
                w,
                "    Type:\tSecret (a volume populated by a Secret)\n    SecretName:\t{}\n    Optional:\t{}\n",
                s.secret_name.as_deref().unwrap_or(""),
                s.optional.unwrap_or(false)
            );
        } else if let Some(h) = &v.host_path {
            let _ = write!(
                w,
                "    Type:\tHostPath (bare host directory volume)\n    Path:\t{}\n    HostPathType:\t{}\n",
                h.path,
                h.type_.as_deref().unwrap_or("<none>")
            );
        } else {
            // The other volume types kubectl knows are not described here yet.
            w.push_str("  <unknown>\n");
        }
    }
}

fn tolerations(w: &mut String, tols: &[Toleration]) {
    w.push_str("  Tolerations:\t");
    if tols.is_empty() {
        w.push_str("<none>\n");
        return;
    }
    let mut tols = tols.to_vec();
    tols.sort_by(|a, b| a.key.cmp(&b.key));
    for (i, t) in tols.iter().enumerate() {
        if i > 0 {
            w.push('\t');
        }
        let key = t.key.as_deref().unwrap_or("");
        let value = t.value.as_deref().unwrap_or("");
        let effect = t.effect.as_deref().unwrap_or("");
        w.push_str(key);
        if !value.is_empty() {
            let _ = write!(w, "={value}");
        }
        if !effect.is_empty() {
            let _ = write!(w, ":{effect}");
        }
        if t.operator.as_deref() == Some("Exists") && value.is_empty() {
            w.push_str(if key.is_empty() && effect.is_empty() {
                "op=Exists"
            } else {
                " op=Exists"
            });
        }
        if let Some(s) = t.toleration_seconds {
            let _ = write!(w, " for {s}s");
        }
        w.push('\n');
    }
}

/// kubectl's DescribeEvents. The line before the table ends the column
/// block (kubectl flushes its tabwriter there).
fn events(w: &mut String, events: &[Event], now: Timestamp) {
    if events.is_empty() {
        w.push_str("Events:\t<none>\n");
        return;
    }
    w.push('\u{c}');
    let mut sorted: Vec<&Event> = events.iter().collect();
    // Stable, like Go's insertion sort on the short lists kubectl sorts.
    sorted.sort_by_key(|e| e.last_timestamp.as_ref().map(|t| t.0));
    w.push_str("Events:\n  Type\tReason\tAge\tFrom\tMessage\n");
    w.push_str("  ----\t------\t----\t----\t-------\n");
    for e in sorted {
        let since = |t: Option<Timestamp>| match t {
            None => "<unknown>".to_string(),
            Some(t) => human_duration(now.duration_since(t).as_secs()),
        };
        let mut first = since(e.event_time.as_ref().map(|t| t.0));
        if e.event_time.is_none() {
            first = since(e.first_timestamp.as_ref().map(|t| t.0));
        }
        let interval = if let Some(series) = &e.series {
            format!(
                "{} (x{} over {first})",
                since(series.last_observed_time.as_ref().map(|t| t.0)),
                series.count.unwrap_or(0)
            )
        } else if e.count.unwrap_or(0) > 1 {
            format!(
                "{} (x{} over {first})",
                since(e.last_timestamp.as_ref().map(|t| t.0)),
                e.count.unwrap_or(0)
            )
        } else {
            first
        };
        let source = e
            .source
            .as_ref()
            .and_then(|s| s.component.clone())
            .filter(|c| !c.is_empty())
            .or_else(|| e.reporting_component.clone())
            .unwrap_or_default();
        let mut message = e.message.as_deref().unwrap_or("").trim().to_string();
        if let Some(fp) = e
            .involved_object
            .field_path
            .as_ref()
            .filter(|f| !f.is_empty())
        {
            message = format!("{fp}: {message}");
        }
        let _ = writeln!(
            w,
            "  {}\t{}\t{interval}\t{source}\t{message}",
            e.type_.as_deref().unwrap_or(""),
            e.reason.as_deref().unwrap_or("")
        );
    }
}

/// apimachinery's HumanDuration: ages as kubectl prints them.
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// Aligns tab-separated cells the way Go's text/tabwriter does with
/// kubectl's settings (minwidth 0, padding 2, pad with spaces, no flags):
///
/// - a cell is text terminated by a tab; the text after a line's last tab
///   is not a cell and is never padded;
/// - a column block is a run of consecutive lines that all have a cell in
///   that column; its width is its widest cell plus the padding;
/// - a line without any tab, and a form feed, end every block (the
///   tabwriter flushes there).
pub fn align(text: &str) -> String {
    let mut out = String::new();
    let mut block: Vec<Vec<&str>> = Vec::new();
    for line in text.split_inclusive('\n') {
        let (line, flush) = match line.strip_prefix('\u{c}') {
            Some(rest) => (rest, true),
            None => (line, false),
        };
        if flush {
            flush_block(&mut out, &mut block);
        }
        let body = line.strip_suffix('\n').unwrap_or(line);
        let cells: Vec<&str> = body.split('\t').collect();
        let single = cells.len() == 1;
        block.push(cells);
        if single {
            flush_block(&mut out, &mut block);
        }
    }
    flush_block(&mut out, &mut block);
    out
}

fn flush_block(out: &mut String, lines: &mut Vec<Vec<&str>>) {
    let mut widths = Vec::new();
    format_lines(out, lines, 0, lines.len(), &mut widths);
    lines.clear();
}

/// Go's tabwriter.format: finds the column blocks at depth `widths.len()`
/// and recurses into each with its width pushed.
fn format_lines(
    out: &mut String,
    lines: &[Vec<&str>],
    mut line0: usize,
    line1: usize,
    widths: &mut Vec<usize>,
) {
    let column = widths.len();
    let mut this = line0;
    while this < line1 {
        if column + 1 >= lines[this].len() {
            this += 1;
            continue;
        }
        write_lines(out, &lines[line0..this], widths);
        line0 = this;
        let mut width = 0;
        while this < line1 && column + 1 < lines[this].len() {
            width = width.max(lines[this][column].chars().count() + 2);
            this += 1;
        }
        widths.push(width);
        format_lines(out, lines, line0, this, widths);
        widths.pop();
        line0 = this;
    }
    write_lines(out, &lines[line0..line1], widths);
}

fn write_lines(out: &mut String, lines: &[Vec<&str>], widths: &[usize]) {
    for cells in lines {
        for (j, cell) in cells.iter().enumerate() {
            out.push_str(cell);
            if j < widths.len() && j + 1 < cells.len() {
                let pad = widths[j].saturating_sub(cell.chars().count());
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn align_pads_each_column_block_to_its_widest_cell_plus_two() {
        let raw = "Name:\tweb\nNamespace:\tdefault\nLabels:\ta=1\n\tb=2\n";
        assert_eq!(
            align(raw),
            "Name:       web\nNamespace:  default\nLabels:     a=1\n            b=2\n"
        );
    }

    #[test]
    fn align_a_line_without_tabs_ends_the_block() {
        let raw = "Name:\tweb\nPod Template:\n  Labels:\tapp=web\n";
        assert_eq!(
            align(raw),
            "Name:  web\nPod Template:\n  Labels:  app=web\n"
        );
    }

    #[test]
    fn align_nested_columns_and_shorter_lines_continue_the_outer_block() {
        // Conditions rows (three cells) and the ReplicaSet lines (two) share
        // the first column's block; the second column's block is the rows.
        let raw = "Conditions:\n  Type\tStatus\tReason\n  Available \tTrue\tMinimumReplicasAvailable\nNewReplicaSet:\tweb-1 (1/1 replicas created)\n";
        assert_eq!(
            align(raw),
            "Conditions:\n  Type          Status  Reason\n  Available     True    MinimumReplicasAvailable\nNewReplicaSet:  web-1 (1/1 replicas created)\n"
        );
    }

    #[test]
    fn align_form_feed_flushes_and_widths_count_characters() {
        let raw = "Käse:\tx\n\u{c}Events:\n  Type\tAge\n  Normal\t5s\n";
        assert_eq!(
            align(raw),
            "Käse:  x\nEvents:\n  Type    Age\n  Normal  5s\n"
        );
    }

    #[test]
    fn human_durations_as_apimachinery_prints_them() {
        for (s, want) in [
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (150, "2m30s"),
            (600, "10m"),
            (179 * 60, "179m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 60, "3h1m"),
            (8 * 3600, "8h"),
            (48 * 3600, "2d"),
            (50 * 3600, "2d2h"),
            (8 * 24 * 3600, "8d"),
            (2 * 365 * 24 * 3600, "2y"),
            (3 * 365 * 24 * 3600 + 86400, "3y1d"),
            (9 * 365 * 24 * 3600, "9y"),
        ] {
            assert_eq!(human_duration(s), want, "{s}");
        }
    }

    #[test]
    fn selectors_print_as_labels_selector_strings() {
        let sel: LabelSelector = serde_json::from_value(json!({
            "matchLabels": {"tier": "web", "app": "x"},
            "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["prod", "dev"]},
                {"key": "zz", "operator": "DoesNotExist"},
                {"key": "b", "operator": "Exists"},
                {"key": "c", "operator": "NotIn", "values": ["1"]}
            ]
        }))
        .unwrap();
        assert_eq!(
            selector_string(&sel),
            "app=x,b,c notin (1),env in (dev,prod),tier=web,!zz"
        );
        assert_eq!(selector_string(&LabelSelector::default()), "<none>");
    }

    fn fixture() -> (DeploymentLite, Vec<ReplicaSet>, Vec<Event>) {
        let dl: DeploymentLite = serde_json::from_value(json!({
            "apiVersion": "apps.dlite.dev/v1", "kind": "DeploymentLite",
            "metadata": {"name": "web", "namespace": "prod", "uid": "u1",
                         "creationTimestamp": "2026-01-02T03:04:05Z",
                         "labels": {"app": "web"},
                         "annotations": {"dlite.dev/revision": "2",
                                         "kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{
                                      "name": "app", "image": "img:2",
                                      "ports": [{"containerPort": 80}],
                                      "env": [{"name": "A", "value": "1"}],
                                      "readinessProbe": {"httpGet": {"path": "/ready", "port": 80}}
                                  }]}}},
            "status": {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2,
                       "availableReplicas": 2,
                       "conditions": [
                           {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                           {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]}
        }))
        .unwrap();
        let rs = |name: &str, image: &str, replicas: i32, created: &str| -> ReplicaSet {
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "prod", "uid": name,
                             "creationTimestamp": created,
                             "ownerReferences": [{"apiVersion": "apps.dlite.dev/v1", "kind": "DeploymentLite",
                                                  "name": "web", "uid": "u1", "controller": true}]},
                "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                         "template": {"metadata": {"labels": {"app": "web", "pod-template-hash": name}},
                                      "spec": {"containers": [{"name": "app", "image": image,
                                          "ports": [{"containerPort": 80}],
                                          "env": [{"name": "A", "value": "1"}],
                                          "readinessProbe": {"httpGet": {"path": "/ready", "port": 80}}}]}}},
                "status": {"replicas": replicas}
            }))
            .unwrap()
        };
        let rses = vec![
            rs("web-old", "img:1", 0, "2026-01-02T03:04:05Z"),
            rs("web-new", "img:2", 2, "2026-01-02T03:05:00Z"),
        ];
        let events: Vec<Event> = vec![
            serde_json::from_value(json!({
                "metadata": {"name": "e1", "namespace": "prod"},
                "involvedObject": {"kind": "DeploymentLite", "name": "web"},
                "type": "Normal", "reason": "ScalingReplicaSet",
                "eventTime": "2026-01-02T03:05:00.000000Z",
                "reportingComponent": "dlite-controller",
                "message": "Scaled up replica set web-new from 0 to 2"
            }))
            .unwrap(),
        ];
        (dl, rses, events)
    }

    #[test]
    fn describe_in_kubectls_layout() {
        let (dl, rses, events) = fixture();
        let now: Timestamp = "2026-01-02T03:06:30Z".parse().unwrap();
        let text = describe(
            &dl,
            &Related {
                replica_sets: &rses,
                template: None,
                events: Some(&events),
                now,
                tz: &TimeZone::UTC,
            },
        );
        let want = "\
Name:                   web
Namespace:              prod
CreationTimestamp:      Fri, 02 Jan 2026 03:04:05 +0000
Labels:                 app=web
Annotations:            dlite.dev/revision: 2
Selector:               app=web
Replicas:               2 desired | 2 updated | 2 total | 2 available | 0 unavailable
StrategyType:           RollingUpdate
MinReadySeconds:        0
RollingUpdateStrategy:  25% max unavailable, 25% max surge
Pod Template:
  Labels:  app=web
  Containers:
   app:
    Image:      img:2
    Port:       80/TCP
    Host Port:  0/TCP
    Readiness:  http-get http://:80/ready delay=0s timeout=1s period=10s #success=1 #failure=3
    Environment:
      A:           1
    Mounts:        <none>
  Volumes:         <none>
  Node-Selectors:  <none>
  Tolerations:     <none>
Conditions:
  Type           Status  Reason
  ----           ------  ------
  Available      True    MinimumReplicasAvailable
  Progressing    True    NewReplicaSetAvailable
OldReplicaSets:  web-old (0/0 replicas created)
NewReplicaSet:   web-new (2/2 replicas created)
Events:
  Type    Reason             Age   From              Message
  ----    ------             ----  ----              -------
  Normal  ScalingReplicaSet  90s   dlite-controller  Scaled up replica set web-new from 0 to 2
";
        assert_eq!(text, want, "got:\n{text}");
    }

    #[test]
    fn describe_without_replica_sets_or_events() {
        let (mut dl, _, _) = fixture();
        dl.status = None;
        dl.spec.strategy.type_ = StrategyType::Recreate;
        let text = describe(
            &dl,
            &Related {
                replica_sets: &[],
                template: None,
                events: Some(&[]),
                now: Timestamp::UNIX_EPOCH,
                tz: &TimeZone::UTC,
            },
        );
        assert!(
            text.contains("Replicas:           2 desired | 0 updated | 0 total | 0 available | 0 unavailable\n"),
            "{text}"
        );
        assert!(text.contains("StrategyType:       Recreate\n"), "{text}");
        assert!(!text.contains("RollingUpdateStrategy"), "{text}");
        assert!(!text.contains("Conditions:"), "{text}");
        assert!(!text.contains("NewReplicaSet"), "{text}");
        assert!(text.ends_with("Events:            <none>\n"), "{text}");
        let without = describe(
            &dl,
            &Related {
                replica_sets: &[],
                template: None,
                events: None,
                now: Timestamp::UNIX_EPOCH,
                tz: &TimeZone::UTC,
            },
        );
        assert!(!without.contains("Events:"), "{without}");
    }
}

//! The Helm chart (charts/deploymentlite): it lints, renders every object
//! it should with the values it should, its schema refuses bad values
//! naming the field, and against the real API server it installs into a
//! namespace that enforces the restricted Pod Security Standard, its
//! Deployments become Available, its RBAC is exactly enough for the real
//! binaries (run here with the chart's ServiceAccount tokens and the chart's
//! own command lines), and `helm uninstall` removes everything it created
//! but the CRD. The CRD is a template (`crds.enabled`, `crds.keep`): an
//! upgrade that adds a field to it serves the field, and uninstall keeps
//! it. The chart README's values table matches values.schema.json and
//! values.yaml, and Chart.yaml's kubeVersion refuses Kubernetes 1.28.
//!
//! helm is $HELM, else the one `hack/testenv build` made, else `helm` on
//! PATH. Every release is named after its own test namespace, so tests run
//! in parallel with each other and with the other cluster tests.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use dlite::api::DeploymentLite;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Pod, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use support::{TestNamespace, kubeconfig_path, repo_root, wait_for};

const CHART: &str = "charts/deploymentlite";
const CRD_NAME: &str = "deploymentlites.apps.dlite.dev";
/// The chart's copy of crd/deploymentlite.yaml, which templates/crds.yaml renders.
const CHART_CRD: &str = "files/deploymentlite-crd.yaml";

// ---------------------------------------------------------------------------
// helm and rendered manifests

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
    cmd: String,
}

impl Run {
    fn expect_ok(self) -> Run {
        assert!(
            self.ok,
            "`{}` failed:\n{}\n{}",
            self.cmd, self.stderr, self.stdout
        );
        self
    }
}

/// Runs helm in the repository root; against the cluster under test when
/// `cluster` (otherwise no KUBECONFIG: template and lint need none).
fn helm(cluster: bool, args: &[&str]) -> Run {
    let bin = support::helm_bin();
    let mut cmd = Command::new(&bin);
    cmd.args(args)
        .current_dir(repo_root())
        .env_remove("KUBECONFIG");
    if cluster {
        cmd.env("KUBECONFIG", kubeconfig_path());
    }
    let out = cmd.output().unwrap_or_else(|e| {
        panic!(
            "running {}: {e} (set $HELM or run hack/testenv build)",
            bin.display()
        )
    });
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        cmd: format!("helm {}", args.join(" ")),
    }
}

/// `helm template` with `--set` values; panics when it fails.
fn template(sets: &[&str]) -> Vec<Value> {
    let mut args = vec!["template", "dlite", CHART, "--namespace", "dlite-system"];
    for s in sets {
        args.extend(["--set", s]);
    }
    docs(&helm(false, &args).expect_ok().stdout)
}

/// The YAML documents of a multi-document stream, as JSON values.
fn docs(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_str_multiple::<Value, Vec<Value>>(yaml)
        .expect("rendered YAML parses")
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

fn kind(v: &Value) -> &str {
    v["kind"].as_str().unwrap_or_default()
}

fn name(v: &Value) -> &str {
    v["metadata"]["name"].as_str().unwrap_or_default()
}

fn kinds(objs: &[Value]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for o in objs {
        *m.entry(kind(o).to_string()).or_insert(0) += 1;
    }
    m
}

/// The one object of `kind` whose component label is `component`.
fn component<'a>(objs: &'a [Value], kind_: &str, component: &str) -> &'a Value {
    let found: Vec<&Value> = objs
        .iter()
        .filter(|o| {
            kind(o) == kind_ && o["metadata"]["labels"]["app.kubernetes.io/component"] == component
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {kind_} for {component}, found {}",
        found.len()
    );
    found[0]
}

fn container(deploy: &Value) -> &Value {
    let cs = deploy["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    assert_eq!(cs.len(), 1, "one container per Deployment");
    &cs[0]
}

fn args(deploy: &Value) -> Vec<String> {
    container(deploy)["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string arg").to_string())
        .collect()
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .find_map(|a| a.strip_prefix(&format!("{name}=")))
}

/// Rules as a set of (apiGroup, resource, resourceName or "", verb): a
/// rule set is compared exactly, so one extra verb fails the test.
fn rules(role: &Value) -> BTreeSet<(String, String, String, String)> {
    let mut set = BTreeSet::new();
    let strs = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    };
    for r in role["rules"].as_array().expect("rules") {
        let names = strs(&r["resourceNames"]);
        let names = if names.is_empty() {
            vec![String::new()]
        } else {
            names
        };
        for g in strs(&r["apiGroups"]) {
            for res in strs(&r["resources"]) {
                for n in &names {
                    for v in strs(&r["verbs"]) {
                        set.insert((g.clone(), res.clone(), n.clone(), v));
                    }
                }
            }
        }
    }
    set
}

fn expand(spec: &[(&str, &str, &str, &[&str])]) -> BTreeSet<(String, String, String, String)> {
    spec.iter()
        .flat_map(|(g, r, n, verbs)| {
            verbs
                .iter()
                .map(move |v| (g.to_string(), r.to_string(), n.to_string(), v.to_string()))
        })
        .collect()
}

/// What dlite-controller does against the API, and nothing more.
fn controller_rules() -> BTreeSet<(String, String, String, String)> {
    expand(&[
        (
            "apps.dlite.dev",
            "deploymentlites",
            "",
            &["get", "list", "watch", "update", "patch"],
        ),
        (
            "apps.dlite.dev",
            "deploymentlites/status",
            "",
            &["update", "patch"],
        ),
        (
            "apps.dlite.dev",
            "deploymentlites/finalizers",
            "",
            &["update"],
        ),
        (
            "apps",
            "replicasets",
            "",
            &[
                "get", "list", "watch", "create", "update", "patch", "delete",
            ],
        ),
        ("", "pods", "", &["get", "list", "watch"]),
        ("events.k8s.io", "events", "", &["create", "patch"]),
    ])
}

/// What dlite-scheduler does against the API, and nothing more.
fn scheduler_rules() -> BTreeSet<(String, String, String, String)> {
    expand(&[
        // delete: preemption's evictions.
        ("", "pods", "", &["get", "list", "watch", "patch", "delete"]),
        ("", "pods/binding", "", &["create"]),
        ("", "pods/status", "", &["patch", "update"]),
        ("", "nodes", "", &["get", "list", "watch"]),
        ("", "namespaces", "", &["get", "list", "watch"]),
        (
            "policy",
            "poddisruptionbudgets",
            "",
            &["get", "list", "watch"],
        ),
        ("events.k8s.io", "events", "", &["create", "patch"]),
    ])
}

fn lease_rules(lease: &str) -> BTreeSet<(String, String, String, String)> {
    expand(&[
        ("coordination.k8s.io", "leases", "", &["create"]),
        (
            "coordination.k8s.io",
            "leases",
            lease,
            &["get", "update", "patch", "watch"],
        ),
    ])
}

fn chart_app_version() -> String {
    let chart: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repo_root().join(CHART).join("Chart.yaml")).unwrap(),
    )
    .unwrap();
    chart["appVersion"]
        .as_str()
        .expect("appVersion")
        .to_string()
}

// ---------------------------------------------------------------------------
// Tests that need no cluster

#[test]
fn chart_lints_clean() {
    let run = helm(false, &["lint", "--strict", CHART]).expect_ok();
    assert!(
        run.stdout.contains("1 chart(s) linted, 0 chart(s) failed"),
        "{}",
        run.stdout
    );
    // The high-availability values the README documents lint too.
    helm(
        false,
        &[
            "lint",
            "--strict",
            CHART,
            "--set",
            "controller.replicas=2,scheduler.replicas=2,controller.podDisruptionBudget.enabled=true,scheduler.podDisruptionBudget.enabled=true",
        ],
    )
    .expect_ok();
}

#[test]
fn chart_crd_and_deploy_manifest_are_current() {
    let generated = std::fs::read(repo_root().join("crd/deploymentlite.yaml")).unwrap();
    let copy = std::fs::read(repo_root().join(CHART).join(CHART_CRD)).unwrap();
    assert!(
        generated == copy,
        "charts/deploymentlite/{CHART_CRD} differs from crd/deploymentlite.yaml: run `make chart-crd`"
    );
    let policy = std::fs::read(repo_root().join("crd/deploymentlite-defaulting.yaml")).unwrap();
    let policy_copy = std::fs::read(
        repo_root()
            .join(CHART)
            .join("files/deploymentlite-defaulting.yaml"),
    )
    .unwrap();
    assert!(
        policy == policy_copy,
        "charts/deploymentlite/files/deploymentlite-defaulting.yaml differs from crd/deploymentlite-defaulting.yaml: run `make chart-crd`"
    );
    assert!(
        !repo_root().join(CHART).join("crds").exists(),
        "the chart has a crds/ directory again: Helm never upgrades what is there"
    );

    // deploy/deploymentlite.yaml is a restricted Namespace, then exactly
    // what `helm template` renders today (the CRD is one of the templates).
    let committed =
        std::fs::read_to_string(repo_root().join("deploy/deploymentlite.yaml")).unwrap();
    let rendered = helm(
        false,
        &[
            "template",
            "dlite",
            CHART,
            "--namespace",
            "dlite-system",
            "--api-versions",
            "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy",
        ],
    )
    .expect_ok()
    .stdout;
    let start = committed
        .find("---\n# Source: ")
        .expect("deploy/deploymentlite.yaml has helm's output");
    assert!(
        committed[start..] == rendered,
        "deploy/deploymentlite.yaml is stale: run `make deploy-manifests`"
    );
    let objs = docs(&committed);
    assert_eq!(kind(&objs[0]), "Namespace");
    assert_eq!(
        objs[0]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    // Helm's install order puts the CRD before the Deployments, whose
    // controller needs it.
    let position = |k: &str| objs.iter().position(|o| kind(o) == k);
    let crd = position("CustomResourceDefinition").expect("the CRD in deploy/deploymentlite.yaml");
    assert!(
        crd < position("Deployment").unwrap(),
        "the CRD comes after a Deployment"
    );
    // Rendered for Kubernetes 1.36 (`--api-versions`): the policy that
    // defaults templates on write is part of the install.
    for k in ["MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding"] {
        assert!(
            position(k).is_some(),
            "no {k} in deploy/deploymentlite.yaml"
        );
    }
}

#[test]
fn template_renders_every_object_with_the_expected_settings() {
    let objs = template(&[]);
    let expected: BTreeMap<String, usize> = [
        ("ServiceAccount", 2),
        // The controller's, the scheduler's, and the two aggregated into
        // the built-in admin/edit and view roles.
        ("ClusterRole", 4),
        ("ClusterRoleBinding", 2),
        ("Role", 2),
        ("RoleBinding", 2),
        ("Service", 2),
        ("Deployment", 2),
        ("CustomResourceDefinition", 1),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_string(), n))
    .collect();
    assert_eq!(kinds(&objs), expected, "the default rendering");
    for o in &objs {
        let labels = &o["metadata"]["labels"];
        assert_eq!(
            labels["app.kubernetes.io/instance"],
            "dlite",
            "{} {} lacks the instance label",
            kind(o),
            name(o)
        );
        assert_eq!(labels["app.kubernetes.io/managed-by"], "Helm");
        if kind(o) == "CustomResourceDefinition" {
            assert!(o["metadata"]["namespace"].is_null());
        } else if matches!(kind(o), "ClusterRole" | "ClusterRoleBinding") {
            assert!(
                name(o).starts_with("dlite-"),
                "cluster-scoped {} carries the release name",
                name(o)
            );
        } else {
            assert_eq!(
                o["metadata"]["namespace"],
                "dlite-system",
                "{} {}",
                kind(o),
                name(o)
            );
        }
    }

    let image = format!("ghcr.io/dlite-dev/deploymentlite:{}", chart_app_version());
    let mut commands = BTreeSet::new();
    for (comp, binary, requests, limits) in [
        (
            "controller",
            "dlite-controller",
            json!({"cpu": "50m", "memory": "64Mi"}),
            json!({"cpu": "500m", "memory": "256Mi"}),
        ),
        (
            "scheduler",
            "dlite-scheduler",
            json!({"cpu": "100m", "memory": "128Mi"}),
            json!({"cpu": "1", "memory": "512Mi"}),
        ),
    ] {
        let d = component(&objs, "Deployment", comp);
        let c = container(d);
        let pod = &d["spec"]["template"]["spec"];
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(
            c["image"],
            image.as_str(),
            "one image, tagged with appVersion"
        );
        assert_eq!(c["imagePullPolicy"], "IfNotPresent");
        assert_eq!(c["command"], json!([format!("/usr/local/bin/{binary}")]));
        commands.insert(c["command"].to_string());

        let a = args(d);
        assert_eq!(flag(&a, "--leader-elect"), Some("true"), "{a:?}");
        assert_eq!(
            flag(&a, "--leader-election-namespace"),
            Some("dlite-system")
        );
        assert_eq!(flag(&a, "--lease-duration-seconds"), Some("15"));
        assert_eq!(flag(&a, "--metrics-bind-address"), Some("0.0.0.0:8080"));
        assert_eq!(
            flag(&a, "--health-probe-bind-address"),
            Some("0.0.0.0:8081")
        );
        assert_eq!(flag(&a, "--log-format"), Some("text"));
        let lease = flag(&a, "--leader-election-id")
            .expect("--leader-election-id")
            .to_string();
        assert_eq!(lease, format!("dlite-deploymentlite-{comp}"));

        let env: BTreeMap<&str, &Value> = c["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["name"].as_str().unwrap(), e))
            .collect();
        assert_eq!(
            env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"],
            "metadata.name"
        );
        assert_eq!(
            env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"],
            "metadata.namespace"
        );

        let ports: BTreeMap<&str, &Value> = c["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["name"].as_str().unwrap(), &p["containerPort"]))
            .collect();
        assert_eq!(ports["metrics"], 8080);
        assert_eq!(ports["health"], 8081);
        assert_eq!(
            c["livenessProbe"]["httpGet"],
            json!({"path": "/healthz", "port": "health"})
        );
        assert_eq!(
            c["readinessProbe"]["httpGet"],
            json!({"path": "/readyz", "port": "health"})
        );

        // The restricted Pod Security Standard, at pod and container level.
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(pod["securityContext"]["runAsUser"], 65532);
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
        assert_eq!(c["resources"]["requests"], requests);
        assert_eq!(c["resources"]["limits"], limits);

        // RBAC: exactly the verbs the binary uses, bound to its own account.
        let sa = name(component(&objs, "ServiceAccount", comp)).to_string();
        assert_eq!(pod["serviceAccountName"], sa.as_str());
        let want = if comp == "controller" {
            controller_rules()
        } else {
            scheduler_rules()
        };
        assert_eq!(
            rules(component(&objs, "ClusterRole", comp)),
            want,
            "{comp} ClusterRole"
        );
        let crb = component(&objs, "ClusterRoleBinding", comp);
        assert_eq!(
            crb["roleRef"]["name"],
            name(component(&objs, "ClusterRole", comp))
        );
        assert_eq!(
            crb["subjects"],
            json!([{"kind": "ServiceAccount", "name": sa, "namespace": "dlite-system"}])
        );
        let role = component(&objs, "Role", comp);
        assert_eq!(
            rules(role),
            lease_rules(&lease),
            "{comp} leader-election Role: create, and the rest on its own Lease only"
        );
        let rb = component(&objs, "RoleBinding", comp);
        assert_eq!(
            rb["roleRef"],
            json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name(role)})
        );
        assert_eq!(
            rb["subjects"],
            json!([{"kind": "ServiceAccount", "name": sa, "namespace": "dlite-system"}])
        );

        // The metrics Service selects this component's pods only.
        let svc = component(&objs, "Service", comp);
        assert_eq!(
            svc["spec"]["ports"],
            json!([{"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}])
        );
        assert_eq!(svc["spec"]["selector"]["app.kubernetes.io/component"], comp);
        assert_eq!(
            svc["spec"]["selector"],
            d["spec"]["selector"]["matchLabels"]
        );
    }
    assert_eq!(
        commands.len(),
        2,
        "the two Deployments run different commands"
    );
    let sched = args(component(&objs, "Deployment", "scheduler"));
    assert_eq!(flag(&sched, "--scheduler-name"), Some("dlite-scheduler"));
    assert_eq!(
        flag(&sched, "--config"),
        None,
        "no --config unless scheduler.config is set"
    );
    assert_eq!(
        flag(
            &args(component(&objs, "Deployment", "controller")),
            "--namespace"
        ),
        None,
        "all namespaces by default"
    );

    // The CRD: the generated one's spec, unchanged, with the release's
    // labels and the keep annotation.
    let crd = component_of_kind(&objs, "CustomResourceDefinition");
    assert_eq!(name(crd), CRD_NAME);
    let generated =
        docs(&std::fs::read_to_string(repo_root().join("crd/deploymentlite.yaml")).unwrap());
    assert_eq!(generated.len(), 1);
    assert_eq!(crd["apiVersion"], generated[0]["apiVersion"]);
    assert!(
        crd["spec"] == generated[0]["spec"],
        "the rendered CRD's spec differs from crd/deploymentlite.yaml's"
    );
    assert_eq!(
        crd["metadata"]["annotations"],
        json!({"helm.sh/resource-policy": "keep"}),
        "crds.keep=true by default: helm uninstall must never delete the CRD"
    );
}

/// The one object of a kind.
/// The ClusterRoles the built-in roles aggregate: edit (and admin) may
/// write DeploymentLites, view may only read them; with
/// rbac.aggregateToDefaultRoles=false (or rbac.create=false) there are none.
#[test]
fn template_renders_the_aggregated_cluster_roles() {
    let objs = template(&[]);
    let aggregated = |label: &str| -> Vec<&Value> {
        objs.iter()
            .filter(|o| {
                kind(o) == "ClusterRole"
                    && o["metadata"]["labels"][format!("rbac.authorization.k8s.io/{label}")]
                        == "true"
            })
            .collect()
    };
    let (edit, admin, view) = (
        aggregated("aggregate-to-edit"),
        aggregated("aggregate-to-admin"),
        aggregated("aggregate-to-view"),
    );
    assert_eq!((edit.len(), admin.len(), view.len()), (1, 1, 1));
    assert_eq!(name(edit[0]), name(admin[0]), "one role for edit and admin");
    assert_eq!(name(edit[0]), "dlite-deploymentlite-edit");
    assert_eq!(name(view[0]), "dlite-deploymentlite-view");
    let g = "apps.dlite.dev";
    assert_eq!(
        rules(edit[0]),
        expand(&[
            (
                g,
                "deploymentlites",
                "",
                &[
                    "get",
                    "list",
                    "watch",
                    "create",
                    "update",
                    "patch",
                    "delete",
                    "deletecollection"
                ],
            ),
            (g, "deploymentlites/scale", "", &["get", "update", "patch"]),
            (g, "deploymentlites/status", "", &["get", "list", "watch"]),
        ]),
    );
    assert_eq!(
        rules(view[0]),
        expand(&[
            (g, "deploymentlites", "", &["get", "list", "watch"]),
            (g, "deploymentlites/status", "", &["get", "list", "watch"]),
            (g, "deploymentlites/scale", "", &["get", "list", "watch"]),
        ]),
    );
    for sets in [
        &["rbac.aggregateToDefaultRoles=false"][..],
        &["rbac.create=false"][..],
    ] {
        let objs = template(sets);
        assert!(
            !objs
                .iter()
                .any(|o| o["metadata"]["labels"].as_object().is_some_and(|l| l
                    .keys()
                    .any(|k| k.starts_with("rbac.authorization.k8s.io/aggregate-to")))),
            "{sets:?}"
        );
    }
}

/// The controller's client-side rate limit and its number of concurrent
/// syncs come from the values.
#[test]
fn template_passes_the_controllers_client_rate_limit() {
    let a = args(component(&template(&[]), "Deployment", "controller"));
    assert_eq!(flag(&a, "--kube-api-qps"), Some("50"), "{a:?}");
    assert_eq!(flag(&a, "--kube-api-burst"), Some("100"), "{a:?}");
    assert_eq!(
        flag(&a, "--concurrent-deployment-syncs"),
        Some("5"),
        "{a:?}"
    );
    let a = args(component(
        &template(&[
            "controller.kubeApiQps=7,controller.kubeApiBurst=9,controller.concurrentDeploymentSyncs=11",
        ]),
        "Deployment",
        "controller",
    ));
    assert_eq!(flag(&a, "--kube-api-qps"), Some("7"), "{a:?}");
    assert_eq!(flag(&a, "--kube-api-burst"), Some("9"), "{a:?}");
    assert_eq!(
        flag(&a, "--concurrent-deployment-syncs"),
        Some("11"),
        "{a:?}"
    );
}

fn component_of_kind<'a>(objs: &'a [Value], kind_: &str) -> &'a Value {
    let found: Vec<&Value> = objs.iter().filter(|o| kind(o) == kind_).collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {kind_}, found {}",
        found.len()
    );
    found[0]
}

#[test]
fn template_renders_the_crd_as_crds_values_say() {
    // crds.keep=false: the same CRD, without the annotation (so helm
    // uninstall deletes it).
    let objs = template(&["crds.keep=false"]);
    let crd = component_of_kind(&objs, "CustomResourceDefinition");
    assert_eq!(name(crd), CRD_NAME);
    assert!(
        crd["metadata"]["annotations"].is_null(),
        "{}",
        crd["metadata"]
    );
    // No crds values at all, as in a release of a chart version before them
    // upgraded with --reuse-values (Helm then applies no new defaults): the
    // defaults, a kept CRD, not a nil pointer error.
    let objs = template(&["crds=null"]);
    let crd = component_of_kind(&objs, "CustomResourceDefinition");
    assert_eq!(
        crd["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
    // crds.enabled=false: no CRD, everything else as before.
    let objs = template(&["crds.enabled=false"]);
    assert!(
        objs.iter().all(|o| kind(o) != "CustomResourceDefinition"),
        "crds.enabled=false still renders the CRD"
    );
    assert_eq!(kinds(&objs).get("Deployment"), Some(&2));
    // The schema knows both values and nothing else under crds.
    let run = helm(
        false,
        &["template", "dlite", CHART, "--set", "crds.install=true"],
    );
    assert!(
        !run.ok
            && run
                .stderr
                .contains("at '/crds': additional properties 'install' not allowed"),
        "{}",
        run.stderr
    );
}

#[test]
fn template_renders_the_optional_objects_when_asked() {
    let objs = template(&[
        "image.tag=v9.9.9",
        "image.pullPolicy=Never",
        "logFormat=json",
        "leaderElection.leaseDurationSeconds=30",
        "controller.replicas=2",
        "scheduler.replicas=2",
        "controller.podDisruptionBudget.enabled=true",
        "scheduler.podDisruptionBudget.enabled=true",
        "metrics.serviceMonitor.enabled=true",
        "controller.watchNamespace=apps",
        "controller.extraArgs[0]=--extra=1",
        "scheduler.schedulerName=batch-scheduler",
        "scheduler.config.parallelism=2",
        "scheduler.config.pluginWeights.ImageLocality=0",
        "controller.nodeSelector.role=infra",
        "scheduler.tolerations[0].key=dedicated",
        "scheduler.tolerations[0].operator=Exists",
    ]);
    let k = kinds(&objs);
    assert_eq!(k.get("PodDisruptionBudget"), Some(&2), "{k:?}");
    assert_eq!(k.get("ServiceMonitor"), Some(&1), "{k:?}");
    assert_eq!(k.get("ConfigMap"), Some(&1), "{k:?}");

    let ctl = component(&objs, "Deployment", "controller");
    let sch = component(&objs, "Deployment", "scheduler");
    for d in [ctl, sch] {
        assert_eq!(d["spec"]["replicas"], 2);
        assert_eq!(
            container(d)["image"],
            "ghcr.io/dlite-dev/deploymentlite:v9.9.9"
        );
        assert_eq!(container(d)["imagePullPolicy"], "Never");
        assert_eq!(flag(&args(d), "--log-format"), Some("json"));
        assert_eq!(flag(&args(d), "--lease-duration-seconds"), Some("30"));
    }
    let ca = args(ctl);
    assert_eq!(flag(&ca, "--namespace"), Some("apps"));
    assert_eq!(
        ca.last().map(String::as_str),
        Some("--extra=1"),
        "extra args come last"
    );
    assert_eq!(
        ctl["spec"]["template"]["spec"]["nodeSelector"],
        json!({"role": "infra"})
    );
    assert_eq!(
        sch["spec"]["template"]["spec"]["tolerations"],
        json!([{"key": "dedicated", "operator": "Exists"}])
    );

    let sa = args(sch);
    assert_eq!(flag(&sa, "--scheduler-name"), Some("batch-scheduler"));
    assert_eq!(
        flag(&sa, "--config"),
        Some("/etc/dlite-scheduler/config.yaml")
    );
    let cm = objs.iter().find(|o| kind(o) == "ConfigMap").unwrap();
    let file: Value = serde_saphyr::from_str(cm["data"]["config.yaml"].as_str().unwrap()).unwrap();
    assert_eq!(
        file,
        json!({"parallelism": 2, "pluginWeights": {"ImageLocality": 0}})
    );
    let pod = &sch["spec"]["template"]["spec"];
    assert_eq!(pod["volumes"][0]["configMap"]["name"], name(cm));
    assert_eq!(
        container(sch)["volumeMounts"][0]["mountPath"],
        "/etc/dlite-scheduler"
    );
    assert!(
        sch["spec"]["template"]["metadata"]["annotations"]["checksum/config"].is_string(),
        "a config change rolls the pods"
    );

    for comp in ["controller", "scheduler"] {
        let pdb = component(&objs, "PodDisruptionBudget", comp);
        assert_eq!(pdb["spec"]["maxUnavailable"], 1);
        assert_eq!(
            pdb["spec"]["selector"]["matchLabels"],
            component(&objs, "Deployment", comp)["spec"]["selector"]["matchLabels"]
        );
    }
    let sm = objs.iter().find(|o| kind(o) == "ServiceMonitor").unwrap();
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "metrics");
    let selector = sm["spec"]["selector"]["matchLabels"].as_object().unwrap();
    for comp in ["controller", "scheduler"] {
        let labels = &component(&objs, "Service", comp)["metadata"]["labels"];
        for (k, v) in selector {
            assert_eq!(
                &labels[k], v,
                "the ServiceMonitor selects the {comp} metrics Service"
            );
        }
    }

    // Components can be left out; their RBAC goes with them.
    let only_controller = template(&["scheduler.enabled=false"]);
    assert!(
        only_controller
            .iter()
            .all(|o| o["metadata"]["labels"]["app.kubernetes.io/component"] != "scheduler")
    );
    assert_eq!(kinds(&only_controller).get("Deployment"), Some(&1));
}

#[test]
fn schema_rejects_bad_values_naming_the_field() {
    let cases: &[(&str, &str)] = &[
        (
            "controller.replicas=-1",
            "at '/controller/replicas': minimum: got -1, want 0",
        ),
        (
            "scheduler.replicas=two",
            "at '/scheduler/replicas': got string, want integer",
        ),
        (
            "logFormat=xml",
            "at '/logFormat': value must be one of 'text', 'json'",
        ),
        (
            "image.pullPolicy=Sometimes",
            "at '/image/pullPolicy': value must be one of 'Always', 'IfNotPresent', 'Never'",
        ),
        (
            "leaderElection.leaseDurationSeconds=2",
            "at '/leaderElection/leaseDurationSeconds': minimum: got 2, want 3",
        ),
        (
            "controller.resources.limits.cpu=lots",
            "at '/controller/resources/limits/cpu'",
        ),
        (
            "controller.resources.request.cpu=1",
            "at '/controller/resources': additional properties 'request' not allowed",
        ),
        (
            "controller.replica=2",
            "at '/controller': additional properties 'replica' not allowed",
        ),
        (
            "scheduler.schedulerName=Not_Valid",
            "at '/scheduler/schedulerName'",
        ),
        (
            "scheduler.config.parallelism=0",
            "at '/scheduler/config/parallelism': minimum: got 0, want 1",
        ),
        (
            "scheduler.config.pluginWeights.Foo=1",
            "at '/scheduler/config/pluginWeights': additional properties 'Foo' not allowed",
        ),
        (
            "controller.extraArgs[0]=oops",
            "at '/controller/extraArgs/0'",
        ),
    ];
    for (set, message) in cases {
        let run = helm(false, &["template", "dlite", CHART, "--set", set]);
        assert!(!run.ok, "--set {set} was accepted");
        assert!(
            run.stderr
                .contains("values don't meet the specifications of the schema")
                && run.stderr.contains(message),
            "--set {set}: expected {message:?} in:\n{}",
            run.stderr
        );
    }
    // What the schema cannot say, the templates do.
    let run = helm(
        false,
        &[
            "template",
            "dlite",
            CHART,
            "--set",
            "controller.replicas=2,leaderElection.enabled=false",
        ],
    );
    assert!(!run.ok && run.stderr.contains("controller.replicas: Invalid value: 2: more than one replica needs leaderElection.enabled=true"), "{}", run.stderr);
    // Good values pass: 0 replicas (scaled down) and the documented HA setup.
    template(&["controller.replicas=0"]);
    template(&[
        "controller.replicas=2",
        "scheduler.replicas=2",
        "controller.resources.limits.cpu=1.5",
    ]);
}

/// One row of the chart README's values table: key, type, default (as
/// JSON, None when values.yaml leaves it unset).
#[derive(Debug, PartialEq)]
struct ValueRow {
    key: String,
    type_: String,
    default: Option<Value>,
}

/// A schema node with its `$ref`s into `definitions` followed.
fn resolve<'a>(schema: &'a Value, mut node: &'a Value) -> &'a Value {
    while let Some(r) = node["$ref"].as_str() {
        let name = r
            .strip_prefix("#/definitions/")
            .unwrap_or_else(|| panic!("values.schema.json: unsupported $ref {r}"));
        node = &schema["definitions"][name];
        assert!(
            !node.is_null(),
            "values.schema.json: $ref {r} names nothing"
        );
    }
    node
}

/// The type a reader is told: `type`, else the JSON type of an enum's or a
/// const's values, else the types of anyOf/oneOf joined with " or ".
fn schema_type(schema: &Value, node: &Value) -> String {
    let node = resolve(schema, node);
    let json_type = |v: &Value| match v {
        Value::String(_) => "string",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
        Value::Null => "null",
    };
    if let Some(t) = node["type"].as_str() {
        return t.to_string();
    }
    if let Some(first) = node["enum"].as_array().and_then(|e| e.first()) {
        return json_type(first).to_string();
    }
    if !node["const"].is_null() {
        return json_type(&node["const"]).to_string();
    }
    for alternatives in ["anyOf", "oneOf"] {
        if let Some(alts) = node[alternatives].as_array() {
            let mut types: Vec<String> = Vec::new();
            for t in alts.iter().map(|a| schema_type(schema, a)) {
                if !types.contains(&t) {
                    types.push(t);
                }
            }
            return types.join(" or ");
        }
    }
    panic!("values.schema.json: no type for {node}")
}

/// Every value the schema knows (sorted by key): a property is one
/// row unless its schema lists `properties` and values.yaml gives it a
/// non-empty object, in which case its properties are the rows.
fn expected_value_rows(schema: &Value, values: &Value) -> Vec<ValueRow> {
    fn walk(schema: &Value, node: &Value, values: &Value, prefix: &str, rows: &mut Vec<ValueRow>) {
        let node = resolve(schema, node);
        let props = node["properties"].as_object().expect("properties");
        for (key, child) in props {
            // `global` is Helm's, shared with subcharts; not a value of ours.
            if prefix.is_empty() && key == "global" {
                continue;
            }
            let path = format!("{prefix}{key}");
            let value = values.get(key);
            let child_resolved = resolve(schema, child);
            match value {
                Some(Value::Object(o))
                    if !o.is_empty() && child_resolved["properties"].is_object() =>
                {
                    walk(
                        schema,
                        child,
                        &Value::Object(o.clone()),
                        &format!("{path}."),
                        rows,
                    )
                }
                _ => rows.push(ValueRow {
                    key: path,
                    type_: schema_type(schema, child),
                    default: value.cloned(),
                }),
            }
        }
        // Nothing in values.yaml that the schema does not list.
        if let Some(o) = values.as_object() {
            for k in o.keys() {
                assert!(
                    props.contains_key(k),
                    "values.yaml has {prefix}{k}, which values.schema.json does not list"
                );
            }
        }
    }
    let mut rows = Vec::new();
    walk(schema, schema, values, "", &mut rows);
    rows
}

/// The rows of the README's values table (`| Key | Type | Default | Description |`).
fn readme_value_rows(readme: &str) -> Vec<(ValueRow, String)> {
    let mut lines = readme
        .lines()
        .skip_while(|l| !l.starts_with("| Key | Type | Default | Description |"));
    assert!(
        lines.next().is_some(),
        "charts/deploymentlite/README.md has no `| Key | Type | Default | Description |` table"
    );
    lines
        .skip(1) // the |---| line
        .take_while(|l| l.starts_with('|'))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
            assert_eq!(
                cells.len(),
                4,
                "README values row with {} cells: {line}",
                cells.len()
            );
            let unquote = |c: &str| {
                c.strip_prefix('`')
                    .and_then(|c| c.strip_suffix('`'))
                    .map(str::to_string)
            };
            let key = unquote(cells[0])
                .unwrap_or_else(|| panic!("README values row: key not in backquotes: {line}"));
            let default = match cells[2] {
                "(unset)" => None,
                cell => {
                    let json = unquote(cell).unwrap_or_else(|| {
                        panic!("README values row {key}: default is neither `JSON` nor (unset)")
                    });
                    Some(serde_json::from_str(&json).unwrap_or_else(|e| {
                        panic!("README values row {key}: default {json} is not JSON: {e}")
                    }))
                }
            };
            (
                ValueRow {
                    key,
                    type_: cells[1].to_string(),
                    default,
                },
                cells[3].to_string(),
            )
        })
        .collect()
}

#[test]
fn chart_readme_values_table_matches_the_schema_and_the_defaults() {
    let dir = repo_root().join(CHART);
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("values.schema.json")).unwrap())
            .unwrap();
    let values = docs(&std::fs::read_to_string(dir.join("values.yaml")).unwrap())
        .into_iter()
        .next()
        .expect("values.yaml");
    let want = expected_value_rows(&schema, &values);
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    let got = readme_value_rows(&readme);
    // On a mismatch, the table as it should be (descriptions aside).
    let table = || {
        want.iter()
            .map(|r| {
                let d = r
                    .default
                    .as_ref()
                    .map_or("(unset)".to_string(), |d| format!("`{d}`"));
                format!("| `{}` | {} | {d} | ... |", r.key, r.type_)
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    // Compared by key: the README follows values.yaml's order, serde_json
    // maps are sorted.
    let mut got_rows: Vec<&ValueRow> = got.iter().map(|(r, _)| r).collect();
    let mut want_rows: Vec<&ValueRow> = want.iter().collect();
    got_rows.sort_by(|a, b| a.key.cmp(&b.key));
    want_rows.sort_by(|a, b| a.key.cmp(&b.key));
    if got_rows != want_rows {
        let keys = |rows: &[&ValueRow]| rows.iter().map(|r| r.key.clone()).collect::<BTreeSet<_>>();
        let (g, w) = (keys(&got_rows), keys(&want_rows));
        let differing: Vec<String> = got_rows
            .iter()
            .filter_map(|r| {
                want_rows
                    .iter()
                    .find(|w| w.key == r.key)
                    .filter(|w| *w != r)
                    .map(|w| format!("{}: README says {r:?}, want {w:?}", r.key))
            })
            .collect();
        panic!(
            "charts/deploymentlite/README.md's values table is out of date.\nonly in README: {:?}\nmissing from README: {:?}\ndiffering: {differing:#?}\nthe rows should read:\n{}",
            g.difference(&w).collect::<Vec<_>>(),
            w.difference(&g).collect::<Vec<_>>(),
            table()
        );
    }
    for (row, description) in &got {
        assert!(
            !description.is_empty() && description != "...",
            "README values row {} has no description",
            row.key
        );
    }
    // A control: the check sees a default that drifts.
    let mut drifted = values.clone();
    drifted["controller"]["replicas"] = json!(3);
    assert_ne!(expected_value_rows(&schema, &drifted), want);
}

#[test]
fn chart_metadata_states_kube_version_home_sources_and_artifact_hub_annotations() {
    let chart = docs(&std::fs::read_to_string(repo_root().join(CHART).join("Chart.yaml")).unwrap())
        .into_iter()
        .next()
        .unwrap();
    assert_eq!(chart["kubeVersion"], ">=1.29.0-0");
    let home = chart["home"].as_str().expect("home");
    assert!(home.starts_with("https://"), "home {home}");
    assert!(
        chart["icon"]
            .as_str()
            .is_some_and(|i| i.starts_with("https://")),
        "icon {}",
        chart["icon"]
    );
    let sources = chart["sources"].as_array().expect("sources");
    assert!(
        sources.iter().any(|s| s == home),
        "sources {sources:?} should include home"
    );
    let icon = chart["icon"].as_str().unwrap();
    let icon_in_repo = icon
        .rsplit_once("/main/")
        .map(|(_, p)| p)
        .expect("icon served from the main branch");
    assert!(
        repo_root().join(icon_in_repo).is_file(),
        "the icon {icon} is not in the repository ({icon_in_repo})"
    );

    // Artifact Hub annotations: YAML inside strings; each must parse.
    let ann = &chart["annotations"];
    let cargo = std::fs::read_to_string(repo_root().join("Cargo.toml")).unwrap();
    let license = ann["artifacthub.io/license"]
        .as_str()
        .expect("artifacthub.io/license");
    assert!(
        cargo.contains(&format!("license = \"{license}\"")),
        "the chart's license {license} is not Cargo.toml's"
    );
    assert!(
        repo_root().join("LICENSE").is_file(),
        "Cargo.toml names a license; LICENSE holds its text"
    );
    let list = |k: &str| -> Vec<Value> {
        let text = ann[k].as_str().unwrap_or_else(|| panic!("annotation {k}"));
        let v = docs(text)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("annotation {k} is empty"));
        v.as_array()
            .unwrap_or_else(|| panic!("annotation {k} is not a YAML list: {text}"))
            .clone()
    };
    for l in list("artifacthub.io/links") {
        assert!(
            l["name"].is_string() && l["url"].as_str().is_some_and(|u| u.starts_with("https://")),
            "{l}"
        );
    }
    let images = list("artifacthub.io/images");
    assert_eq!(
        images[0]["image"],
        format!("ghcr.io/dlite-dev/deploymentlite:{}", chart_app_version()),
        "the image Artifact Hub lists is the one the chart runs"
    );
    let crds = list("artifacthub.io/crds");
    let crd = docs(&std::fs::read_to_string(repo_root().join("crd/deploymentlite.yaml")).unwrap())
        .remove(0);
    assert_eq!(crds.len(), 1);
    assert_eq!(crds[0]["name"], crd["metadata"]["name"]);
    assert_eq!(crds[0]["kind"], crd["spec"]["names"]["kind"]);
    assert_eq!(crds[0]["version"], crd["spec"]["versions"][0]["name"]);
    let examples = list("artifacthub.io/crdsExamples");
    assert_eq!(
        examples[0]["apiVersion"],
        format!(
            "{}/{}",
            crd["spec"]["group"].as_str().unwrap(),
            crd["spec"]["versions"][0]["name"].as_str().unwrap()
        )
    );
    // The example is a valid DeploymentLite (the types' own checks).
    let example: DeploymentLite =
        serde_json::from_value(examples[0].clone()).expect("crdsExamples[0] is a DeploymentLite");
    assert_eq!(example.spec.replicas, 2);
}

#[test]
fn kube_version_refuses_kubernetes_older_than_1_29() {
    let run = helm(
        false,
        &["template", "dlite", CHART, "--kube-version", "1.28.0"],
    );
    assert!(
        !run.ok,
        "helm template --kube-version 1.28.0 accepted the chart"
    );
    assert!(
        run.stderr.contains(
            "chart requires kubeVersion: >=1.29.0-0 which is incompatible with Kubernetes v1.28.0"
        ),
        "{}",
        run.stderr
    );
    for ok in ["1.29.0", "v1.30.0-rc.1", "1.36.3"] {
        helm(false, &["template", "dlite", CHART, "--kube-version", ok]).expect_ok();
    }
    // Without --kube-version, helm template assumes the Kubernetes version
    // it was built for: 1.20 for a helm built without helm's ldflags, which
    // this chart refuses. The helm under test knows better.
    let version = helm(false, &["version", "--template", "{{ .Version }}"]).expect_ok();
    assert!(
        version.stdout.starts_with("v3."),
        "helm version says {:?}",
        version.stdout
    );
    assert!(
        version.stdout.matches('.').count() == 2,
        "helm {:?} was built without its version ldflags",
        version.stdout
    );
}

// ---------------------------------------------------------------------------
// Against the cluster

/// A fresh namespace that enforces (and warns and audits) the restricted
/// Pod Security Standard.
async fn restricted_namespace(prefix: &str) -> TestNamespace {
    let ns = TestNamespace::new(prefix).await;
    let labels = json!({"metadata": {"labels": {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
        "pod-security.kubernetes.io/warn": "restricted",
        "pod-security.kubernetes.io/audit": "restricted",
    }}});
    Api::<Namespace>::all(ns.client.clone())
        .patch(&ns.name, &PatchParams::default(), &Patch::Merge(&labels))
        .await
        .expect("labelling the namespace restricted");
    ns
}

/// The scheduler name a test's release uses, so no two releases (nor the
/// other tests' schedulers) ever claim the same pods.
fn scheduler_name(release: &str) -> String {
    format!("{release}-sched")
}

/// `--set` values that keep a release to itself: its controller watches
/// only its own namespace and its scheduler has its own name (on a cluster
/// whose kubelets really run the image, such as kind in CI, the installed
/// binaries must not touch other tests' objects). $DLITE_CHART_IMAGE
/// (repository:tag) and $DLITE_CHART_PULL_POLICY replace the image, for a
/// cluster that has the image built from this checkout loaded.
fn isolated(ns: &TestNamespace, release: &str) -> Vec<String> {
    let mut sets = vec![
        "--set".to_string(),
        format!(
            "crds.enabled=false,controller.watchNamespace={},scheduler.schedulerName={}",
            ns.name,
            scheduler_name(release)
        ),
    ];
    if let Some(image) = std::env::var("DLITE_CHART_IMAGE")
        .ok()
        .filter(|i| !i.is_empty())
    {
        let (repo, tag) = image
            .rsplit_once(':')
            .filter(|(_, t)| !t.contains('/'))
            .unwrap_or((&image, "latest"));
        sets.extend([
            "--set".to_string(),
            format!("image.repository={repo},image.tag={tag}"),
        ]);
    }
    if let Some(policy) = std::env::var("DLITE_CHART_PULL_POLICY")
        .ok()
        .filter(|p| !p.is_empty())
    {
        sets.extend(["--set".to_string(), format!("image.pullPolicy={policy}")]);
    }
    sets
}

/// `helm install` of the chart as release `release` (named after the test's
/// namespace), isolated; returns its output. With crds.enabled=false: the
/// tests install the CRD themselves (server-side apply), and one CRD can
/// belong to one release only, while these releases run side by side.
fn install(ns: &TestNamespace, release: &str, extra: &[&str]) -> Run {
    let sets = isolated(ns, release);
    let mut args = vec!["install", release, CHART, "--namespace", &ns.name];
    args.extend(sets.iter().map(String::as_str));
    args.extend_from_slice(extra);
    helm(true, &args).expect_ok()
}

/// Deployments Available with every replica, their ReplicaSets without a
/// FailedCreate (what a Pod Security rejection looks like), and the pods
/// there, Running, as restricted as the chart says.
async fn assert_running(ns: &TestNamespace, release: &str, replicas: i32) {
    let sel = format!("app.kubernetes.io/instance={release}");
    let deploys: Api<Deployment> = ns.api();
    wait_for(
        "both Deployments Available with every replica",
        Duration::from_secs(90),
        || async {
            let list = deploys
                .list(&ListParams::default().labels(&sel))
                .await
                .map_err(|e| e.to_string())?;
            let seen: Vec<String> = list
                .items
                .iter()
                .map(|d| {
                    let st = d.status.clone().unwrap_or_default();
                    let available = st
                        .conditions
                        .unwrap_or_default()
                        .iter()
                        .any(|c| c.type_ == "Available" && c.status == "True");
                    format!(
                        "{} available={available} {}/{replicas}",
                        d.name_any(),
                        st.available_replicas.unwrap_or(0)
                    )
                })
                .collect();
            let done = list.items.len() == 2
                && list.items.iter().all(|d| {
                    let st = d.status.clone().unwrap_or_default();
                    st.available_replicas == Some(replicas)
                        && st
                            .conditions
                            .unwrap_or_default()
                            .iter()
                            .any(|c| c.type_ == "Available" && c.status == "True")
                });
            if done { Ok(()) } else { Err(seen.join(", ")) }
        },
    )
    .await;

    let rss: Api<ReplicaSet> = ns.api();
    let rs_names: BTreeSet<String> = rss
        .list(&ListParams::default().labels(&sel))
        .await
        .unwrap()
        .items
        .iter()
        .map(|r| r.name_any())
        .collect();
    assert!(rs_names.len() >= 2, "{rs_names:?}");
    let events: Api<Event> = ns.api();
    let failed: Vec<String> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|e| e.reason.as_deref() == Some("FailedCreate"))
        .map(|e| {
            format!(
                "{}: {}",
                e.involved_object.name.clone().unwrap_or_default(),
                e.message.clone().unwrap_or_default()
            )
        })
        .collect();
    assert!(failed.is_empty(), "pods were refused: {failed:?}");

    let pods: Api<Pod> = ns.api();
    let list = pods
        .list(&ListParams::default().labels(&sel))
        .await
        .unwrap();
    assert_eq!(
        list.items.len(),
        2 * replicas as usize,
        "pods: {:?}",
        list.items.iter().map(|p| p.name_any()).collect::<Vec<_>>()
    );
    for p in &list.items {
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(
            p.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Running"),
            "pod {}",
            p.name_any()
        );
        let psc = spec.security_context.as_ref().expect("pod securityContext");
        assert_eq!(
            (psc.run_as_non_root, psc.run_as_user),
            (Some(true), Some(65532))
        );
        let csc = spec.containers[0]
            .security_context
            .as_ref()
            .expect("container securityContext");
        assert_eq!(csc.allow_privilege_escalation, Some(false));
        assert_eq!(csc.read_only_root_filesystem, Some(true));
    }
}

/// Objects of the release, by kind, that the API still has: listed by the
/// instance label, namespaced and cluster-scoped.
async fn labelled_leftovers(client: &Client, ns: &str, release: &str) -> Vec<String> {
    let lp = ListParams::default().labels(&format!("app.kubernetes.io/instance={release}"));
    let mut left = Vec::new();
    macro_rules! namespaced {
        ($($k:ty),*) => {$(
            for o in Api::<$k>::namespaced(client.clone(), ns).list(&lp).await.unwrap() {
                left.push(format!("{} {}", stringify!($k), o.name_any()));
            }
        )*};
    }
    macro_rules! cluster {
        ($($k:ty),*) => {$(
            for o in Api::<$k>::all(client.clone()).list(&lp).await.unwrap() {
                left.push(format!("{} {}", stringify!($k), o.name_any()));
            }
        )*};
    }
    namespaced!(
        Deployment,
        ReplicaSet,
        Pod,
        ServiceAccount,
        Service,
        Role,
        RoleBinding,
        ConfigMap,
        PodDisruptionBudget
    );
    cluster!(ClusterRole, ClusterRoleBinding);
    left
}

/// Whether the object a manifest names still exists (by kind and name).
async fn exists(client: &Client, ns: &str, obj: &Value) -> bool {
    let n = name(obj);
    let found = match kind(obj) {
        "Deployment" => Api::<Deployment>::namespaced(client.clone(), ns)
            .get_opt(n)
            .await
            .map(|o| o.is_some()),
        "ServiceAccount" => Api::<ServiceAccount>::namespaced(client.clone(), ns)
            .get_opt(n)
            .await
            .map(|o| o.is_some()),
        "Service" => Api::<Service>::namespaced(client.clone(), ns)
            .get_opt(n)
            .await
            .map(|o| o.is_some()),
        "Role" => Api::<Role>::namespaced(client.clone(), ns)
            .get_opt(n)
            .await
            .map(|o| o.is_some()),
        "RoleBinding" => Api::<RoleBinding>::namespaced(client.clone(), ns)
            .get_opt(n)
            .await
            .map(|o| o.is_some()),
        "ConfigMap" => Api::<ConfigMap>::namespaced(client.clone(), ns)
            .get_opt(n)
            .await
            .map(|o| o.is_some()),
        "PodDisruptionBudget" => Api::<PodDisruptionBudget>::namespaced(client.clone(), ns)
            .get_opt(n)
            .await
            .map(|o| o.is_some()),
        "ClusterRole" => Api::<ClusterRole>::all(client.clone())
            .get_opt(n)
            .await
            .map(|o| o.is_some()),
        "ClusterRoleBinding" => Api::<ClusterRoleBinding>::all(client.clone())
            .get_opt(n)
            .await
            .map(|o| o.is_some()),
        other => panic!("the release has a {other} this test does not know how to look up"),
    };
    found.expect("looking up an object of the release")
}

#[tokio::test]
async fn installs_under_restricted_pss_upgrades_to_ha_and_uninstalls_cleanly() {
    let client = support::client().await;
    support::dl::install_crd(&client).await;
    let ns = restricted_namespace("t-chart").await;
    let release = ns.name.clone();

    let run = install(&ns, &release, &["--wait", "--timeout", "120s"]);
    let out = format!("{}{}", run.stdout, run.stderr);
    assert!(
        !out.contains("PodSecurity"),
        "the API server warned about Pod Security:\n{out}"
    );
    assert_running(&ns, &release, 1).await;

    // The documented high-availability setup, as an upgrade: two replicas
    // each (one leader, one standby) with PodDisruptionBudgets.
    let run = helm(
        true,
        &[
            "upgrade", &release, CHART, "--namespace", &ns.name, "--reuse-values", "--wait", "--timeout", "120s",
            "--set", "controller.replicas=2,scheduler.replicas=2",
            "--set", "controller.podDisruptionBudget.enabled=true,scheduler.podDisruptionBudget.enabled=true",
        ],
    )
    .expect_ok();
    assert!(
        !format!("{}{}", run.stdout, run.stderr).contains("PodSecurity"),
        "{}",
        run.stderr
    );
    assert_running(&ns, &release, 2).await;
    let pdbs: Api<PodDisruptionBudget> = ns.api();
    assert_eq!(
        pdbs.list(&ListParams::default()).await.unwrap().items.len(),
        2
    );

    // Everything the release made, by name from its manifest.
    let manifest = docs(
        &helm(
            true,
            &["get", "manifest", &release, "--namespace", &ns.name],
        )
        .expect_ok()
        .stdout,
    );
    let mut made: Vec<&Value> = manifest.iter().collect();
    made.sort_by_key(|o| (kind(o).to_string(), name(o).to_string()));
    let kinds_made: BTreeSet<&str> = made.iter().map(|o| kind(o)).collect();
    assert_eq!(
        kinds_made,
        BTreeSet::from([
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount"
        ])
    );
    for o in &made {
        assert!(
            exists(&client, &ns.name, o).await,
            "{} {} was not created",
            kind(o),
            name(o)
        );
    }

    helm(
        true,
        &[
            "uninstall",
            &release,
            "--namespace",
            &ns.name,
            "--wait",
            "--timeout",
            "120s",
        ],
    )
    .expect_ok();
    for o in &made {
        assert!(
            !exists(&client, &ns.name, o).await,
            "{} {} is still there after helm uninstall",
            kind(o),
            name(o)
        );
    }
    // Pods go by garbage collection and kwok's deletion stage: slower when
    // other tests load the cluster.
    wait_for(
        "nothing labelled with the release left",
        Duration::from_secs(120),
        || async {
            let left = labelled_leftovers(&client, &ns.name, &release).await;
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("{left:?}"))
            }
        },
    )
    .await;
    let status = helm(true, &["status", &release, "--namespace", &ns.name]);
    assert!(
        !status.ok && status.stderr.contains("not found"),
        "{}",
        status.stderr
    );
    let crd = Api::<CustomResourceDefinition>::all(client.clone())
        .get_opt(CRD_NAME)
        .await
        .unwrap();
    assert!(
        crd.is_some_and(|c| c.metadata.deletion_timestamp.is_none()),
        "helm uninstall must keep the CRD"
    );

    ns.cleanup().await;
}

#[tokio::test]
async fn a_pod_security_violation_would_be_seen() {
    // The control for the test above: the same checks catch a chart whose
    // pods the restricted namespace refuses.
    let client = support::client().await;
    support::dl::install_crd(&client).await;
    let ns = restricted_namespace("t-chart-pss").await;
    let release = ns.name.clone();
    let run = install(
        &ns,
        &release,
        &[
            "--set",
            "containerSecurityContext.allowPrivilegeEscalation=true",
            "--set",
            "scheduler.enabled=false",
        ],
    );
    assert!(
        run.stderr.contains("would violate PodSecurity")
            && run.stderr.contains("allowPrivilegeEscalation != false"),
        "the API server did not warn: {}",
        run.stderr
    );
    ns.wait_for_event("FailedCreate", Duration::from_secs(60), |e| {
        e.message
            .as_deref()
            .is_some_and(|m| m.contains("violates PodSecurity"))
    })
    .await;
    let pods: Api<Pod> = ns.api();
    assert!(
        pods.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "no pod was admitted"
    );
    helm(
        true,
        &["uninstall", &release, "--namespace", &ns.name, "--wait"],
    )
    .expect_ok();
    ns.cleanup().await;
}

// ---------------------------------------------------------------------------
// RBAC: what the chart's accounts may and may not do, and the real binaries
// running with them.

async fn may(
    client: &Client,
    user: &str,
    ns: Option<&str>,
    group: &str,
    resource: &str,
    verb: &str,
    name: Option<&str>,
) -> bool {
    let (resource, sub) = match resource.split_once('/') {
        Some((r, s)) => (r, Some(s)),
        None => (resource, None),
    };
    let sar: SubjectAccessReview = serde_json::from_value(json!({
        "spec": {
            "user": user,
            "groups": ["system:serviceaccounts", "system:authenticated"],
            "resourceAttributes": {
                "namespace": ns, "group": group, "resource": resource, "subresource": sub, "verb": verb, "name": name,
            }
        }
    }))
    .unwrap();
    let review = Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &sar)
        .await
        .expect("SubjectAccessReview");
    review.status.is_some_and(|s| s.allowed)
}

/// A kubeconfig for the cluster under test that authenticates with a fresh
/// token of ServiceAccount `sa` (what the pod would mount).
async fn service_account_kubeconfig(client: &Client, ns: &str, sa: &str, path: &Path) {
    let tr: TokenRequest =
        serde_json::from_value(json!({"spec": {"audiences": [], "expirationSeconds": 3600}}))
            .unwrap();
    let tr: TokenRequest = Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create_subresource("token", sa, &PostParams::default(), &tr)
        .await
        .expect("a token for the ServiceAccount");
    let token = tr.status.expect("token").token;

    let source = kubeconfig_path();
    let kc: Value = serde_saphyr::from_str(&std::fs::read_to_string(&source).unwrap()).unwrap();
    let current = kc["current-context"].as_str().expect("current-context");
    let ctx = kc["contexts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == current)
        .expect("the current context");
    let cluster_name = ctx["context"]["cluster"].as_str().unwrap();
    let mut cluster = kc["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == cluster_name)
        .expect("its cluster")
        .clone();
    if let Some(ca) = cluster["cluster"]["certificate-authority"]
        .as_str()
        .map(PathBuf::from)
        .filter(|p| p.is_relative())
    {
        let abs = source.parent().unwrap().join(ca);
        cluster["cluster"]["certificate-authority"] = Value::String(abs.display().to_string());
    }
    let out = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [serde_json::to_value(&cluster).unwrap()],
        "users": [{"name": sa, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": cluster_name, "user": sa}}],
        "current-context": "sa",
    });
    std::fs::write(path, serde_saphyr::to_string(&out).unwrap()).unwrap();
}

/// A binary of this crate run as a pod of the chart would run it: with the
/// ServiceAccount's kubeconfig, POD_NAME and POD_NAMESPACE; killed when
/// dropped. Log in target/test-logs/.
struct AsPod {
    child: Child,
    log: PathBuf,
}

impl AsPod {
    fn start(bin: &str, kubeconfig: &Path, pod_name: &str, pod_ns: &str, args: &[String]) -> AsPod {
        let dir = repo_root().join("target/test-logs");
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join(format!("{pod_name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(bin)
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAME", pod_name)
            .env("POD_NAMESPACE", pod_ns)
            .env("RUST_LOG", "info,dlite=debug")
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {bin}: {e}"));
        AsPod { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process must still run and must not have been refused anything.
    fn assert_healthy(&mut self) {
        let log = self.log();
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!(
                "{} exited ({status}); log {}:\n{log}",
                self.log.display(),
                self.log.display()
            );
        }
        // An API refusal reads "... is forbidden: User ..." / reason "Forbidden", code 403.
        assert!(
            !log.to_lowercase().contains("forbidden") && !log.contains("code: 403"),
            "{} was refused something by the API server; log:\n{log}",
            self.log.display()
        );
    }
}

impl Drop for AsPod {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The chart's args for a component, with the endpoints moved to loopback
/// ports (the tests share one machine; 0 lets the OS pick) and without the
/// release's own --namespace.
fn local_args(deploy: &Value, metrics_port: u16, health_port: u16) -> Vec<String> {
    args(deploy)
        .into_iter()
        .filter(|a| !a.starts_with("--namespace="))
        .map(|a| {
            if a.starts_with("--metrics-bind-address=") {
                format!("--metrics-bind-address=127.0.0.1:{metrics_port}")
            } else if a.starts_with("--health-probe-bind-address=") {
                format!("--health-probe-bind-address=127.0.0.1:{health_port}")
            } else {
                a
            }
        })
        .collect()
}

async fn lease_holder(client: &Client, ns: &str, lease: &str) -> Result<String, String> {
    let l = Api::<Lease>::namespaced(client.clone(), ns)
        .get_opt(lease)
        .await
        .map_err(|e| e.to_string())?;
    l.and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .ok_or_else(|| format!("lease {ns}/{lease} not held"))
}

#[tokio::test]
async fn rbac_is_exactly_enough_for_the_real_binaries() {
    let client = support::client().await;
    support::dl::install_crd(&client).await;
    let ns = restricted_namespace("t-chart-rbac").await;
    let apps = TestNamespace::new("t-chart-apps").await;
    let release = ns.name.clone();
    let sched_name = scheduler_name(&release);
    // No pods of the release: the binaries run here instead (on a cluster
    // that runs the image, pods would hold the Leases first).
    install(
        &ns,
        &release,
        &[
            "--set",
            "controller.replicas=0,scheduler.replicas=0",
            "--wait",
            "--timeout",
            "120s",
        ],
    );
    let manifest = docs(
        &helm(
            true,
            &["get", "manifest", &release, "--namespace", &ns.name],
        )
        .expect_ok()
        .stdout,
    );
    let ctl_deploy = component(&manifest, "Deployment", "controller");
    let sch_deploy = component(&manifest, "Deployment", "scheduler");
    let ctl_sa = name(component(&manifest, "ServiceAccount", "controller")).to_string();
    let sch_sa = name(component(&manifest, "ServiceAccount", "scheduler")).to_string();
    let ctl_lease = flag(&args(ctl_deploy), "--leader-election-id")
        .unwrap()
        .to_string();
    let sch_lease = flag(&args(sch_deploy), "--leader-election-id")
        .unwrap()
        .to_string();

    // What the API server's authorizer says, allowed and denied.
    let ctl = format!("system:serviceaccount:{}:{ctl_sa}", ns.name);
    let sch = format!("system:serviceaccount:{}:{sch_sa}", ns.name);
    let (home, other) = (Some(ns.name.as_str()), Some(apps.name.as_str()));
    // (user, namespace, group, resource, verb, name, allowed?)
    type AccessCheck<'a> = (
        &'a str,
        Option<&'a str>,
        &'a str,
        &'a str,
        &'a str,
        Option<&'a str>,
        bool,
    );
    let checks: Vec<AccessCheck<'_>> = vec![
        (
            &ctl,
            other,
            "apps.dlite.dev",
            "deploymentlites",
            "watch",
            None,
            true,
        ),
        (
            &ctl,
            other,
            "apps.dlite.dev",
            "deploymentlites/status",
            "update",
            None,
            true,
        ),
        (
            &ctl,
            other,
            "apps.dlite.dev",
            "deploymentlites/finalizers",
            "update",
            None,
            true,
        ),
        (&ctl, other, "apps", "replicasets", "delete", None, true),
        (&ctl, other, "", "pods", "list", None, true),
        (&ctl, other, "events.k8s.io", "events", "create", None, true),
        (
            &ctl,
            home,
            "coordination.k8s.io",
            "leases",
            "create",
            None,
            true,
        ),
        (
            &ctl,
            home,
            "coordination.k8s.io",
            "leases",
            "update",
            Some(&ctl_lease),
            true,
        ),
        (
            &ctl,
            home,
            "coordination.k8s.io",
            "leases",
            "get",
            Some(&ctl_lease),
            true,
        ),
        (
            &ctl,
            other,
            "apps.dlite.dev",
            "deploymentlites",
            "delete",
            None,
            false,
        ),
        (
            &ctl,
            other,
            "apps.dlite.dev",
            "deploymentlites",
            "create",
            None,
            false,
        ),
        (&ctl, other, "", "pods", "create", None, false),
        (&ctl, other, "", "pods", "delete", None, false),
        (&ctl, other, "", "secrets", "get", None, false),
        (&ctl, other, "apps", "deployments", "get", None, false),
        (
            &ctl,
            home,
            "coordination.k8s.io",
            "leases",
            "update",
            Some(&sch_lease),
            false,
        ),
        (
            &ctl,
            home,
            "coordination.k8s.io",
            "leases",
            "delete",
            Some(&ctl_lease),
            false,
        ),
        (
            &ctl,
            home,
            "coordination.k8s.io",
            "leases",
            "list",
            None,
            false,
        ),
        (
            &ctl,
            other,
            "coordination.k8s.io",
            "leases",
            "create",
            None,
            false,
        ),
        (
            &ctl,
            other,
            "coordination.k8s.io",
            "leases",
            "update",
            Some(&ctl_lease),
            false,
        ),
        (&sch, other, "", "pods", "watch", None, true),
        (&sch, other, "", "pods", "patch", None, true),
        (&sch, other, "", "pods/binding", "create", None, true),
        (&sch, other, "", "pods/status", "patch", None, true),
        (&sch, None, "", "nodes", "list", None, true),
        (&sch, None, "", "namespaces", "watch", None, true),
        (&sch, other, "events.k8s.io", "events", "patch", None, true),
        (
            &sch,
            home,
            "coordination.k8s.io",
            "leases",
            "patch",
            Some(&sch_lease),
            true,
        ),
        (&sch, other, "", "pods", "create", None, false),
        // Preemption evicts.
        (&sch, other, "", "pods", "delete", None, true),
        (
            &sch,
            None,
            "policy",
            "poddisruptionbudgets",
            "watch",
            None,
            true,
        ),
        (&sch, other, "", "pods/eviction", "create", None, false),
        (&sch, None, "", "nodes", "patch", None, false),
        (&sch, other, "", "secrets", "list", None, false),
        (
            &sch,
            other,
            "apps.dlite.dev",
            "deploymentlites",
            "get",
            None,
            false,
        ),
        (
            &sch,
            home,
            "coordination.k8s.io",
            "leases",
            "update",
            Some(&ctl_lease),
            false,
        ),
    ];
    let mut wrong = Vec::new();
    for (user, ns_, group, resource, verb, n, want) in &checks {
        let got = may(&client, user, *ns_, group, resource, verb, *n).await;
        if got != *want {
            wrong.push(format!(
                "{user} {verb} {group}/{resource} {n:?} in {ns_:?}: allowed={got}, want {want}"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "RBAC differs from least privilege:\n{}",
        wrong.join("\n")
    );

    // dlite-controller with the controller's token and the chart's own
    // command line (scoped to the apps namespace): it must win its Lease,
    // roll a DeploymentLite out and record events, never refused.
    let logs = repo_root().join("target/test-logs");
    std::fs::create_dir_all(&logs).unwrap();
    let ctl_kc = logs.join(format!("{}-controller.kubeconfig", ns.name));
    service_account_kubeconfig(&client, &ns.name, &ctl_sa, &ctl_kc).await;
    let (metrics_port, health_port) = (support::dl::free_port(), support::dl::free_port());
    let mut ctl_args = local_args(ctl_deploy, metrics_port, health_port);
    ctl_args.push(format!("--namespace={}", apps.name));
    let identity = format!("{}-controller-pod", ns.name);
    let mut controller = AsPod::start(
        env!("CARGO_BIN_EXE_dlite-controller"),
        &ctl_kc,
        &identity,
        &ns.name,
        &ctl_args,
    );
    let dls: Api<DeploymentLite> = apps.api();
    dls.create(
        &PostParams::default(),
        &support::dl::manifest("web", 2, "nginx:1.27", json!({})),
    )
    .await
    .unwrap();
    wait_for(
        "the controller to hold its Lease",
        Duration::from_secs(30),
        || async {
            let holder = lease_holder(&client, &ns.name, &ctl_lease).await?;
            if holder == identity {
                Ok(())
            } else {
                Err(format!("held by {holder}"))
            }
        },
    )
    .await;
    support::dl::wait_complete(&dls, "web", Duration::from_secs(60)).await;
    // The endpoints the chart's probes and metrics Service point at.
    wait_for(
        "/readyz 200 and dlite_controller_leader 1 on /metrics",
        Duration::from_secs(30),
        || async {
            let (ready, body) = support::http_get(health_port, "/readyz")?;
            let (healthy, _) = support::http_get(health_port, "/healthz")?;
            let (_, metrics) = support::http_get(metrics_port, "/metrics")?;
            if ready == 200 && healthy == 200 && metrics.contains("\ndlite_controller_leader 1\n") {
                Ok(())
            } else {
                Err(format!(
                    "readyz {ready} ({body:?}), healthz {healthy}, metrics {metrics:?}"
                ))
            }
        },
    )
    .await;
    let events: Api<k8s_openapi::api::events::v1::Event> = apps.api();
    wait_for(
        "a ScalingReplicaSet event from the controller",
        Duration::from_secs(30),
        || async {
            let list = events
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            list.items
                .iter()
                .find(|e| e.reason.as_deref() == Some("ScalingReplicaSet"))
                .map(|_| ())
                .ok_or("none yet".to_string())
        },
    )
    .await;
    controller.assert_healthy();

    // dlite-scheduler with the scheduler's token: binds a pod that names it
    // and reports one that fits nowhere (pods/status, events). It gets the
    // chart's full command line once it accepts the shared runtime flags;
    // until then the flags it has.
    let help = Command::new(env!("CARGO_BIN_EXE_dlite-scheduler"))
        .arg("--help")
        .output()
        .unwrap();
    let has_runtime_flags = String::from_utf8_lossy(&help.stdout).contains("--leader-elect");
    let (sch_metrics, sch_health) = (support::dl::free_port(), support::dl::free_port());
    let sch_args = if has_runtime_flags {
        local_args(sch_deploy, sch_metrics, sch_health)
    } else {
        eprintln!(
            "note: dlite-scheduler has no --leader-elect yet; running it with --scheduler-name only"
        );
        vec![format!("--scheduler-name={sched_name}")]
    };
    assert_eq!(
        flag(&args(sch_deploy), "--scheduler-name"),
        Some(sched_name.as_str())
    );
    let sch_kc = logs.join(format!("{}-scheduler.kubeconfig", ns.name));
    service_account_kubeconfig(&client, &ns.name, &sch_sa, &sch_kc).await;
    let sch_identity = format!("{}-scheduler-pod", ns.name);
    let mut scheduler = AsPod::start(
        env!("CARGO_BIN_EXE_dlite-scheduler"),
        &sch_kc,
        &sch_identity,
        &ns.name,
        &sch_args,
    );
    let pods: Api<Pod> = apps.api();
    for (pod, selector) in [
        ("fits", json!({})),
        ("fits-nowhere", json!({"dlite.dev/no-such-node": "true"})),
    ] {
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": pod},
            "spec": {"schedulerName": sched_name, "nodeSelector": selector, "containers": [{"name": "c", "image": "nginx:1.27"}]}
        }))
        .unwrap();
        pods.create(&PostParams::default(), &p).await.unwrap();
    }
    wait_for(
        "the pod bound by dlite-scheduler",
        Duration::from_secs(60),
        || async {
            let p = pods.get("fits").await.map_err(|e| e.to_string())?;
            p.spec
                .and_then(|s| s.node_name)
                .map(|_| ())
                .ok_or("not bound".to_string())
        },
    )
    .await;
    wait_for(
        "PodScheduled=False/Unschedulable on the pod that fits nowhere",
        Duration::from_secs(60),
        || async {
            let p = pods.get("fits-nowhere").await.map_err(|e| e.to_string())?;
            let conds = p.status.and_then(|s| s.conditions).unwrap_or_default();
            conds
                .iter()
                .find(|c| {
                    c.type_ == "PodScheduled"
                        && c.status == "False"
                        && c.reason.as_deref() == Some("Unschedulable")
                })
                .map(|_| ())
                .ok_or(format!("{conds:?}"))
        },
    )
    .await;
    if has_runtime_flags {
        wait_for(
            "the scheduler to hold its Lease",
            Duration::from_secs(30),
            || async {
                let holder = lease_holder(&client, &ns.name, &sch_lease).await?;
                if holder == sch_identity {
                    Ok(())
                } else {
                    Err(format!("held by {holder}"))
                }
            },
        )
        .await;
        wait_for(
            "the scheduler's /readyz and /healthz 200, /metrics served",
            Duration::from_secs(30),
            || async {
                let (ready, body) = support::http_get(sch_health, "/readyz")?;
                let (healthy, _) = support::http_get(sch_health, "/healthz")?;
                let (metrics, _) = support::http_get(sch_metrics, "/metrics")?;
                if (ready, healthy, metrics) == (200, 200, 200) {
                    Ok(())
                } else {
                    Err(format!(
                        "readyz {ready} ({body:?}), healthz {healthy}, metrics {metrics}"
                    ))
                }
            },
        )
        .await;
    }
    scheduler.assert_healthy();
    controller.assert_healthy();
    drop(scheduler);
    drop(controller);

    helm(
        true,
        &["uninstall", &release, "--namespace", &ns.name, "--wait"],
    )
    .expect_ok();
    let _ = std::fs::remove_file(&ctl_kc);
    let _ = std::fs::remove_file(&sch_kc);
    apps.cleanup().await;
    ns.cleanup().await;
}

// ---------------------------------------------------------------------------
// The CRD as part of the release: upgraded with it, kept on uninstall.

/// Copies the chart to `dest`, with its CRD rewritten by `edit` (a parsed
/// files/deploymentlite-crd.yaml). Everything else is the chart as it is.
fn chart_copy(dest: &Path, edit: impl FnOnce(&mut Value)) {
    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy_dir(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), &target).unwrap();
            }
        }
    }
    let _ = std::fs::remove_dir_all(dest);
    copy_dir(&repo_root().join(CHART), dest);
    let file = dest.join(CHART_CRD);
    let mut crd = docs(&std::fs::read_to_string(&file).unwrap()).remove(0);
    edit(&mut crd);
    std::fs::write(&file, serde_saphyr::to_string(&crd).unwrap()).unwrap();
    // The defaulting policy travels with the CRD: it follows the CRD's group
    // (in its name and its match rule), so the copy's policy is its own too.
    let group = crd["spec"]["group"].as_str().unwrap();
    let policy = dest.join("files/deploymentlite-defaulting.yaml");
    let text = std::fs::read_to_string(&policy).unwrap();
    assert!(text.contains("apps.dlite.dev"), "{text}");
    std::fs::write(&policy, text.replace("apps.dlite.dev", group)).unwrap();
}

/// The CRD under a group of the test's own, so installing, changing and
/// uninstalling it never touches the CRD the other tests run against:
/// group <ns>.test.dlite.dev, and no short names or categories (`kubectl
/// get dl` and `kubectl get all` in other tests must not see two kinds).
fn own_group(crd: &mut Value, group: &str) {
    let plural = crd["spec"]["names"]["plural"].as_str().unwrap().to_string();
    crd["metadata"]["name"] = json!(format!("{plural}.{group}"));
    crd["spec"]["group"] = json!(group);
    let names = crd["spec"]["names"].as_object_mut().unwrap();
    names.remove("shortNames");
    names.remove("categories");
}

/// The properties of spec in the CRD's (first version's) schema.
fn spec_properties(crd: &Value) -> &Value {
    &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
}

async fn crd_established(
    crds: &Api<CustomResourceDefinition>,
    name: &str,
) -> Result<CustomResourceDefinition, String> {
    let crd = crds
        .get_opt(name)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("not created yet")?;
    // A CRD just created has no conditions yet: that is "not yet", not an error.
    let conditions = crd
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    if conditions
        .iter()
        .any(|c| c.type_ == "Established" && c.status == "True")
    {
        Ok(crd)
    } else {
        Err(format!(
            "conditions {:?}",
            conditions
                .iter()
                .map(|c| format!("{}={}", c.type_, c.status))
                .collect::<Vec<_>>()
        ))
    }
}

#[tokio::test]
async fn upgrade_updates_the_crd_and_uninstall_keeps_it() {
    use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind};
    let client = support::client().await;
    let ns = TestNamespace::new("t-chart-crd").await;
    let release = ns.name.clone();
    let group = format!("{}.test.dlite.dev", ns.name);
    let crd_name = format!("deploymentlites.{group}");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let work = repo_root().join("target/test-logs").join(&ns.name);
    let (old_chart, new_chart) = (work.join("chart-old"), work.join("chart-new"));
    // The release as an earlier version would have shipped it: a CRD that
    // lacks spec.autoRollback. The new one is the chart as it is now.
    chart_copy(&old_chart, |crd| {
        own_group(crd, &group);
        let props = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
            .as_object_mut()
            .unwrap();
        assert!(
            props.remove("autoRollback").is_some(),
            "the CRD has no spec.autoRollback to leave out"
        );
    });
    chart_copy(&new_chart, |crd| own_group(crd, &group));
    // The release has the CRD only: no pods, so it is quick anywhere.
    let only_crd = "controller.enabled=false,scheduler.enabled=false";
    let old = old_chart.display().to_string();
    let new = new_chart.display().to_string();

    helm(
        true,
        &[
            "install",
            &release,
            &old,
            "--namespace",
            &ns.name,
            "--set",
            only_crd,
            "--wait",
            "--timeout",
            "60s",
        ],
    )
    .expect_ok();
    let served = wait_for(
        "the old CRD to be Established",
        Duration::from_secs(60),
        || crd_established(&crds, &crd_name),
    )
    .await;
    let served = serde_json::to_value(&served).unwrap();
    assert!(
        spec_properties(&served)["autoRollback"].is_null(),
        "the old CRD serves autoRollback"
    );
    assert_eq!(
        served["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );

    // Under the old schema the API server prunes the field.
    let gvk = GroupVersionKind::gvk(&group, "v1", "DeploymentLite");
    let dls: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns.name,
        &ApiResource::from_gvk_with_plural(&gvk, "deploymentlites"),
    );
    let mut obj = serde_json::to_value(support::dl::manifest(
        "web",
        1,
        "nginx:1.27",
        json!({"autoRollback": true}),
    ))
    .unwrap();
    obj["apiVersion"] = json!(format!("{group}/v1"));
    let obj: DynamicObject = serde_json::from_value(obj).unwrap();
    let created = wait_for(
        "a DeploymentLite of the old CRD created",
        Duration::from_secs(30),
        || async {
            // Right after Established the new group's REST mapping can still be
            // settling: retry until the create goes through.
            dls.create(&PostParams::default(), &obj)
                .await
                .map_err(|e| e.to_string())
        },
    )
    .await;
    assert!(
        created.data["spec"]["autoRollback"].is_null(),
        "the old CRD kept spec.autoRollback: {}",
        created.data["spec"]
    );

    // helm upgrade to the chart as it is: the CRD now has autoRollback, and
    // the API server keeps the field.
    helm(
        true,
        &[
            "upgrade",
            &release,
            &new,
            "--namespace",
            &ns.name,
            "--reuse-values",
            "--wait",
            "--timeout",
            "60s",
        ],
    )
    .expect_ok();
    let served = serde_json::to_value(crds.get(&crd_name).await.unwrap()).unwrap();
    assert_eq!(
        spec_properties(&served)["autoRollback"]["type"],
        "boolean",
        "helm upgrade did not update the CRD"
    );
    wait_for(
        "spec.autoRollback kept by the API server after the upgrade",
        Duration::from_secs(30),
        || async {
            let patch = json!({"spec": {"autoRollback": true}});
            let got = dls
                .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|e| e.to_string())?;
            match &got.data["spec"]["autoRollback"] {
                Value::Bool(true) => Ok(()),
                other => Err(format!("spec.autoRollback is {other}")),
            }
        },
    )
    .await;

    // helm uninstall keeps the CRD (helm.sh/resource-policy: keep), and with
    // it the DeploymentLite.
    let run = helm(
        true,
        &["uninstall", &release, "--namespace", &ns.name, "--wait"],
    )
    .expect_ok();
    assert!(
        run.stdout.contains("kept due to the resource policy")
            || run.stderr.contains("kept due to the resource policy"),
        "{}{}",
        run.stdout,
        run.stderr
    );
    // Deletion would start at once: watch the CRD for two seconds and
    // require it present and not being deleted at every look.
    let watched = std::time::Instant::now();
    while watched.elapsed() < Duration::from_secs(2) {
        let kept = crds.get_opt(&crd_name).await.unwrap();
        assert!(
            kept.as_ref()
                .is_some_and(|c| c.metadata.deletion_timestamp.is_none()),
            "helm uninstall deleted the CRD: {:?}",
            kept.map(|c| c.metadata)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        dls.get("web").await.unwrap().data["spec"]["autoRollback"],
        true
    );

    // The control: with crds.keep=false the same uninstall deletes the CRD,
    // so the annotation is what kept it.
    helm(
        true,
        &[
            "install",
            &release,
            &new,
            "--namespace",
            &ns.name,
            "--set",
            only_crd,
            "--set",
            "crds.keep=false",
        ],
    )
    .expect_ok();
    helm(
        true,
        &["uninstall", &release, "--namespace", &ns.name, "--wait"],
    )
    .expect_ok();
    wait_for(
        "the CRD deleted by helm uninstall with crds.keep=false",
        Duration::from_secs(60),
        || async {
            match crds.get_opt(&crd_name).await.map_err(|e| e.to_string())? {
                None => Ok(()),
                Some(c) => Err(format!(
                    "still there, deletionTimestamp {:?}",
                    c.metadata.deletion_timestamp
                )),
            }
        },
    )
    .await;

    let _ = crds.delete(&crd_name, &DeleteParams::default()).await;
    let _ = std::fs::remove_dir_all(&work);
    ns.cleanup().await;
}

//! Write-time defaulting of a DeploymentLite's pod template, done by the API
//! server itself through a MutatingAdmissionPolicy (admissionregistration
//! v1, GA in Kubernetes 1.36): no webhook to serve, no certificates.
//!
//! Why it is needed. The API server defaults a Deployment's template when
//! the Deployment is written; a custom resource's template is stored as
//! written and defaulted only when the controller creates a ReplicaSet (the
//! server-side dry run of `controller::defaulting`). The two agree whenever a
//! default is a constant, which is every template default in
//! `pkg/apis/core/v1/defaults.go` but one: a container's `imagePullPolicy`
//! depends on its image (`Always` for `:latest` or no tag, else
//! `IfNotPresent`). A Deployment keeps the policy its first image gave it
//! across a later `set image`; without this policy a DeploymentLite's new
//! ReplicaSet would be defaulted from the new image instead.
//!
//! The same policy turns a quantity written as a YAML number with a
//! fraction (`cpu: 0.5`, `cpu: 1e-1`) into a string before the schema sees
//! it. A Deployment accepts those (its Quantity decodes JSON numbers); a
//! structural CRD schema can only say int-or-string, so a double would be
//! refused. Mutating admission runs before schema validation, so the number
//! arrives as the string the user meant and the API server canonicalises it
//! in the ReplicaSet as it does for a Deployment. Where quantities sit is
//! not a list kept by hand: [`quantity_paths`] finds every Quantity in
//! `PodTemplateSpec`'s schema as k8s-openapi generates it.

use k8s_openapi::api::admissionregistration::v1::{
    JSONPatch, MatchResources, MutatingAdmissionPolicy, MutatingAdmissionPolicyBinding,
    MutatingAdmissionPolicyBindingSpec, MutatingAdmissionPolicySpec, Mutation,
    NamedRuleWithOperations,
};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The policy's and its binding's name.
pub const DEFAULTING_POLICY: &str = "deploymentlites.apps.dlite.dev-defaulting";

/// The reference grammar of github.com/distribution/reference (which the
/// kubelet's `ParseImageName` uses through `ParseNormalizedNamed`): an
/// optional domain with port, lowercase path components, an optional tag and
/// an optional digest of an algorithm the API server knows. An image that
/// does not parse gets `IfNotPresent`, as upstream ignores the parse error
/// and finds no tag.
const IMAGE_REFERENCE: &str = r"^(?:(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*)*(?::[\w][\w.-]{0,127})?(?:@(?:sha256:[a-f0-9]{64}|sha384:[a-f0-9]{96}|sha512:[a-f0-9]{128}))?$";

/// One step of a path into the pod template's JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Field(String),
    /// Every item of a list.
    Item,
    /// Every value of a map.
    Value,
}

/// Every place a `resource.Quantity` can sit in a pod template, read from
/// the schema k8s-openapi generates for `PodTemplateSpec` (with shared
/// definitions kept as `$ref`s, so a Quantity is recognised by its name).
pub fn quantity_paths() -> Vec<Vec<Step>> {
    let settings = schemars::generate::SchemaSettings::draft2020_12();
    let root = settings
        .into_generator()
        .into_root_schema_for::<PodTemplateSpec>();
    let root = root.as_value();
    let defs = root.get("$defs").cloned().unwrap_or_default();
    let mut out = Vec::new();
    walk(root, &defs, &mut Vec::new(), &mut Vec::new(), &mut out);
    out
}

const QUANTITY_DEF: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";

fn walk(
    schema: &serde_json::Value,
    defs: &serde_json::Value,
    path: &mut Vec<Step>,
    seen: &mut Vec<String>,
    out: &mut Vec<Vec<Step>>,
) {
    if let Some(reference) = schema.get("$ref").and_then(|r| r.as_str()) {
        let name = reference.rsplit('/').next().unwrap_or_default();
        if name == QUANTITY_DEF {
            out.push(path.clone());
            return;
        }
        // A definition already open on this path would recurse forever
        // (none does in a pod template today; JSONSchemaProps would).
        if seen.iter().any(|s| s == name) {
            return;
        }
        seen.push(name.to_string());
        if let Some(def) = defs.get(name) {
            walk(def, defs, path, seen, out);
        }
        seen.pop();
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        for sub in schema
            .get(key)
            .and_then(|s| s.as_array())
            .into_iter()
            .flatten()
        {
            walk(sub, defs, path, seen, out);
        }
    }
    if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
        for (name, sub) in props {
            path.push(Step::Field(name.clone()));
            walk(sub, defs, path, seen, out);
            path.pop();
        }
    }
    if let Some(items) = schema.get("items").filter(|i| i.is_object()) {
        path.push(Step::Item);
        walk(items, defs, path, seen, out);
        path.pop();
    }
    if let Some(values) = schema.get("additionalProperties").filter(|v| v.is_object()) {
        path.push(Step::Value);
        walk(values, defs, path, seen, out);
        path.pop();
    }
}

/// `pointer + "/" + segment` as a CEL string expression, folding literals
/// (`"/spec" + "/template"` is written `"/spec/template"`).
fn join(pointer: &str, segment: &str) -> String {
    match (pointer.strip_suffix('"'), segment.strip_prefix('"')) {
        (Some(head), Some(tail)) => format!("{head}{tail}"),
        _ => format!("{pointer} + {segment}"),
    }
}

/// A CEL expression (over `expr`, whose JSON pointer is the CEL string
/// expression `pointer`) that yields the JSON patches turning every double
/// at `rest` into its string form.
fn doubles_to_strings(expr: &str, pointer: &str, rest: &[Step], depth: usize) -> String {
    match rest.split_first() {
        None => format!(
            "type({expr}) == double ? [JSONPatch{{op: \"replace\", path: {pointer}, value: string({expr})}}] : []"
        ),
        Some((Step::Field(name), rest)) => {
            // Pod template field names are plain identifiers: no CEL
            // keyword escaping and no JSON pointer escaping needed.
            debug_assert!(name.chars().all(|c| c.is_ascii_alphanumeric()));
            let inner = doubles_to_strings(
                &format!("{expr}.{name}"),
                &join(pointer, &format!("\"/{name}\"")),
                rest,
                depth,
            );
            format!("has({expr}.{name}) ? ({inner}) : []")
        }
        Some((step, rest)) => {
            let (key, var) = (format!("k{depth}"), format!("v{depth}"));
            let segment = match step {
                Step::Item => format!("\"/\" + string({key})"),
                _ => format!("\"/\" + jsonpatch.escapeKey({key})"),
            };
            let inner = doubles_to_strings(&var, &join(pointer, &segment), rest, depth + 1);
            format!("{expr}.transformList({key}, {var}, {inner}).flatten()")
        }
    }
}

/// JSON patches for every quantity of the template written as a number with
/// a fraction.
fn quantities_expression() -> String {
    quantity_paths()
        .iter()
        .map(|path| {
            let full: Vec<Step> = [Step::Field("spec".into()), Step::Field("template".into())]
                .into_iter()
                .chain(path.iter().cloned())
                .collect();
            doubles_to_strings("object", "\"\"", &full, 0)
        })
        .map(|e| format!("({e})"))
        .collect::<Vec<_>>()
        .join("\n+ ")
}

/// JSON patches adding `imagePullPolicy` where a container has none, chosen
/// as `SetDefaults_Container` chooses it.
fn pull_policy_expression() -> String {
    let list = |field: &str| {
        format!(
            "(has(object.spec) && has(object.spec.template) && has(object.spec.template.spec) \
&& has(object.spec.template.spec.{field}) ? \
object.spec.template.spec.{field}.transformList(i, c, !has(c.imagePullPolicy), \
JSONPatch{{op: \"add\", path: \"/spec/template/spec/{field}/\" + string(i) + \"/imagePullPolicy\", \
value: has(c.image) && c.image.matches(r'{IMAGE_REFERENCE}') && !c.image.matches('^[a-f0-9]{{64}}$') \
&& (c.image.split('@')[0].endsWith(':latest') \
|| (!c.image.split('@')[0].matches(':[^/]*$') && !c.image.contains('@'))) \
? 'Always' : 'IfNotPresent'}}) : [])"
        )
    };
    format!("{}\n+ {}", list("containers"), list("initContainers"))
}

/// The MutatingAdmissionPolicy and its binding (to every namespace).
pub fn defaulting_policy() -> (MutatingAdmissionPolicy, MutatingAdmissionPolicyBinding) {
    let meta = || ObjectMeta {
        name: Some(DEFAULTING_POLICY.into()),
        ..Default::default()
    };
    let mutation = |expression: String| Mutation {
        patch_type: "JSONPatch".into(),
        json_patch: Some(JSONPatch {
            expression: Some(expression),
        }),
        ..Default::default()
    };
    let policy = MutatingAdmissionPolicy {
        metadata: meta(),
        spec: Some(MutatingAdmissionPolicySpec {
            match_constraints: Some(MatchResources {
                resource_rules: Some(vec![NamedRuleWithOperations {
                    api_groups: Some(vec!["apps.dlite.dev".into()]),
                    api_versions: Some(vec!["v1".into()]),
                    operations: Some(vec!["CREATE".into(), "UPDATE".into()]),
                    resources: Some(vec!["deploymentlites".into()]),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            // A policy that cannot run refuses the write rather than store
            // a template the controller would default differently.
            failure_policy: Some("Fail".into()),
            reinvocation_policy: Some("IfNeeded".into()),
            mutations: Some(vec![
                mutation(pull_policy_expression()),
                mutation(quantities_expression()),
            ]),
            ..Default::default()
        }),
    };
    let binding = MutatingAdmissionPolicyBinding {
        metadata: meta(),
        spec: Some(MutatingAdmissionPolicyBindingSpec {
            policy_name: Some(DEFAULTING_POLICY.into()),
            ..Default::default()
        }),
    };
    (policy, binding)
}

/// The policy and its binding as two YAML documents, as committed under
/// `crd/`.
pub fn defaulting_policy_yaml() -> String {
    let (policy, binding) = defaulting_policy();
    let mut options = serde_saphyr::SerializerOptions::default();
    options.folded_wrap_chars = usize::MAX;
    let doc = |v: serde_json::Value| {
        serde_saphyr::to_string_with_options(&v, options.clone()).expect("the policy serializes")
    };
    format!(
        "# Generated from src/api/admission.rs by `make crd`. Do not edit.\n\
# Defaults a DeploymentLite's pod template when it is written, as the API\n\
# server does for a Deployment (needs Kubernetes 1.36 or later).\n{}---\n{}",
        doc(with_kind(&policy, "MutatingAdmissionPolicy")),
        doc(with_kind(&binding, "MutatingAdmissionPolicyBinding")),
    )
}

fn with_kind(v: &impl serde::Serialize, kind: &str) -> serde_json::Value {
    let mut v = serde_json::to_value(v).expect("the policy serializes");
    let map = v.as_object_mut().expect("an object");
    let rest = std::mem::take(map);
    map.insert(
        "apiVersion".into(),
        "admissionregistration.k8s.io/v1".into(),
    );
    map.insert("kind".into(), kind.into());
    map.extend(rest);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(path: &[Step]) -> String {
        path.iter()
            .map(|s| match s {
                Step::Field(f) => format!(".{f}"),
                Step::Item => "[*]".into(),
                Step::Value => "{*}".into(),
            })
            .collect()
    }

    /// The paths found in the schema include the ones users write; a
    /// k8s-openapi whose schema hid them (inlining Quantity, say) fails here
    /// rather than silently leaving numbers unconverted.
    #[test]
    fn quantity_paths_cover_resources_overhead_and_volumes() {
        let paths: Vec<String> = quantity_paths().iter().map(|p| show(p)).collect();
        for want in [
            ".spec.containers[*].resources.requests{*}",
            ".spec.containers[*].resources.limits{*}",
            ".spec.initContainers[*].resources.requests{*}",
            ".spec.overhead{*}",
            ".spec.resources.limits{*}",
            ".spec.volumes[*].emptyDir.sizeLimit",
            ".spec.volumes[*].ephemeral.volumeClaimTemplate.spec.resources.requests{*}",
        ] {
            assert!(
                paths.contains(&want.to_string()),
                "{want} missing from {paths:#?}"
            );
        }
        // Nothing outside the pod spec, and no IntOrString (ports) mistaken
        // for a quantity.
        assert!(paths.iter().all(|p| p.starts_with(".spec.")), "{paths:#?}");
        assert!(!paths.iter().any(|p| p.ends_with(".port")), "{paths:#?}");
    }

    #[test]
    fn a_map_of_quantities_becomes_nested_transform_lists() {
        let path = [
            Step::Field("spec".into()),
            Step::Item,
            Step::Field("r".into()),
            Step::Value,
        ];
        assert_eq!(
            doubles_to_strings("o", "\"\"", &path, 0),
            "has(o.spec) ? (o.spec.transformList(k0, v0, has(v0.r) ? \
(v0.r.transformList(k1, v1, type(v1) == double ? [JSONPatch{op: \"replace\", \
path: \"/spec/\" + string(k0) + \"/r/\" + jsonpatch.escapeKey(k1), \
value: string(v1)}] : []).flatten()) : []).flatten()) : []"
        );
    }

    #[test]
    fn committed_policy_matches_the_code() {
        let committed = include_str!("../../crd/deploymentlite-defaulting.yaml");
        assert!(
            committed == defaulting_policy_yaml(),
            "crd/deploymentlite-defaulting.yaml is stale: run `make crd` and commit the result"
        );
    }
}

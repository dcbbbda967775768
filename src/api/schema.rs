//! Schema pieces that derive macros cannot express: CEL rule texts and the
//! int-or-string / condition-list shapes the API server needs.

use schemars::{Schema, SchemaGenerator, json_schema};

/// An int-or-percent must be a non-negative integer or `N%`.
pub const INT_OR_PERCENT: &str = "type(self) == int ? self >= 0 : self.matches('^[0-9]+%$')";
pub const INT_OR_PERCENT_MESSAGE: &str =
    "must be a non-negative integer or a percentage such as '25%' (a number followed by '%')";

/// maxSurge and maxUnavailable may not both be zero (as a number or as 0%).
pub const NOT_BOTH_ZERO: &str = "!(has(self.maxSurge) && has(self.maxUnavailable) && \
(self.maxSurge == 0 || self.maxSurge == '0%') && (self.maxUnavailable == 0 || self.maxUnavailable == '0%'))";

/// Every term of the selector must select the template's labels, as
/// apps/v1 validation requires.
pub const SELECTOR_MATCHES_TEMPLATE: &str = "\
(!has(self.selector.matchLabels) || self.selector.matchLabels.all(k, \
  has(self.template.metadata) && has(self.template.metadata.labels) && \
  k in self.template.metadata.labels && self.template.metadata.labels[k] == self.selector.matchLabels[k])) && \
(!has(self.selector.matchExpressions) || self.selector.matchExpressions.all(e, \
  e.operator == 'In' ? (has(self.template.metadata.labels) && e.key in self.template.metadata.labels && has(e.values) && self.template.metadata.labels[e.key] in e.values) : \
  e.operator == 'NotIn' ? (!has(self.template.metadata.labels) || !(e.key in self.template.metadata.labels) || !has(e.values) || !(self.template.metadata.labels[e.key] in e.values)) : \
  e.operator == 'Exists' ? (has(self.template.metadata.labels) && e.key in self.template.metadata.labels) : \
  (!has(self.template.metadata.labels) || !(e.key in self.template.metadata.labels))))";

pub fn int_or_string(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "x-kubernetes-int-or-string": true
    })
}

/// Conditions are a list keyed by `type`, as in apps/v1, so server-side
/// apply merges them per type.
pub fn conditions(g: &mut SchemaGenerator) -> Schema {
    let mut item = g.subschema_for::<k8s_openapi::api::apps::v1::DeploymentCondition>();
    // The generator may hand back a $ref; conditions are inlined instead.
    if item.get("$ref").is_some() {
        item =
            <k8s_openapi::api::apps::v1::DeploymentCondition as schemars::JsonSchema>::json_schema(
                g,
            );
    }
    json_schema!({
        "type": "array",
        "items": item,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"]
    })
}

/// Upper bounds on the fields the CEL rules walk. The API server estimates
/// each rule's worst-case cost from the schema and refuses a CRD whose
/// rules could run unbounded; these limits are far above what a real
/// selector or template uses (label keys are at most 317 characters,
/// values at most 63).
pub fn bound_for_cel(spec_props: &mut serde_json::Value) {
    let sel = &mut spec_props["selector"]["properties"];
    sel["matchLabels"]["maxProperties"] = 64.into();
    sel["matchLabels"]["additionalProperties"]["maxLength"] = 63.into();
    let expr = &mut sel["matchExpressions"];
    expr["maxItems"] = 32.into();
    expr["items"]["properties"]["key"]["maxLength"] = 317.into();
    expr["items"]["properties"]["operator"]["maxLength"] = 16.into();
    expr["items"]["properties"]["values"]["maxItems"] = 64.into();
    expr["items"]["properties"]["values"]["items"]["maxLength"] = 63.into();
    let labels = &mut spec_props["template"]["properties"]["metadata"]["properties"]["labels"];
    labels["maxProperties"] = 256.into();
    labels["additionalProperties"]["maxLength"] = 63.into();
    let ru = &mut spec_props["strategy"]["properties"]["rollingUpdate"]["properties"];
    ru["maxSurge"]["maxLength"] = 16.into();
    ru["maxUnavailable"]["maxLength"] = 16.into();
}

/// apps/v1 refuses a template container without an image
/// (`spec.template.spec.containers[0].image: Required value`); a Pod's
/// Container type leaves it optional (for ephemeral containers and
/// higher-level tools), so the CRD adds the requirement.
pub fn require_images(spec_props: &mut serde_json::Value) {
    let pod = &mut spec_props["template"]["properties"]["spec"]["properties"];
    for list in ["containers", "initContainers"] {
        let item = &mut pod[list]["items"];
        item["properties"]["image"]["minLength"] = 1.into();
        let required = item["required"].as_array_mut();
        match required {
            Some(r) => r.push("image".into()),
            None => item["required"] = serde_json::json!(["image"]),
        }
    }
}

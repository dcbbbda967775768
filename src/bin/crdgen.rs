//! Prints the DeploymentLite CRD generated from the Rust types; `make crd`
//! writes it to crd/deploymentlite.yaml.
fn main() {
    print!("{}", dlite::api::crd_yaml());
}

//! Prints the DeploymentLite CRD generated from the Rust types, or with
//! `defaulting-policy` the MutatingAdmissionPolicy that defaults its pod
//! template on write; `make crd` writes both under crd/.
fn main() {
    match std::env::args().nth(1).as_deref() {
        None => print!("{}", dlite::api::crd_yaml()),
        Some("defaulting-policy") => print!("{}", dlite::api::admission::defaulting_policy_yaml()),
        Some(other) => {
            eprintln!("crdgen: unknown argument {other:?} (expected none or `defaulting-policy`)");
            std::process::exit(2);
        }
    }
}

//! kubectl-dlite (being written; see src/cli).
fn main() {
    eprintln!("kubectl-dlite: not written yet");
    std::process::exit(2);
}

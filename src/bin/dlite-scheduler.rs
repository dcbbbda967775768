//! dlite-scheduler (being wired up; see src/scheduler).
fn main() {
    eprintln!("dlite-scheduler: not wired up yet");
    std::process::exit(2);
}

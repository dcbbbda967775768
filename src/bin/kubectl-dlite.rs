//! kubectl-dlite: `kubectl dlite rollout ...` and `kubectl dlite set image`
//! for DeploymentLite. On PATH as `kubectl-dlite`, kubectl finds it as the
//! `dlite` plugin.

use clap::Parser;
use dlite::cli::args::Cli;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Help and version go to stdout with status 0; usage errors exit 1
        // like kubectl's, not clap's 2.
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            let _ = e.print();
            std::process::exit(1);
        }
    };
    let mut out = std::io::stdout();
    if let Err(e) = dlite::cli::run::run(cli, &mut out).await {
        eprintln!("{e}");
        std::process::exit(e.exit_code());
    }
}

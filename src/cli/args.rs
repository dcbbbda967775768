//! The command line, in kubectl's shape: `kubectl dlite rollout status NAME`.

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "kubectl-dlite",
    bin_name = "kubectl dlite",
    version,
    about = "kubectl's rollout and set-image verbs for DeploymentLite (apps.dlite.dev/v1)"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone, Default)]
pub struct Global {
    /// The namespace of the object (default: the kubeconfig context's).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// --kubeconfig and --context, the same flags the binaries take.
    #[command(flatten)]
    pub client: crate::runtime::args::ClientArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Manage the rollout of a DeploymentLite.
    #[command(subcommand)]
    Rollout(Rollout),
    /// Update fields of a DeploymentLite.
    #[command(subcommand)]
    Set(Set),
    /// Show a DeploymentLite in the layout of `kubectl describe deployment`.
    Describe {
        /// The object's name (NAME or dl/NAME).
        name: String,
    },
    /// Why a pod that names dlite-scheduler is still pending: the per-node
    /// reasons of its last scheduling attempt.
    WhyPending {
        /// The pod's name.
        pod: String,
    },
    /// Print a shell completion script for kubectl-dlite.
    ///
    /// bash: `source <(kubectl-dlite completion bash)`;
    /// zsh: `kubectl-dlite completion zsh > "${fpath[1]}/_kubectl-dlite"`.
    Completion {
        #[arg(value_enum)]
        shell: CompletionShell,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompletionShell {
    Bash,
    Zsh,
}

/// `-o/--output`, where kubectl has it for the same verb.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Yaml,
    Json,
    Name,
}

/// `--dry-run`, kubectl's three strategies.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DryRun {
    /// Send the request and persist it.
    #[default]
    None,
    /// Compute the result here and send nothing.
    Client,
    /// Send the request with dryRun=All: the API server validates and
    /// admits it but persists nothing.
    Server,
}

/// The flags kubectl gives its writing verbs (set image, rollout
/// pause/resume/restart/undo).
#[derive(Args, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteFlags {
    /// Output format: yaml, json or name (default: a one-line message).
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<OutputFormat>,
    /// none, client or server; `--dry-run` alone means client, as in kubectl.
    #[arg(
        long,
        value_enum,
        default_value = "none",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "client"
    )]
    pub dry_run: DryRun,
}

#[derive(Subcommand, Debug)]
pub enum Rollout {
    /// Watch the rollout until it completes (or fails).
    Status {
        name: String,
        /// Keep watching until the rollout completes; `-w` alone means true,
        /// `--watch=false` prints the current status once.
        #[arg(
            short = 'w',
            long,
            default_value = "true",
            num_args = 0..=1,
            require_equals = true,
            default_missing_value = "true",
            action = clap::ArgAction::Set,
            value_parser = crate::flags::parse_bool
        )]
        watch: bool,
        /// How long to wait before giving up, as a Go duration (30s, 1.5m,
        /// 1h2m3s); 0 waits forever.
        #[arg(long, default_value = "0s", value_parser = crate::flags::parse_duration)]
        timeout: std::time::Duration,
        /// Follow only this revision: an error if the object's current
        /// revision is another (0: whatever is current).
        #[arg(long, default_value_t = 0)]
        revision: i64,
    },
    /// List revisions, or show one with --revision.
    History {
        name: String,
        /// Show the pod template of this revision.
        #[arg(long)]
        revision: Option<i64>,
    },
    /// Roll back to the previous revision, or to --to-revision, by writing
    /// that revision's pod template into the object (as kubectl does for a
    /// Deployment); the controller then rolls it out.
    Undo {
        name: String,
        /// The revision to roll back to (0: the previous one).
        #[arg(long, default_value_t = 0)]
        to_revision: i64,
        #[command(flatten)]
        write: WriteFlags,
    },
    /// Pause the rollout: template changes wait until resumed.
    Pause {
        name: String,
        #[command(flatten)]
        write: WriteFlags,
    },
    /// Resume a paused rollout.
    Resume {
        name: String,
        #[command(flatten)]
        write: WriteFlags,
    },
    /// Restart every pod by rolling out the same template anew.
    Restart {
        name: String,
        #[command(flatten)]
        write: WriteFlags,
    },
}

#[derive(Subcommand, Debug)]
pub enum Set {
    /// Set container images: `set image NAME CONTAINER=IMAGE ...` (`*` for all).
    Image {
        name: String,
        #[arg(required = true)]
        images: Vec<String>,
        #[command(flatten)]
        write: WriteFlags,
    },
}

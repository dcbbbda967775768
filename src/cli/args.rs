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
    /// Path to the kubeconfig file (default: $KUBECONFIG or ~/.kube/config).
    #[arg(long, global = true)]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Manage the rollout of a DeploymentLite.
    #[command(subcommand)]
    Rollout(Rollout),
    /// Update fields of a DeploymentLite.
    #[command(subcommand)]
    Set(Set),
    /// Why a pod that names dlite-scheduler is still pending: the per-node
    /// reasons of its last scheduling attempt.
    WhyPending {
        /// The pod's name.
        pod: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum Rollout {
    /// Watch the rollout until it completes (or fails).
    Status {
        name: String,
        /// Keep watching until the rollout completes.
        #[arg(short = 'w', long, default_value_t = true, action = clap::ArgAction::Set)]
        watch: bool,
        /// How long to wait before giving up (e.g. 30s, 5m); 0 waits forever.
        #[arg(long, default_value = "0s", value_parser = parse_duration)]
        timeout: std::time::Duration,
    },
    /// List revisions, or show one with --revision.
    History {
        name: String,
        /// Show the pod template of this revision.
        #[arg(long)]
        revision: Option<i64>,
    },
    /// Roll back to the previous revision, or to --to-revision.
    Undo {
        name: String,
        /// The revision to roll back to (0: the previous one).
        #[arg(long, default_value_t = 0)]
        to_revision: i64,
    },
    /// Pause the rollout: template changes wait until resumed.
    Pause { name: String },
    /// Resume a paused rollout.
    Resume { name: String },
    /// Restart every pod by rolling out the same template anew.
    Restart { name: String },
}

#[derive(Subcommand, Debug)]
pub enum Set {
    /// Set container images: `set image NAME CONTAINER=IMAGE ...` (`*` for all).
    Image {
        name: String,
        #[arg(required = true)]
        images: Vec<String>,
    },
}

/// kubectl-style durations: `30s`, `5m`, `1h`, `1m30s`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(std::time::Duration::from_secs(secs));
    }
    if s.is_empty() {
        return Err(format!("invalid duration {s:?}"));
    }
    let out_of_range = || format!("invalid duration {s:?}: out of range");
    let mut total = 0u64;
    let mut num = String::new();
    for ch in s.chars() {
        if ch.is_ascii_digit() {
            num.push(ch);
            continue;
        }
        let n: u64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
        num.clear();
        let unit = match ch {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => {
                return Err(format!(
                    "invalid duration {s:?}: use a number with s, m or h"
                ));
            }
        };
        total = n
            .checked_mul(unit)
            .and_then(|n| total.checked_add(n))
            .ok_or_else(out_of_range)?;
    }
    if !num.is_empty() {
        return Err(format!("invalid duration {s:?}: missing unit (s, m or h)"));
    }
    Ok(std::time::Duration::from_secs(total))
}

//! Command-line definitions (clap). No logic here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

/// Keeps DNS records and HAProxy backends pointed at the right IP addresses when a cloud
/// provider changes them.
#[derive(Debug, Parser)]
#[command(name = "ipdrift", version, propagate_version = true)]
#[command(
    after_help = "Exit codes: 0 success / in sync, 1 error, 2 `diff` found drift, 3 `apply` refused by a safety guard, 4 `apply --plan` refused: the plan no longer matches the world."
)]
pub struct Cli {
    /// Configuration file (TOML).
    #[arg(
        long,
        global = true,
        env = "IPDRIFT_CONFIG",
        default_value = "/etc/ipdrift/ipdrift.toml"
    )]
    pub config: PathBuf,

    /// Log format (logs go to stderr; RUST_LOG sets the level).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

/// Formats of `timeline`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TimelineFormat {
    Text,
    Json,
    /// For pasting into a postmortem document.
    Markdown,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controller: a pass every interval, serving /metrics /healthz /readyz.
    Run {
        /// Override controller.interval, e.g. "1s" (at least 1ms).
        #[arg(long, value_parser = crate::config::controller::parse_interval)]
        interval: Option<Duration>,
        /// Override controller.listen, e.g. "127.0.0.1:9808".
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Show what would change, and why, without writing anything.
    /// Exit 0 in sync, 2 drift found, 1 error.
    Diff {
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
    /// Run one pass: repair what differs, verify it, exit.
    /// Exit 0 done (or nothing to do), 1 error, 3 a safety guard refused a change, 4 the
    /// world no longer matches the `--plan` given.
    Apply {
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
        /// Override the max-remove-fraction guard (only that one) for this pass.
        #[arg(long)]
        force: bool,
        /// Apply exactly the changes of a reviewed plan (`ipdrift diff --output json >
        /// plan.json`); exit 4 and write nothing when the plan made now differs from it.
        #[arg(long, value_name = "FILE")]
        plan: Option<PathBuf>,
    },
    /// Turn the audit log into incident timelines: when addresses changed, when drift was
    /// detected, each repair, when everything converged, and what was wrong for how long.
    Timeline {
        /// The audit log to read (default: controller.audit_log of the config).
        #[arg(long)]
        audit_log: Option<PathBuf>,
        /// Only incidents that end after this: RFC 3339 (2026-05-01T10:00:00Z) or a duration ago (2h).
        #[arg(long)]
        since: Option<String>,
        /// Only incidents that start before this: RFC 3339 or a duration ago.
        #[arg(long)]
        until: Option<String>,
        #[arg(long, value_enum, default_value_t = TimelineFormat::Text)]
        output: TimelineFormat,
    },
    /// Write the `[[record]]` rules and the backends of a config that has its sources,
    /// DNS targets and load balancers but no rules, from what they hold now: record sets
    /// and servers are matched to instances by address (by name where addresses drifted).
    /// What cannot be explained is listed, not guessed. Reads, never writes to them.
    /// Exit 0 written, 1 error.
    Init {
        /// Write the config here (it must not exist yet) instead of to stdout.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Explain one record or server: which rule manages it, which instances feed it, what
    /// it should hold and why, and what a pass would do to it (reads, never writes).
    /// Exit 0 explained, 1 not managed by ipdrift or error.
    Explain {
        /// A record name (`www.example.com`, optionally with its type: `"www.example.com AAAA"`)
        /// or a load balancer's `backend/server` (`web/web-01`).
        name: String,
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
    /// Validate the configuration (and that the TSIG secrets can be read) without network access.
    /// Exit 0 valid, 1 invalid.
    CheckConfig,
    /// Print the shell completion script (needs no config), e.g.
    /// `ipdrift completions bash > /etc/bash_completion.d/ipdrift`.
    Completions {
        #[arg(value_enum)]
        shell: CompletionShell,
    },
    /// Print the man page in roff (needs no config), e.g.
    /// `ipdrift man > /usr/local/share/man/man1/ipdrift.1`; `ipdrift man run` prints ipdrift-run(1).
    Man {
        /// The subcommand whose page to print (default: the ipdrift(1) page).
        #[arg(value_name = "COMMAND")]
        command: Option<String>,
    },
}

/// Shells `completions` writes scripts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

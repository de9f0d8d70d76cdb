//! What each subcommand does, and the exit code it ends with.

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::CommandFactory as _;
use tokio::sync::watch;

use crate::admin;
use crate::audit::{self, AuditLog, render as timeline_render, timeline};
use crate::cli::{Cli, Command, CompletionShell, LogFormat, OutputFormat, TimelineFormat};
use crate::config;
use crate::controller;
use crate::desired;
use crate::explain;
use crate::init;
use crate::plan::reviewed::ReviewedPlan;
use crate::plan::{PassReport, render};
use crate::reconcile::{Mode, Reconciler};

/// How a command ended; the process exit code is the discriminant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// In sync, done, or valid.
    Success = 0,
    /// Something failed (config, a source, a target, a write).
    Error = 1,
    /// `diff` found drift.
    Drift = 2,
    /// `apply` left something undone because a safety guard refused it.
    Refused = 3,
    /// `apply --plan`: the plan made now differs from the reviewed one; nothing written.
    StalePlan = 4,
}

/// Sets up logging to stderr. `run` logs at info by default, one-shot commands at warn so
/// that their stdout report stands alone; RUST_LOG overrides both.
pub fn init_logging(format: LogFormat, command: &Command) {
    let default = if matches!(command, Command::Run { .. }) {
        "info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // `target` is a field of ours (the DNS or HAProxy target), not the Rust module path.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Runs the command the user asked for.
pub async fn execute(cli: Cli) -> Outcome {
    // Completions and man pages come from the clap definitions alone: they are made at
    // package build time, where no config exists.
    match &cli.command {
        Command::Completions { shell } => return print_completions(*shell),
        Command::Man { command } => return print_man_page(command.as_deref()),
        _ => {}
    }
    // A timeline of a given log needs no config: it may be read far from the controller.
    if let Command::Timeline {
        audit_log: Some(path),
        since,
        until,
        output,
    } = &cli.command
    {
        return print_timeline(path, since.as_deref(), until.as_deref(), *output);
    }
    let loaded = config::load(&cli.config);
    let mut config = match loaded {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("ipdrift: the configuration is invalid; nothing was done");
            return Outcome::Error;
        }
    };
    match cli.command {
        Command::CheckConfig => match config.read_secrets() {
            Ok(_) => {
                let election = match &config.ha {
                    None => String::new(),
                    Some(ha) => match ha.load_secrets() {
                        Ok(_) => format!(
                            ", leader election {:?} on etcd as {:?}",
                            ha.election,
                            ha.instance_name()
                        ),
                        Err(message) => {
                            eprintln!("{}: {message}", config.path.display());
                            return Outcome::Error;
                        }
                    },
                };
                let verdict = format!(
                    "{}: valid ({} inventory source(s), {} DNS target(s), {} record rule(s), {} HAProxy target(s){election})\n",
                    config.path.display(),
                    config.inventories.len(),
                    config.dns.len(),
                    config.records.len(),
                    config.load_balancers.len()
                );
                write_stdout(verdict.as_bytes())
            }
            Err(errors) => {
                eprintln!("{errors}");
                Outcome::Error
            }
        },
        Command::Timeline {
            since,
            until,
            output,
            ..
        } => match &config.controller.audit_log {
            Some(path) => print_timeline(path, since.as_deref(), until.as_deref(), output),
            None => {
                eprintln!(
                    "ipdrift: {} has no controller.audit_log; set it, or pass --audit-log PATH",
                    config.path.display()
                );
                Outcome::Error
            }
        },
        Command::Completions { shell } => print_completions(shell),
        Command::Man { command } => print_man_page(command.as_deref()),
        Command::Init { output } => init(config, output.as_deref()).await,
        Command::Explain { name, output } => explain(config, &name, output).await,
        Command::Diff { output } => one_pass(config, Mode::ReadOnly, output, false, None).await,
        Command::Apply {
            output,
            force,
            plan,
        } => {
            let reviewed = match plan.as_deref().map(read_reviewed_plan).transpose() {
                Ok(reviewed) => reviewed,
                Err(message) => {
                    eprintln!("ipdrift: {message}");
                    return Outcome::Error;
                }
            };
            let reviewed = plan.zip(reviewed);
            one_pass(config, Mode::Apply, output, force, reviewed.as_ref()).await
        }
        Command::Run { interval, listen } => {
            let overrides = move |config: &mut config::Config| {
                if let Some(interval) = interval {
                    config.controller.interval = interval;
                }
                if let Some(listen) = listen {
                    config.controller.listen = listen;
                }
            };
            overrides(&mut config);
            let listener = match admin::bind(config.controller.listen).await {
                Ok(listener) => listener,
                Err(e) => {
                    eprintln!("ipdrift: {e:#}");
                    return Outcome::Error;
                }
            };
            let path = cli.config.clone();
            let load: controller::ConfigLoader = Box::new(move || {
                let mut config = config::load(&path).map_err(|e| e.to_string())?;
                config.read_secrets().map_err(|e| e.to_string())?;
                overrides(&mut config);
                Ok(config)
            });
            let (stop_tx, stop_rx) = watch::channel(false);
            let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(1);
            tokio::spawn(async move {
                wait_for_stop_signal().await;
                let _ = stop_tx.send(true);
            });
            tokio::spawn(forward_reload_signals(reload_tx));
            let wiring = controller::Wiring::new(listener, stop_rx, reload_rx, load);
            match controller::run(Arc::new(config), wiring).await {
                Ok(()) => Outcome::Success,
                Err(e) => {
                    eprintln!("ipdrift: {e:#}");
                    Outcome::Error
                }
            }
        }
    }
}

/// Turns each SIGHUP into a reload request (several quick ones collapse into one).
async fn forward_reload_signals(reload: tokio::sync::mpsc::Sender<()>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = signal(SignalKind::hangup()).expect("install SIGHUP handler");
    while hangup.recv().await.is_some() {
        let _ = reload.try_send(());
    }
}

async fn wait_for_stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// `ipdrift init`: reads every source, zone and load balancer, then writes the config
/// that keeps them as they are.
async fn init(config: config::Config, output: Option<&Path>) -> Outcome {
    match init_text(&config).await {
        Ok((text, proposal)) => {
            let written = match output {
                None => {
                    let mut stdout = std::io::stdout().lock();
                    stdout
                        .write_all(text.as_bytes())
                        .and_then(|()| stdout.flush())
                }
                Some(path) => std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(path)
                    .and_then(|mut file| file.write_all(text.as_bytes())),
            };
            if let Err(e) = written {
                let place = output.map_or("stdout".into(), |p| p.display().to_string());
                eprintln!(
                    "ipdrift: cannot write {place}: {e}; give --output a file that does not exist yet"
                );
                return Outcome::Error;
            }
            let backends: usize = proposal.backends.values().map(Vec::len).sum();
            eprintln!(
                "ipdrift init: {} record rule(s), {backends} backend(s); {} drifted, {} not explained",
                proposal.records.len(),
                proposal.drifted.len(),
                proposal.unexplained.len()
            );
            for line in proposal.drifted.iter().chain(&proposal.unexplained) {
                eprintln!("  {line}");
            }
            Outcome::Success
        }
        Err(e) => {
            eprintln!("ipdrift: init: {e:#}");
            Outcome::Error
        }
    }
}

async fn init_text(config: &config::Config) -> anyhow::Result<(String, init::Proposal)> {
    use anyhow::Context as _;
    let rules = config.records.len()
        + config
            .load_balancers
            .iter()
            .map(|lb| lb.backends.len())
            .sum::<usize>();
    if rules > 0 {
        anyhow::bail!(
            "{} already has {rules} record rule(s) and backend(s); init writes them for a config that has only sources, DNS targets and load balancers",
            config.path.display()
        );
    }
    let base = std::fs::read_to_string(&config.path)
        .with_context(|| format!("cannot read {}", config.path.display()))?;
    let parts = crate::reconcile::build::parts(config)?;
    let limit = config.controller.timeout;
    let within = |what: String| {
        move |_| {
            anyhow::anyhow!(
                "{what}: no answer within {}",
                humantime::format_duration(limit)
            )
        }
    };
    let mut world = init::World::default();
    for source in &parts.inventories {
        let name = source.name().to_string();
        let listed = tokio::time::timeout(source.time_limit(limit), source.list())
            .await
            .map_err(within(format!("inventory {name:?}")))?
            .with_context(|| format!("init needs every source; inventory {name:?}"))?;
        world.sources.insert(name, listed);
    }
    for (target, dns) in parts.dns.iter().zip(&config.dns) {
        let listing = tokio::time::timeout(limit, target.read_listing())
            .await
            .map_err(within(format!("DNS target {:?}", dns.name)))??;
        let sets = listing.rrsets.with_context(|| {
            format!(
                "DNS target {:?} gave no listing of its record sets (RFC 2136: allow ipdrift's key a zone transfer); init needs one",
                dns.name
            )
        })?;
        world
            .zones
            .insert(dns.name.clone(), (dns.zone.clone(), sets));
    }
    for lb in &parts.load_balancers {
        let backends = tokio::time::timeout(limit, lb.list_backends())
            .await
            .map_err(within(format!("load balancer {:?}", lb.name())))??;
        let servers = tokio::time::timeout(limit, lb.read(&backends))
            .await
            .map_err(within(format!("load balancer {:?}", lb.name())))??;
        world.servers.insert(lb.name().to_string(), servers);
    }
    let proposal = init::propose(&world);
    let tables: Vec<init::LbTable> = config
        .load_balancers
        .iter()
        .map(|lb| init::LbTable {
            section: lb.kind.to_string(),
            backend_key: crate::lb::KINDS
                .iter()
                .find(|k| k.section == lb.kind)
                .map_or("backend", |k| k.backends)
                .to_string(),
            name: lb.name.clone(),
        })
        .collect();
    let text = init::render(&base, &tables, &proposal);
    config::parse(&text, &config.path).map_err(|errors| {
        anyhow::anyhow!("the config it made does not load, so nothing was written (please report this): {errors}")
    })?;
    Ok((text, proposal))
}

/// `ipdrift explain NAME`: one read-only pass, then what it says of NAME.
async fn explain(config: config::Config, name: &str, output: OutputFormat) -> Outcome {
    let config = Arc::new(config);
    let reconciler = match Reconciler::new(config.clone(), false) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ipdrift: {e:#}");
            return Outcome::Error;
        }
    };
    let outcome = reconciler.pass(Mode::ReadOnly).await;
    let want = desired::desired(&config, &outcome.sources);
    let explained = explain::explain(&config, &outcome.sources, &want, &outcome.report, name);
    let text = match output {
        OutputFormat::Text => explain::text(&explained),
        OutputFormat::Json => format!("{}\n", serde_json::json!(explained)),
    };
    let written = write_stdout(text.as_bytes());
    for error in &outcome.report.errors {
        eprintln!("ipdrift: {}: {}", error.target, error.message);
    }
    if written != Outcome::Success || explained.managed_by.is_empty() {
        Outcome::Error
    } else {
        Outcome::Success
    }
}

/// Reads the plan file of `apply --plan`.
fn read_reviewed_plan(path: &Path) -> Result<ReviewedPlan, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "cannot read the plan {}: {e}; make one with `ipdrift diff --output json > plan.json`",
            path.display()
        )
    })?;
    ReviewedPlan::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// `diff`, `apply`, and `apply --plan` when `reviewed` is given (its file and plan).
async fn one_pass(
    config: config::Config,
    mode: Mode,
    output: OutputFormat,
    force: bool,
    reviewed: Option<&(PathBuf, ReviewedPlan)>,
) -> Outcome {
    let config = Arc::new(config);
    let reconciler = match Reconciler::new(config.clone(), force) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ipdrift: {e:#}");
            return Outcome::Error;
        }
    };
    let started_at = audit::now();
    let started = tokio::time::Instant::now();
    let outcome = match reviewed {
        None => reconciler.pass(mode).await,
        Some((path, reviewed)) => {
            let (outcome, differences) = reconciler.pass_as_reviewed(reviewed).await;
            if !differences.is_empty() {
                // Nothing was written, so a lost report changes nothing: the refusal wins.
                let _ = print_report(&outcome.report, output);
                eprintln!(
                    "ipdrift: the plan made now differs from {} ({} reviewed change(s)); nothing was written:",
                    path.display(),
                    reviewed.len()
                );
                for line in &differences {
                    eprintln!("  {line}");
                }
                eprintln!(
                    "ipdrift: review the new plan (`ipdrift diff --output json > plan.json`) and apply that one"
                );
                return Outcome::StalePlan;
            }
            outcome
        }
    };
    let printed = print_report(&outcome.report, output);
    let result = outcome_of(&outcome.report, mode);
    // The audit record is written even when the report could not be: apply's changes happened.
    if mode == Mode::Apply
        && let Err(e) = controller::audit_one_pass(&config, &outcome, started_at, started.elapsed())
    {
        eprintln!("ipdrift: {e:#}");
        return Outcome::Error;
    }
    // An unread report must not pass for "in sync" (exit 0) or for drift (exit 2).
    if printed != Outcome::Success {
        return Outcome::Error;
    }
    result
}

/// `ipdrift timeline`: reads the audit log, prints the incidents in the window.
fn print_timeline(
    path: &std::path::Path,
    since: Option<&str>,
    until: Option<&str>,
    output: TimelineFormat,
) -> Outcome {
    let now = audit::now();
    let window = |text: Option<&str>, flag: &str| {
        text.map(|t| timeline::parse_time(t, now))
            .transpose()
            .map_err(|e| format!("--{flag}: {e}"))
    };
    let (since, until) = match (window(since, "since"), window(until, "until")) {
        (Ok(since), Ok(until)) => (since, until),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("ipdrift: {e}");
            return Outcome::Error;
        }
    };
    let parsed = match AuditLog::new(path.to_path_buf()).read() {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!(
                "ipdrift: cannot read the audit log {}: {e}; pass --audit-log PATH or set controller.audit_log",
                path.display()
            );
            return Outcome::Error;
        }
    };
    let built = timeline::build(&parsed.records, since, until, parsed.skipped);
    let text = match output {
        TimelineFormat::Text => timeline_render::text(&built),
        TimelineFormat::Json => format!("{}\n", timeline_render::json(&built)),
        TimelineFormat::Markdown => timeline_render::markdown(&built),
    };
    write_stdout(text.as_bytes())
}

/// Writes the completion script for `shell` to stdout.
fn print_completions(shell: CompletionShell) -> Outcome {
    let shell = match shell {
        CompletionShell::Bash => clap_complete::Shell::Bash,
        CompletionShell::Zsh => clap_complete::Shell::Zsh,
        CompletionShell::Fish => clap_complete::Shell::Fish,
    };
    // Generated into memory first: clap_complete panics when its writer fails (a closed pipe,
    // a full disk), and a failed write here is an error message, not a panic.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "ipdrift", &mut script);
    write_stdout(&script)
}

/// Writes the ipdrift(1) man page, or ipdrift-COMMAND(1) for a subcommand, to stdout.
fn print_man_page(subcommand: Option<&str>) -> Outcome {
    let mut command = Cli::command();
    // Building sets each subcommand's display name to `ipdrift-NAME`, the page's title.
    command.build();
    let page = match subcommand {
        None => command,
        Some(name) => match command.find_subcommand(name) {
            Some(sub) => sub.clone(),
            None => {
                let names: Vec<&str> = command.get_subcommands().map(|s| s.get_name()).collect();
                eprintln!(
                    "ipdrift: no command {name:?} to print a man page for; one of: {}",
                    names.join(", ")
                );
                return Outcome::Error;
            }
        },
    };
    let mut roff = Vec::new();
    match clap_mangen::Man::new(page).render(&mut roff) {
        Ok(()) => write_stdout(&roff),
        Err(e) => {
            eprintln!("ipdrift: cannot render the man page: {e}");
            Outcome::Error
        }
    }
}

/// Writes a command's output. A full disk or a closed pipe is reported and exits 1: a report
/// nobody received must not end as if it had been read.
fn write_stdout(bytes: &[u8]) -> Outcome {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Outcome::Success,
        Err(e) => {
            eprintln!("ipdrift: cannot write to stdout: {e}");
            Outcome::Error
        }
    }
}

fn print_report(report: &PassReport, output: OutputFormat) -> Outcome {
    let text = match output {
        OutputFormat::Text => render::text(report),
        OutputFormat::Json => format!("{}\n", render::json(report)),
    };
    write_stdout(text.as_bytes())
}

/// The exit code of `diff` or `apply`. Errors come first: a partial view is never "in sync".
pub fn outcome_of(report: &PassReport, mode: Mode) -> Outcome {
    if report.failed() {
        return Outcome::Error;
    }
    match mode {
        Mode::ReadOnly if report.plan.has_drift() => Outcome::Drift,
        Mode::ReadOnly => Outcome::Success,
        Mode::Apply if report.refused() => Outcome::Refused,
        Mode::Apply => Outcome::Success,
    }
}

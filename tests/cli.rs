//! The command line (`validate`, `version`, `start` options and `FLAGD_*` variables), the bundled
//! flags and the deployment files.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use clap::Parser as _;
use flagd_evaluator::{Format, HashGeneration, LoadOptions};
use flagd_rs::config::{Cli, Command, Config, DEFAULT_STATE_DIR, ValidateArgs};
use flagd_rs::sources::Provider;
use flagd_rs_tests::daemon::{self, workspace_root};
use flagd_rs_tests::ports::free_port;
use serde::Deserialize as _;
use serde_json::Value;

const GOOD: &str = r#"{"flags":{
  "a":{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"on"},
  "b":{"state":"ENABLED","variants":{"x":"X"},"defaultVariant":"x"}}}"#;
/// Loads, with a schema warning: variants of mixed types.
const WARNS: &str = r#"{"flags":{"mixed":{"state":"ENABLED","variants":{"one":1,"two":"2"},"defaultVariant":"one"}}}"#;
/// Rejected: the default variant does not exist.
const REJECTED: &str =
    r#"{"flags":{"broken":{"state":"ENABLED","variants":{"on":true},"defaultVariant":"off"}}}"#;

fn validate_args(extra: &[&str], files: &[&Path]) -> ValidateArgs {
    let mut argv: Vec<String> = vec!["flagd-rs".into(), "validate".into()];
    argv.extend(extra.iter().map(|s| s.to_string()));
    argv.extend(files.iter().map(|p| p.display().to_string()));
    match Cli::try_parse_from(argv).unwrap().command {
        Command::Validate(args) => args,
        other => panic!("unexpected {other:?}"),
    }
}

/// Runs `validate` in-process: (accepted, output).
fn validate(extra: &[&str], files: &[&Path]) -> (bool, String) {
    let mut out = Vec::new();
    let ok = flagd_rs::validate::run_to(&validate_args(extra, files), &mut out);
    (ok, String::from_utf8(out).unwrap())
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn validate_accepts_good_files() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(&dir, "good.json", GOOD);
    let yaml = write(
        &dir,
        "good.yaml",
        "flags:\n  y:\n    state: ENABLED\n    variants: {a: 1}\n    defaultVariant: a\n",
    );
    let (ok, out) = validate(&[], &[&good, &yaml]);
    assert!(ok, "{out}");
    assert!(out.contains("good.json: ok (2 flags, 0 warnings)"), "{out}");
    assert!(out.contains("good.yaml: ok (1 flags, 0 warnings)"), "{out}");
}

#[test]
fn validate_prints_warnings_and_strict_rejects_them() {
    let dir = tempfile::tempdir().unwrap();
    let warns = write(&dir, "warns.json", WARNS);
    let (ok, out) = validate(&[], &[&warns]);
    assert!(ok, "{out}");
    let line = out
        .lines()
        .find(|l| l.contains("warning"))
        .unwrap_or_else(|| panic!("no warning in {out}"));
    assert!(
        line.contains("flag `mixed`") && line.contains("/flags/mixed"),
        "{line}"
    );
    assert!(
        out.contains("ok (1 flags, 1 warnings)") || out.contains("warnings)"),
        "{out}"
    );

    let (ok, out) = validate(&["--strict"], &[&warns]);
    assert!(!ok, "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("error") && l.contains("flag `mixed`")),
        "{out}"
    );
    assert!(out.contains("warns.json: rejected"), "{out}");
}

#[test]
fn validate_rejects_and_names_flag_and_pointer() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(&dir, "good.json", GOOD);
    let bad = write(&dir, "bad.json", REJECTED);
    let syntax = write(&dir, "syntax.json", "{\"flags\":");
    let missing = dir.path().join("missing.json");
    let (ok, out) = validate(&[], &[&good, &bad, &syntax, &missing]);
    assert!(!ok, "{out}");
    assert!(out.contains("good.json: ok"), "{out}");
    let line = out
        .lines()
        .find(|l| l.contains("bad.json: error"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains("flag `broken`") && line.contains("/flags/broken"),
        "{line}"
    );
    assert!(out.contains("bad.json: rejected"), "{out}");
    assert!(out.contains("syntax.json: error: invalid JSON"), "{out}");
    assert!(
        out.contains("missing.json: error: cannot read file"),
        "{out}"
    );
}

#[test]
fn validate_options_reach_the_loader() {
    let args = validate_args(
        &["--fractional-hash", "v2", "--strict"],
        &[Path::new("x.json")],
    );
    let opts = args.load.load_options();
    assert_eq!(opts.hash, HashGeneration::V2);
    assert!(opts.strict);
    assert_eq!(
        validate_args(&[], &[Path::new("x.json")])
            .load
            .load_options()
            .hash,
        HashGeneration::V3
    );
    assert!(
        Cli::try_parse_from(["flagd-rs", "validate"]).is_err(),
        "validate needs at least one file"
    );
}

#[test]
fn start_options_build_the_config() {
    let c = Config::from_args([
        "start",
        "-f",
        "file:a.json,b.yaml",
        "--sources",
        r#"[{"uri":"c.json","provider":"file"}]"#,
        "-p",
        "9013",
        "-m",
        "9014",
        "-X",
        "env=prod",
        "-H",
        "X-Team=team",
        "--stream-deadline",
        "30s",
        "-B",
        "512",
        "--fractional-hash",
        "v2",
    ])
    .unwrap();
    let uris: Vec<String> = c.sources.iter().map(|s| s.source_uri()).collect();
    assert_eq!(
        uris,
        ["a.json", "b.yaml", "c.json"],
        "--uri sources come first, then --sources"
    );
    assert!(c.sources.iter().all(|s| s.provider == Provider::File));
    assert_eq!((c.port, c.management_port), (9013, 9014));
    assert_eq!(
        c.context.static_values.get("env"),
        Some(&Value::String("prod".into()))
    );
    assert_eq!(c.context.from_headers[0].0.as_str(), "x-team");
    assert_eq!(c.limits.stream_deadline, Some(Duration::from_secs(30)));
    assert_eq!(c.limits.max_body_bytes, 512);
    assert_eq!(c.load.hash, HashGeneration::V2);

    let d = Config::from_args(["start"]).unwrap();
    assert!(d.sources.is_empty(), "no source: the bundled flags");
    assert_eq!(
        (d.port, d.management_port, d.sync_port, d.ofrep_port),
        (8013, 8014, 8015, 8016)
    );
    assert!(Config::from_args(["start", "--uri", "ftp://host/flags.json"]).is_err());
    assert!(Config::from_args(["start", "--sources", "not json"]).is_err());
    assert!(Config::from_args(["version"]).is_err());
}

/// Marker telling [`env_child_reads_flagd_variables`] that it runs as the child process.
const CHILD_MARKER: &str = "FLAGD_RS_TESTS_ENV_CHILD";

/// Runs only inside the child process started by [`flagd_variables_configure_start`], whose
/// environment carries the `FLAGD_*` variables (the test process cannot set its own safely).
#[test]
fn env_child_reads_flagd_variables() {
    if std::env::var_os(CHILD_MARKER).is_none() {
        return;
    }
    let c = Config::from_args(["start"]).unwrap();
    let uris: Vec<String> = c.sources.iter().map(|s| s.source_uri()).collect();
    assert_eq!(uris, ["a.json", "b.json", "c.json"]);
    assert_eq!(
        (c.port, c.management_port, c.sync_port, c.ofrep_port),
        (7013, 7014, 7015, 7016)
    );
    assert_eq!(
        c.context.static_values.get("region"),
        Some(&Value::String("eu".into()))
    );
    assert_eq!(
        c.context.static_values.get("tier"),
        Some(&Value::String("gold".into()))
    );
    assert_eq!(c.context.from_headers.len(), 1);
    assert_eq!(c.limits.stream_deadline, Some(Duration::from_secs(90)));
    assert_eq!(c.limits.max_body_bytes, 2048);
    assert_eq!(c.cors_origins, ["https://a.example", "https://b.example"]);
    assert_eq!(c.load.hash, HashGeneration::V2);
    assert!(c.load.strict);
    assert!(c.disable_sync_metadata);
    // A command-line flag wins over its variable.
    assert_eq!(Config::from_args(["start", "-p", "1"]).unwrap().port, 1);
    let cli = Cli::try_parse_from(["flagd-rs", "version"]).unwrap();
    assert!(cli.log.debug);
    assert_eq!(cli.log.log_format, flagd_rs::config::LogFormat::Json);
}

#[test]
fn flagd_variables_configure_start() {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args([
            "--exact",
            "cli::env_child_reads_flagd_variables",
            "--test-threads=1",
        ])
        .env(CHILD_MARKER, "1")
        .env("FLAGD_URI", "file:a.json,file:b.json")
        .env("FLAGD_SOURCES", r#"[{"uri":"c.json","provider":"file"}]"#)
        .env("FLAGD_PORT", "7013")
        .env("FLAGD_MANAGEMENT_PORT", "7014")
        .env("FLAGD_SYNC_PORT", "7015")
        .env("FLAGD_OFREP_PORT", "7016")
        .env("FLAGD_CONTEXT_VALUE", "region=eu,tier=gold")
        .env("FLAGD_CONTEXT_FROM_HEADER", "X-User=user")
        .env("FLAGD_STREAM_DEADLINE", "1m30s")
        .env("FLAGD_MAX_REQUEST_BODY", "2048")
        .env("FLAGD_CORS_ORIGIN", "https://a.example,https://b.example")
        .env("FLAGD_FRACTIONAL_HASH", "v2")
        .env("FLAGD_STRICT", "true")
        .env("FLAGD_DISABLE_SYNC_METADATA", "true")
        .env("FLAGD_DEBUG", "true")
        .env("FLAGD_LOG_FORMAT", "json")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("1 passed"),
        "the child test did not run:\n{stdout}"
    );
}

#[tokio::test]
async fn the_executable_validates_and_stops_on_sigterm() {
    let bin = flagd_rs_tests::binary::flagd_rs();
    let dir = tempfile::tempdir().unwrap();
    let good = write(&dir, "good.json", GOOD);
    let bad = write(&dir, "bad.json", REJECTED);
    let warns = write(&dir, "warns.json", WARNS);

    let run = |args: Vec<&Path>, env: Option<(&str, &str)>| {
        let mut cmd = std::process::Command::new(&bin);
        cmd.args(args);
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let version = run(vec![Path::new("version")], None);
    assert!(version.status.success());
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("flagd-rs {}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        run(vec![Path::new("validate"), &good], None).status.code(),
        Some(0)
    );
    let out = run(vec![Path::new("validate"), &good, &bad], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("flag `broken`"));
    assert_eq!(
        run(vec![Path::new("validate"), &warns], None).status.code(),
        Some(0)
    );
    assert_eq!(
        run(
            vec![Path::new("validate"), &warns],
            Some(("FLAGD_STRICT", "true"))
        )
        .status
        .code(),
        Some(1)
    );

    // `start` configured only through the environment, stopped with SIGTERM: exit code 0.
    let port = free_port();
    let management = free_port();
    let mut child = tokio::process::Command::new(&bin)
        .arg("start")
        .env("FLAGD_URI", format!("file:{}", good.display()))
        .env("FLAGD_PORT", port.to_string())
        .env("FLAGD_MANAGEMENT_PORT", management.to_string())
        .env("FLAGD_ADMIN_PORT", free_port().to_string())
        .env("FLAGD_STATE_DIR", dir.path().join("state"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !daemon::get(management, "/readyz")
        .await
        .is_ok_and(|r| r.status == 200)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the daemon did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = daemon::post_json(
        port,
        "/flagd.evaluation.v1.Service/ResolveBoolean",
        r#"{"flagKey":"a"}"#,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "flagd-rs should exit 0 after SIGTERM"
    );
}

#[test]
fn bundled_flags_load_cleanly_and_are_documented() {
    let root = workspace_root();
    let bytes = std::fs::read(root.join("flags/default.flagd.json")).unwrap();
    assert_eq!(
        bytes,
        flagd_rs::run::EMBEDDED_FLAGS,
        "the binary embeds flags/default.flagd.json"
    );
    let strict = LoadOptions {
        strict: true,
        ..LoadOptions::default()
    };
    let loaded = flagd_evaluator::load(&bytes, Format::Json, &strict).unwrap();
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    let readme = std::fs::read_to_string(root.join("flags/README.md")).unwrap();
    for flag in loaded.flags.flags() {
        assert!(
            readme.contains(&format!("`{}`", flag.key())),
            "flags/README.md does not describe `{}`",
            flag.key()
        );
    }
}

/// Every YAML document under `deploy/`, with its file name.
fn deploy_documents() -> Vec<(String, Value)> {
    let mut files = Vec::new();
    let mut dirs = vec![workspace_root().join("deploy")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut docs = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let value =
                Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            if !value.is_null() {
                docs.push((path.display().to_string(), value));
            }
        }
    }
    docs
}

fn find<'a>(docs: &'a [(String, Value)], kind: &str) -> &'a Value {
    docs.iter()
        .map(|(_, d)| d)
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} under deploy/"))
}

#[test]
fn deployment_manifests_are_consistent() {
    let docs = deploy_documents();
    assert!(docs.len() >= 5, "{docs:?}");
    for (file, doc) in &docs {
        assert!(
            doc["apiVersion"].is_string() && doc["kind"].is_string(),
            "{file}: not a Kubernetes object"
        );
    }

    // The ConfigMap's flags load without a warning.
    let flags = find(&docs, "ConfigMap")["data"]["flags.json"]
        .as_str()
        .expect("ConfigMap data flags.json");
    let strict = LoadOptions {
        strict: true,
        ..LoadOptions::default()
    };
    let loaded = flagd_evaluator::load(flags.as_bytes(), Format::Json, &strict).unwrap();
    assert!(loaded.diagnostics.is_empty() && !loaded.flags.is_empty());

    // The Deployment serves that file and probes the management port.
    let spec = &find(&docs, "Deployment")["spec"]["template"]["spec"];
    let container = &spec["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let config = Config::from_args(args.iter().copied()).unwrap();
    assert_eq!(config.sources.len(), 1);
    assert_eq!(config.sources[0].source_uri(), "/etc/flagd/flags.json");
    assert_eq!(container["volumeMounts"][0]["mountPath"], "/etc/flagd");
    let ports = container["ports"].as_array().unwrap();
    let port_of = |name: &str| {
        ports
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| p["containerPort"].clone())
    };
    assert_eq!(port_of("management"), Some(8014.into()));
    assert_eq!(port_of("eval"), Some(8013.into()));
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        assert_eq!(container[probe]["httpGet"]["path"], path);
        assert_eq!(container[probe]["httpGet"]["port"], "management");
    }
    let volume = &spec["volumes"][0];
    assert_eq!(
        volume["configMap"]["name"],
        find(&docs, "ConfigMap")["metadata"]["name"]
    );

    let service = &find(&docs, "Service")["spec"];
    assert_eq!(
        service["selector"],
        find(&docs, "Deployment")["spec"]["selector"]["matchLabels"]
    );
}

/// The Kubernetes Deployment can write its journal as the user it runs as, exposes the admin API
/// safely (token and TLS from Secrets), and runs one replica that owns the state.
#[test]
fn kubernetes_state_is_writable_and_the_admin_api_is_exposed_safely() {
    let docs = deploy_documents();
    let deployment = find(&docs, "Deployment");
    assert_eq!(
        deployment["spec"]["replicas"], 1,
        "one replica owns the state"
    );
    assert_eq!(
        deployment["spec"]["strategy"]["type"], "Recreate",
        "a rolling update would start a second daemon on the same state volume"
    );
    let spec = &deployment["spec"]["template"]["spec"];
    let container = &spec["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let config = Config::from_args(args.iter().copied()).unwrap();

    // The mount holding a path, and the volume behind it.
    let mounts = container["volumeMounts"].as_array().unwrap();
    let volumes = spec["volumes"].as_array().unwrap();
    let mount_of = |path: &Path| {
        mounts
            .iter()
            .filter(|m| path.starts_with(m["mountPath"].as_str().unwrap()))
            .max_by_key(|m| m["mountPath"].as_str().unwrap().len())
            .unwrap_or_else(|| panic!("{} is on no volume", path.display()))
    };
    let volume_of = |mount: &Value| {
        volumes
            .iter()
            .find(|v| v["name"] == mount["name"])
            .unwrap_or_else(|| panic!("no volume {}", mount["name"]))
    };

    // The root file system is read-only, so the state must be on a writable volume that the
    // pod's user can write: a claim (or emptyDir) made group-writable through fsGroup.
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert!(config.state_dir.is_absolute());
    let state_mount = mount_of(&config.state_dir);
    assert_ne!(
        state_mount["readOnly"], true,
        "the state volume is read-only"
    );
    let state_volume = volume_of(state_mount);
    let claim = state_volume["persistentVolumeClaim"]["claimName"].as_str();
    assert!(
        claim.is_some() || state_volume.get("emptyDir").is_some(),
        "the state is not on a writable volume: {state_volume}"
    );
    if let Some(claim) = claim {
        let pvc = find(&docs, "PersistentVolumeClaim");
        assert_eq!(pvc["metadata"]["name"], claim);
    }
    let security = &spec["securityContext"];
    let user = security["runAsUser"].as_u64().expect("runAsUser");
    assert_ne!(user, 0);
    assert_eq!(
        security["fsGroup"], security["runAsGroup"],
        "fsGroup makes the volume writable by the daemon's group"
    );

    // The admin API: off loopback with a token and TLS, each from a Secret, on a named port
    // that the Service exposes, answering the Service's names.
    assert!(!config.admin_address.is_loopback());
    let token = config
        .admin_token_file
        .as_deref()
        .expect("admin token file");
    assert!(volume_of(mount_of(token))["secret"]["secretName"].is_string());
    let tls = config.admin_tls.as_ref().expect("admin TLS");
    assert!(volume_of(mount_of(&tls.cert))["secret"]["secretName"].is_string());
    assert!(volume_of(mount_of(&tls.key))["secret"]["secretName"].is_string());
    assert!(!config.admin_insecure);
    flagd_rs::authority::admin::check_bind(
        &std::net::SocketAddr::new(config.admin_address, config.admin_port),
        true,
        true,
        false,
    )
    .unwrap();
    assert!(
        config.admin_allowed_hosts.iter().any(|h| h == "flagd-rs"),
        "{:?}",
        config.admin_allowed_hosts
    );
    let admin_port = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "admin")
        .expect("admin container port");
    assert_eq!(admin_port["containerPort"], config.admin_port);
    assert!(
        find(&docs, "Service")["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["targetPort"] == "admin"),
        "the Service exposes the admin port"
    );
}

/// The container image can write its journal as the user it runs as.
#[test]
fn docker_image_state_is_writable() {
    let dockerfile = std::fs::read_to_string(workspace_root().join("deploy/Dockerfile")).unwrap();
    // Join continuation lines so each instruction is one line.
    let text = dockerfile.replace("\\\n", " ");
    let final_stage = text.rsplit("\nFROM ").next().unwrap();
    let user = final_stage
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("USER in the final stage")
        .trim();
    assert!(!user.starts_with('0') && user != "root");
    let env_state = final_stage
        .lines()
        .filter_map(|l| l.strip_prefix("ENV "))
        .flat_map(str::split_whitespace)
        .find_map(|kv| kv.strip_prefix("FLAGD_STATE_DIR="))
        .map(str::to_owned);
    let state = env_state.unwrap_or_else(|| DEFAULT_STATE_DIR.to_owned());
    assert!(Path::new(&state).is_absolute());
    assert!(
        final_stage
            .lines()
            .filter(|l| l.starts_with("RUN "))
            .any(|l| l.contains(&format!("chown {user} {state}"))),
        "the image does not give {state} to {user}"
    );
    assert!(
        final_stage
            .lines()
            .any(|l| l.starts_with("VOLUME") && l.contains(&state)),
        "no VOLUME for {state}"
    );
}

/// The systemd unit gives the dynamic user a state directory that `ProtectSystem=strict` leaves
/// writable, and the daemon finds it through `$STATE_DIRECTORY`.
#[test]
fn systemd_state_is_writable() {
    let unit =
        std::fs::read_to_string(workspace_root().join("deploy/systemd/flagd-rs.service")).unwrap();
    let value = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(str::trim)
    };
    let state = value("StateDirectory").expect("StateDirectory=");
    let exec = value("ExecStart").unwrap();
    assert!(!exec.contains("--state-dir"), "{exec}");
    // systemd passes /var/lib/<StateDirectory> (the unit's writable path) as $STATE_DIRECTORY.
    let given = format!("/var/lib/{state}");
    assert_eq!(
        flagd_rs::config::state_dir_from(Some(std::ffi::OsStr::new(&given))),
        Path::new(&given)
    );
    if value("ProtectSystem") == Some("strict") {
        assert!(value("ReadOnlyPaths").is_none_or(|p| !p.contains("/var/lib")));
    }
}

#[test]
fn systemd_unit_and_dockerfile_are_consistent() {
    let root = workspace_root();
    let unit = std::fs::read_to_string(root.join("deploy/systemd/flagd-rs.service")).unwrap();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    let mut words = exec.split_whitespace();
    assert_eq!(words.next(), Some("/usr/local/bin/flagd-rs"));
    let config = Config::from_args(words).unwrap();
    assert_eq!(config.sources[0].source_uri(), "/etc/flagd/flags.json");

    let dockerfile = std::fs::read_to_string(root.join("deploy/Dockerfile")).unwrap();
    assert!(
        dockerfile
            .lines()
            .any(|l| l.trim() == "EXPOSE 8013 8014 8015 8016")
    );
    assert!(
        dockerfile
            .lines()
            .any(|l| l.starts_with("USER ") && !l.contains("root"))
    );
}

/// A deployment that cannot write its journal fails at start with a message saying so, instead
/// of starting and failing the first override during an incident.
#[test]
fn an_unwritable_state_directory_stops_the_start() {
    let bin = flagd_rs_tests::binary::flagd_rs();
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, "not-a-dir", "x");
    let state = file.join("state");
    let out = std::process::Command::new(&bin)
        .args([
            "start",
            "-p",
            "0",
            "-m",
            "0",
            "-g",
            "0",
            "-r",
            "0",
            "--admin-port",
            "0",
        ])
        .arg("--state-dir")
        .arg(&state)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("state directory") && stderr.contains("--state-dir"),
        "{stderr}"
    );
}

/// The fleet's Deployment runs three replicas on one store, each named by its pod and keeping
/// only a cache of its own.
#[test]
fn the_fleet_manifest_shares_one_store() {
    let docs = deploy_documents();
    let (_, deployment) = docs
        .iter()
        .find(|(file, d)| file.contains("fleet") && d["kind"] == "Deployment")
        .expect("a fleet Deployment under deploy/kubernetes/fleet");
    assert_eq!(deployment["spec"]["replicas"], 3);
    assert_eq!(deployment["spec"]["strategy"]["type"], "RollingUpdate");
    let spec = &deployment["spec"]["template"]["spec"];
    let container = &spec["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let config = Config::from_args(args.iter().copied()).unwrap();
    let store = config.store.expect("--store in the fleet manifest");
    assert!(store.url.starts_with("etcd://"), "{}", store.url);
    let env = container["env"].as_array().unwrap();
    assert!(env.iter().any(|e| e["name"] == "FLAGD_REPLICA_ID"
        && e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"));
    let state = spec["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "state")
        .unwrap();
    assert!(state.get("emptyDir").is_some(), "{state}");
}

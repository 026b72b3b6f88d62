//! Override fields are independent: a file edit that makes one field stale neither undoes the
//! others (a kill switch above all) nor blocks the operator from setting them again; overrides of
//! flags that left the file stay visible as dangling and can be cleared.

use std::path::{Path, PathBuf};
use std::time::Duration;

use flagd_rs_tests::daemon::{TestDaemon, config_for, get, post_json};
use serde_json::{Value, json};

const CHECKOUT: &str = r#"{"flags": {
  "checkout": {"state": "ENABLED", "variants": {"blue": "blue", "green": "green"},
               "defaultVariant": "blue"},
  "ramp": {"state": "ENABLED", "variants": {"stable": "stable", "canary": "canary"},
           "defaultVariant": "stable",
           "targeting": {"fractional": [["stable", 90], ["canary", 10]]}}
}}"#;

/// `green` renamed to `green-v2`, and the ramp's split removed.
const RENAMED: &str = r#"{"flags": {
  "checkout": {"state": "ENABLED", "variants": {"blue": "blue", "green-v2": "green"},
               "defaultVariant": "blue"},
  "ramp": {"state": "ENABLED", "variants": {"stable": "stable", "canary": "canary"},
           "defaultVariant": "stable"}
}}"#;

/// `checkout` gone from the file.
const WITHOUT_CHECKOUT: &str = r#"{"flags": {
  "ramp": {"state": "ENABLED", "variants": {"stable": "stable", "canary": "canary"},
           "defaultVariant": "stable",
           "targeting": {"fractional": [["stable", 90], ["canary", 10]]}}
}}"#;

struct Setup {
    daemon: TestDaemon,
    file: PathBuf,
    _dir: tempfile::TempDir,
    url: String,
}

impl Setup {
    async fn start() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("flags.json");
        std::fs::write(&file, CHECKOUT).unwrap();
        let mut config = config_for(&[&file]);
        config.state_dir = dir.path().join("state");
        let daemon = TestDaemon::start_with(config).await;
        let url = format!("http://127.0.0.1:{}", daemon.admin_port);
        Setup {
            daemon,
            file,
            _dir: dir,
            url,
        }
    }

    async fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--admin-url", &self.url]);
        flagd_rs::cli_admin::run_args(all).await
    }

    /// Evaluates `key` over Connect: (value, reason, variant).
    async fn eval(&self, key: &str) -> (Value, Value, Value) {
        let body = json!({"flagKey": key, "context": {"targetingKey": "user-1"}}).to_string();
        let r = post_json(
            self.daemon.eval_port(),
            "/flagd.evaluation.v1.Service/ResolveString",
            &body,
        )
        .await
        .unwrap();
        let v: Value = serde_json::from_str(&r.text()).unwrap();
        (
            v["value"].clone(),
            v["reason"].clone(),
            v["variant"].clone(),
        )
    }

    async fn flags(&self) -> Value {
        let r = reqwest::get(format!("{}/v1/flags", self.url))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    /// Rewrites the flag file and waits until the daemon serves `probe` as `expect`.
    async fn rewrite(&self, text: &str, until: impl Fn(&Value) -> bool) {
        write_atomically(&self.file, text);
        for _ in 0..250 {
            if until(&self.flags().await) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the rewrite was not picked up: {}", self.flags().await);
    }
}

fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn flag<'a>(flags: &'a Value, key: &str) -> &'a Value {
    flags["flags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["key"] == key)
        .unwrap_or_else(|| panic!("no {key} in {flags}"))
}

#[tokio::test]
async fn a_file_edit_does_not_undo_a_kill_switch() {
    let s = Setup::start().await;
    s.cli(&["switch", "checkout", "green"]).await.unwrap();
    s.cli(&["disable", "checkout", "--reason", "incident"])
        .await
        .unwrap();
    let (_, reason, _) = s.eval("checkout").await;
    assert_eq!(reason, "DISABLED");

    // Someone renames `green` in the file.
    s.rewrite(RENAMED, |f| {
        flag(f, "checkout")["variants"].get("green-v2").is_some()
    })
    .await;
    // Still disabled: the stale defaultVariant is skipped, the state applies.
    let (_, reason, _) = s.eval("checkout").await;
    assert_eq!(reason, "DISABLED");
    let flags = s.flags().await;
    let checkout = flag(&flags, "checkout");
    assert_eq!(checkout["state"], "DISABLED");
    assert_eq!(checkout["staleFields"][0]["field"], "defaultVariant");
    assert!(
        checkout["staleFields"][0]["error"]
            .as_str()
            .unwrap()
            .contains("no variant 'green'"),
        "{checkout}"
    );
    // The operator can still set the kill switch (and re-enable), without clearing first.
    s.cli(&["disable", "checkout"]).await.unwrap();
    s.cli(&["enable", "checkout"]).await.unwrap();
    let (value, reason, _) = s.eval("checkout").await;
    assert_eq!((value, reason), (json!("blue"), json!("STATIC")));
    s.cli(&["disable", "checkout"]).await.unwrap();
    // ... and a field set again replaces the stale one.
    s.cli(&["switch", "checkout", "green-v2"]).await.unwrap();
    let flags = s.flags().await;
    assert!(flag(&flags, "checkout").get("staleFields").is_none());
    // A request's own fields are still validated.
    let err = s.cli(&["switch", "checkout", "purple"]).await.unwrap_err();
    assert!(err.to_string().contains("422"), "{err}");

    // The CLI, the metrics and the log report a stale field.
    s.rewrite(CHECKOUT, |f| flag(f, "ramp")["split"].is_array())
        .await;
    s.cli(&["split", "ramp", "stable=50", "canary=50"])
        .await
        .unwrap();
    s.rewrite(RENAMED, |f| flag(f, "ramp")["split"].is_null())
        .await;
    let out = s.cli(&["overrides"]).await.unwrap();
    assert!(
        out.contains("ramp: weights canary=50 stable=50 (stale, skipped: weights not applied"),
        "{out}"
    );
    let metrics = get(s.daemon.management_port, "/metrics")
        .await
        .unwrap()
        .text();
    assert!(
        metrics.contains(
            r#"flagd_rs_authority_override_stale_fields{feature_flag_key="ramp",field="weights"} 1"#
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn overrides_of_flags_that_left_the_file_are_dangling_and_clearable() {
    let s = Setup::start().await;
    s.cli(&["disable", "checkout"]).await.unwrap();
    s.rewrite(WITHOUT_CHECKOUT, |f| {
        f["flags"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["key"] != "checkout")
    })
    .await;
    let flags = s.flags().await;
    assert_eq!(
        flags["dangling"],
        json!([{"key": "checkout", "override": {"state": "DISABLED"}}])
    );
    let out = s.cli(&["overrides"]).await.unwrap();
    assert!(out.contains("checkout: state DISABLED (dangling"), "{out}");
    let metrics = get(s.daemon.management_port, "/metrics")
        .await
        .unwrap()
        .text();
    assert!(
        metrics.contains("flagd_rs_authority_overrides_dangling 1"),
        "{metrics}"
    );
    // Restoring a revision that names a flag that is gone is not refused.
    s.cli(&["restore", "1"]).await.unwrap();
    // When the flag comes back, it comes back disabled, as the override says ...
    s.rewrite(CHECKOUT, |f| {
        f["flags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["key"] == "checkout")
    })
    .await;
    let (_, reason, _) = s.eval("checkout").await;
    assert_eq!(reason, "DISABLED");
    // ... unless the dangling override was cleared.
    s.rewrite(WITHOUT_CHECKOUT, |f| {
        f["dangling"].as_array().unwrap().len() == 1
    })
    .await;
    s.cli(&["clear", "checkout"]).await.unwrap();
    assert_eq!(s.flags().await["dangling"], json!([]));
    s.rewrite(CHECKOUT, |f| {
        f["flags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["key"] == "checkout")
    })
    .await;
    let (value, reason, _) = s.eval("checkout").await;
    assert_eq!((value, reason), (json!("blue"), json!("STATIC")));
}
